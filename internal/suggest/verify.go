package suggest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/check"
	"github.com/egresslab/egresslab/labs/apps"
)

// Question is the replay that proves the entries before they are applied: each
// observed call, once from each workload that made it (the lab's client app for a log
// that named none), under REGISTRY_ONLY with the entries applied, each expected to be
// ALLOWED. internal/check answers it.
func (s *Suggestion) Question() check.Question {
	q := check.Question{Mode: manifest.RegistryOnly}
	if s.Set != nil {
		q.Objects = []*manifest.Set{s.Set}
	}
	for _, e := range s.Entries {
		for _, p := range e.Ports {
			call := replayCall(e, p)
			var from []backend.Workload
			for c := range p.callers {
				w := apps.Client
				if c.known() {
					w = c.workload
				}
				if !slices.Contains(from, w) {
					from = append(from, w)
				}
			}
			slices.SortFunc(from, func(a, b backend.Workload) int { return cmp.Compare(a.String(), b.String()) })
			for _, w := range from {
				q.Calls = append(q.Calls, check.Call{From: w, Call: call, Expect: &outcome.Expect{Kind: outcome.Allowed}})
			}
		}
	}
	return q
}

// replayCall is a port's call as the app made it: to the host by its name, at the
// address it went to (the lowest one seen), or to the address itself when no name was
// seen.
func replayCall(e Entry, p Port) backend.Call {
	hostPort := netip.AddrPortFrom(p.addr, uint16(p.Number)).String()
	switch p.Protocol {
	case TCP:
		return backend.MustCall("tcp://" + hostPort)
	case TLS:
		return at(backend.MustCall("https://"+e.Host+":"+strconv.Itoa(p.Number)+"/"), p.addr)
	}
	return at(backend.MustCall("http://"+e.Host+":"+strconv.Itoa(p.Number)+"/"), p.addr)
}

func at(c backend.Call, addr netip.Addr) backend.Call {
	c, err := c.At(addr.String())
	if err != nil {
		panic(fmt.Sprintf("an address read from a log is not one: %v", err)) // netip parsed it
	}
	return c
}

// NotReplayed are the calls the replay cannot make: those no entry covers, which will
// be blocked under REGISTRY_ONLY whatever the replay says.
func (s *Suggestion) NotReplayed() []string {
	out := make([]string, len(s.Uncovered))
	for i, u := range s.Uncovered {
		out[i] = fmt.Sprintf("%s (%s): no entry covers it", u.What, narrate.Count(u.Calls, "call"))
	}
	return out
}
