package lab

import (
	"fmt"
	"strings"

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
	return strings.Join(what, "; ") + ": the lab's expectations describe its own, so each call is expected ALLOWED only " +
		"where the mesh's mode or an applied ServiceEntry lets its host and port out, and its evidence is shown, not checked."
}
