package lab

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config/host"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
)

// Override is l with the user's -url and -entry put in place of the lab's own, and
// whether the lab's stated expectations had to give way to derived ones. It refuses,
// before any backend is opened, an option the lab has nothing to replace with.
//
// -url replaces every call to the lab's url, every call to the same host and path over
// HTTPS (with the new URL's host and path), and the old host wherever a step's title or
// prose names it. The lab's expectations describe its own url and entry; with either
// replaced, each call is expected to get what Istio's simulator computes for the same
// mesh and objects, its evidence included (the Runner's reference).
func Override(l *labfile.Lab, opts Options) (*labfile.Lab, bool, error) {
	if opts.Entry != nil && l.Entry == "" {
		return nil, false, fmt.Errorf("-entry: lab %s has no entry to replace (%s names none)", l.Name, l.File)
	}
	if opts.Entry != nil {
		if err := l.CheckNamespaces(opts.Entry); err != nil {
			return nil, false, fmt.Errorf("-entry %s in place of %s: %w", opts.Entry.Source, l.Entry, err)
		}
	}
	if opts.URL == "" || opts.URL == l.URL {
		return l, opts.Entry != nil, nil
	}
	if l.URL == "" {
		return nil, false, fmt.Errorf("-url: lab %s has no main call to replace (%s names no url)", l.Name, l.File)
	}
	old, _ := backend.ParseCall(l.URL)
	repl, err := backend.ParseCall(opts.URL)
	if err != nil {
		return nil, false, fmt.Errorf("-url: %w", err)
	}
	if repl.URL.Scheme != old.URL.Scheme {
		return nil, false, fmt.Errorf("-url %s: give the plain %s:// URL, as the lab's own (%s): the lab makes its other calls to that host itself",
			opts.URL, old.URL.Scheme, l.URL)
	}
	calls := map[string]backend.Call{old.String(): repl, overHTTPS(old).String(): overHTTPS(repl)}
	out := *l
	out.URL = repl.String()
	out.Steps = make([]labfile.Step, len(l.Steps))
	for i, s := range l.Steps {
		if old.Host() != repl.Host() {
			s.Title = strings.ReplaceAll(s.Title, old.Host(), repl.Host())
			s.Prose = strings.ReplaceAll(s.Prose, old.Host(), repl.Host())
		}
		s.Actions = append([]labfile.Action(nil), s.Actions...)
		for j, a := range s.Actions {
			if a.Call == nil {
				continue
			}
			if c, ok := calls[a.Call.URL.String()]; ok {
				moved := *a.Call
				moved.URL = c
				s.Actions[j].Call = &moved
			}
		}
		out.Steps[i] = s
	}
	return &out, true, nil
}

// overHTTPS is the same call over HTTPS, on HTTPS's default port.
func overHTTPS(c backend.Call) backend.Call {
	u := *c.URL
	u.Scheme, u.Host = "https", c.Host()
	return backend.Call{URL: &u}
}

// OverrideNote says, for the banner, what the user's options change in what the lab
// checks; "" when they change nothing.
func OverrideNote(l *labfile.Lab, opts Options) string {
	var what []string
	if opts.Entry != nil {
		what = append(what, fmt.Sprintf("your -entry (%s) replaces %s", opts.Entry.Source, l.Entry))
	}
	if opts.URL != "" && opts.URL != l.URL {
		what = append(what, fmt.Sprintf("your -url replaces %s", l.URL))
	}
	if len(what) == 0 {
		return ""
	}
	note := strings.Join(what, "; ") + ": the lab's expectations describe its own, so each call is expected to get what " +
		"Istio's simulator computes for the same mesh and objects, its evidence included."
	if call, err := backend.ParseCall(opts.URL); err == nil && opts.URL != l.URL {
		note += entryHint(l, opts, call)
	}
	return note
}

// entryHint says, when the user replaced the lab's url but not its entry and the entry
// does not name the new host, that the steps the entry opens will not open it, and how
// to give one that does; "" otherwise.
func entryHint(l *labfile.Lab, opts Options, c backend.Call) string {
	if opts.Entry != nil || l.Entry == "" {
		return ""
	}
	var hosts []string
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			if a.File != l.Entry || a.Set == nil {
				continue
			}
			for _, o := range a.Set.Objects {
				if o.Istio == nil {
					continue
				}
				if se, ok := o.Istio.Spec.(*networking.ServiceEntry); ok {
					hosts = append(hosts, se.GetHosts()...)
				}
			}
		}
	}
	for _, h := range hosts {
		if host.Name(c.Host()).SubsetOf(host.Name(h)) { // as Istio matches a name to an entry's host
			return ""
		}
	}
	if len(hosts) == 0 {
		return ""
	}
	return fmt.Sprintf(" The lab's entry (%s) names %s, not %s: the steps that apply it do not let %s out. "+
		"To see them do, add -entry FILE with a ServiceEntry for %s.", l.Entry, strings.Join(slices.Compact(hosts), ", "), c.Host(), c.Host(), c.Host())
}
