package suggest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/labs/apps"
)

// Port protocols of an entry, as a ServiceEntry spells them.
const (
	HTTP  = "HTTP"
	HTTP2 = "HTTP2"
	TLS   = "TLS"
	TCP   = "TCP"
)

// The label every entry carries, so that they can be listed and deleted together:
// kubectl delete serviceentries -l app.kubernetes.io/managed-by=egresslab-suggest.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "egresslab-suggest"
)

// Resolutions an entry uses.
const (
	// ResolutionDNS is for an entry by name: the sidecar connects to what DNS gives for
	// the host, so a Host header or SNI that names the host cannot lead it to another
	// address (with NONE it would connect wherever the app did: the resolution lab).
	ResolutionDNS = "DNS"
	// ResolutionNone is for an entry by address: the sidecar connects where the app
	// connected (an ORIGINAL_DST cluster), exactly as PassthroughCluster did, and the
	// entry's addresses give it a listener of its own for that address and port, so
	// nothing else on the port is let out. STATIC would say the same address twice
	// (addresses and endpoints) for the same effect.
	ResolutionNone = "NONE"
)

// Suggestion is what the logs suggest: the entries, what no entry can cover and why,
// and the YAML to write, as Istio's validation read it.
type Suggestion struct {
	Entries   []Entry
	Uncovered []Uncovered
	Counts    Counts
	Sources   []Source
	Skipped   []*Skipped
	// Namespace is where the entries go when they are replayed (they name none, and
	// are applied with kubectl apply -n): the namespace of a workload that calls.
	Namespace string
	YAML      []byte
	// Set is YAML as harness/manifest read and Istio validated it.
	Set *manifest.Set
}

// Entry is one suggested ServiceEntry.
type Entry struct {
	Name string // metadata.name
	Host string
	// Address is the address of an entry by address (no name was seen); invalid for
	// an entry by name.
	Address  netip.Addr
	Ports    []Port
	ExportTo []string // the calling namespaces, when every log that saw the host named its workload
	Callers  []Count
	First    string // FILE:LINE of the first call seen
	first    position
	// Names are the hosts the logs saw at an entry's address, by Host or SNI: what
	// the app may have dialed (an entry by address only).
	Names []string
}

// Resolution is the entry's resolution.
func (e Entry) Resolution() string {
	if e.Address.IsValid() {
		return ResolutionNone
	}
	return ResolutionDNS
}

// Port is one port of an entry and how its calls were seen.
type Port struct {
	Number   int
	Protocol string
	Calls    int
	// HTTP2 counts the calls of an HTTP port that were HTTP/2.
	HTTP2   int
	callers map[caller]int
	addr    netip.Addr
	first   position
}

// Count is how many calls one workload (or, when its log named none, one file) made.
type Count struct {
	Who   string
	Calls int
}

// Uncovered is a destination the logs saw calls to that no entry can cover: those
// calls will be blocked under REGISTRY_ONLY.
type Uncovered struct {
	What    string // HOST:PORT or ADDRESS:PORT
	Calls   int
	Callers []Count
	First   string
	Reason  string
}

// Build turns the observations into entries, each validated by harness/manifest (the
// reading and Istio validation the labs' files get); a destination no valid entry can
// cover is Uncovered, with the reason.
func Build(o *Observations) (*Suggestion, error) {
	s := &Suggestion{Counts: o.Counts, Sources: o.Sources, Skipped: o.Skipped}
	byName := map[string][]destKey{}
	byAddress := map[string][]destKey{}
	for k := range o.dests {
		if k.byAddress {
			byAddress[k.host] = append(byAddress[k.host], k)
		} else {
			byName[k.host] = append(byName[k.host], k)
		}
	}
	var candidates []Entry
	for _, host := range slices.Sorted(maps.Keys(byName)) {
		e := Entry{Name: host, Host: host}
		for _, k := range sortedPorts(byName[host]) {
			d := o.dests[k]
			what := host + ":" + strconv.Itoa(k.port)
			if d.tls > 0 && d.http+d.http2 > 0 {
				s.uncover(d, what, fmt.Sprintf("seen on one port both as TLS (by SNI, %s) and as plaintext HTTP (by Host, %s): "+
					"a port of an entry has one protocol; find which the app speaks there", narrate.Count(d.tls, "call"), narrate.Count(d.http+d.http2, "call")))
				continue
			}
			p := Port{Number: k.port, Protocol: TLS, Calls: d.tls, callers: d.callers, addr: d.addr, first: d.first}
			if d.tls == 0 {
				p.Protocol, p.Calls, p.HTTP2 = HTTP, d.http+d.http2, d.http2
				if d.http == 0 {
					p.Protocol = HTTP2 // every call HTTP/2: keep it HTTP/2 to the upstream
				}
			}
			e.add(p)
		}
		if len(e.Ports) > 0 {
			candidates = append(candidates, e)
		}
	}
	for _, text := range slices.SortedFunc(maps.Keys(byAddress), compareAddresses) {
		addr := netip.MustParseAddr(text)
		names := slices.Sorted(maps.Keys(o.names[addr]))
		e := Entry{Name: addressName(addr), Host: addressName(addr) + ".invalid", Address: addr, Names: names}
		for _, k := range sortedPorts(byAddress[text]) {
			d := o.dests[k]
			what := netip.AddrPortFrom(addr, uint16(k.port)).String()
			switch {
			case k.port == 443:
				s.uncover(d, what, "a connection to port 443 (HTTPS, most likely) seen only by address, with no SNI: the catch-all listener (virtualOutbound) reads no TLS, "+
					"and the address of an HTTPS service is usually a load balancer's or a CDN's, shared by other hosts and changed by DNS; "+
					"an entry by address would let out all of them and break when it changes. A TLS call seen only by address cannot be "+
					"replayed by name either"+sawNames(names)+". Find the host the app dials (docs/suggest.md says how) and add a TLS entry for it.")
				continue
			case len(names) > 1:
				s.uncover(d, what, fmt.Sprintf("seen only by address, on raw TCP, at an address the logs saw serve %d hosts (%s): "+
					"a TCP listener reads no name, so an entry by address would let out every host there on port %d; name the host the app dials",
					len(names), strings.Join(names, ", "), k.port)+".")
				continue
			}
			e.add(Port{Number: k.port, Protocol: TCP, Calls: d.tcp, callers: d.callers, addr: d.addr, first: d.first})
		}
		if len(e.Ports) > 0 {
			candidates = append(candidates, e)
		}
	}

	s.Namespace = replayNamespace(candidates)
	taken := map[string]bool{}
	var docs []string
	for _, e := range candidates {
		for base, i := e.Name, 2; taken[e.Name]; i++ {
			e.Name = base + "-" + strconv.Itoa(i)
		}
		doc := e.yaml()
		if _, err := manifest.Parse("the entry for "+e.Host, []byte(doc), s.Namespace); err != nil {
			// Istio (or Kubernetes) would refuse it: its ports are calls no entry covers.
			reason := "Istio refuses an entry for it: " + refusal(err)
			for _, p := range e.Ports {
				s.uncoverPort(e, p, reason)
			}
			continue
		}
		taken[e.Name] = true
		s.Entries = append(s.Entries, e)
		docs = append(docs, doc)
	}
	slices.SortFunc(s.Uncovered, func(a, b Uncovered) int { return cmp.Compare(a.What, b.What) })
	s.YAML = []byte(s.header() + strings.Join(docs, ""))
	if len(s.Entries) == 0 {
		return s, nil
	}
	set, err := manifest.Parse("the suggested entries", s.YAML, s.Namespace)
	if err != nil {
		// Each entry passed alone: the file as a whole must too.
		return nil, fmt.Errorf("the suggested entries, read back as one file: %w", err)
	}
	s.Set = set
	return s, nil
}

// add adds a port to the entry, with its callers.
func (e *Entry) add(p Port) {
	e.Ports = append(e.Ports, p)
	all := map[caller]int{}
	for _, port := range e.Ports {
		for c, n := range port.callers {
			all[c] += n
		}
	}
	e.Callers = counts(all)
	if len(e.Ports) == 1 || p.first.before(e.first) {
		e.first, e.First = p.first, p.first.String()
	}
	e.ExportTo = nil
	namespaces := map[string]bool{}
	for c := range all {
		if !c.known() {
			return // a log with no workload: its callers' namespaces are unknown
		}
		namespaces[c.workload.Namespace] = true
	}
	e.ExportTo = slices.Sorted(maps.Keys(namespaces))
}

func (s *Suggestion) uncover(d *dest, what, reason string) {
	calls := 0
	for _, n := range d.callers {
		calls += n
	}
	s.Uncovered = append(s.Uncovered, Uncovered{What: what, Calls: calls, Callers: counts(d.callers), First: d.first.String(), Reason: reason})
}

func (s *Suggestion) uncoverPort(e Entry, p Port, reason string) {
	what := e.Host + ":" + strconv.Itoa(p.Number)
	if e.Address.IsValid() {
		what = netip.AddrPortFrom(e.Address, uint16(p.Number)).String()
	}
	s.Uncovered = append(s.Uncovered, Uncovered{What: what, Calls: p.Calls, Callers: counts(p.callers), First: p.first.String(), Reason: reason})
}

// refusal is the reason of the first problem harness/manifest found.
func refusal(err error) string {
	var errs manifest.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		return errs[0].Reason
	}
	return err.Error()
}

// replayNamespace is a namespace the replay deploys a workload in: the first calling
// workload's, or the lab's client's when a log named none.
func replayNamespace(entries []Entry) string {
	var namespaces []string
	for _, e := range entries {
		for _, p := range e.Ports {
			for c := range p.callers {
				if !c.known() {
					return apps.Client.Namespace
				}
				namespaces = append(namespaces, c.workload.Namespace)
			}
		}
	}
	if len(namespaces) == 0 {
		return apps.Client.Namespace
	}
	return slices.Min(namespaces)
}

// counts are the callers, most calls first, then by name.
func counts(m map[caller]int) []Count {
	out := make([]Count, 0, len(m))
	for c, n := range m {
		out = append(out, Count{c.String(), n})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Calls != b.Calls {
			return b.Calls - a.Calls
		}
		return cmp.Compare(a.Who, b.Who)
	})
	return out
}

func sortedPorts(keys []destKey) []destKey {
	return slices.SortedFunc(slices.Values(keys), func(a, b destKey) int { return a.port - b.port })
}

func compareAddresses(a, b string) int {
	return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b))
}

// addressName is an address as a Kubernetes name: "ip-203-0-113-7"; an IPv6 address
// written out in full, so that no label starts or ends with '-'.
func addressName(a netip.Addr) string {
	if a.Is4() {
		return "ip-" + strings.ReplaceAll(a.String(), ".", "-")
	}
	return "ip-" + strings.ReplaceAll(a.StringExpanded(), ":", "-")
}

func sawNames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" (the logs saw %s at this address, by Host or SNI: perhaps the host it was)", strings.Join(names, ", "))
}

// callers is "team-a/api (120 calls), logs/b.log (3 calls)".
func callers(cs []Count) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (%s)", c.Who, narrate.Count(c.Calls, "call"))
	}
	return strings.Join(parts, ", ")
}

// portName is a port's name: its protocol and number, e.g. http-80.
func portName(p Port) string { return strings.ToLower(p.Protocol) + "-" + strconv.Itoa(p.Number) }

// seen says how the sidecar knew a port's calls' destination.
func seen(p Port) string {
	switch p.Protocol {
	case TLS:
		return "by SNI"
	case TCP:
		return "by address only"
	}
	return "by Host header"
}

// yaml is the entry as one YAML document, with the comments that say where it comes
// from and why it is as it is.
func (e Entry) yaml() string {
	var b strings.Builder
	b.WriteString("---\n")
	parts := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		parts[i] = fmt.Sprintf("port %d %s (%s, %s)", p.Number, p.Protocol, seen(p), narrate.Count(p.Calls, "call"))
	}
	fmt.Fprintf(&b, "# %s: %s.\n", orAddress(e), strings.Join(parts, "; "))
	fmt.Fprintf(&b, "# Called by %s; first seen at %s.\n", callers(e.Callers), e.First)
	for _, p := range e.Ports {
		if p.Protocol == HTTP && p.HTTP2 > 0 {
			fmt.Fprintf(&b, "# Port %d: %d of its calls were HTTP/2 (h2c); HTTP sends HTTP/1.1 to the upstream. If they must stay HTTP/2 (gRPC), make it a second entry with protocol HTTP2.\n",
				p.Number, p.HTTP2)
		}
	}
	if e.Address.IsValid() {
		b.WriteString("# Seen by address only: no Host and no SNI in the log (raw TCP, or TLS on a port without a TLS inspector).\n" +
			"# A name is better: an address changes, and then this entry lets out whoever has it next. The host is a placeholder\n" +
			"# (.invalid never resolves); put the host the app dials in hosts, keeping addresses, once you know it.\n")
		if len(e.Names) == 1 {
			fmt.Fprintf(&b, "# The logs saw %s at this address, by Host or SNI: perhaps the host it was.\n", e.Names[0])
		}
		b.WriteString("# resolution NONE: the sidecar connects where the app connected, as PassthroughCluster did; the entry's\n" +
			"# address gives it a listener of its own, so nothing else on these ports is let out.\n")
	} else {
		b.WriteString("# resolution DNS: the sidecar connects to what DNS gives for the host (PassthroughCluster went where the app\n" +
			"# connected), so a Host header or SNI that names this host cannot send a call to another address.\n")
	}
	if len(e.ExportTo) > 0 {
		b.WriteString("# exportTo: the namespaces of the workloads that called it; any other namespace does not see this entry.\n")
	} else {
		b.WriteString("# No exportTo: a log that called it named no workload (-f NAMESPACE/WORKLOAD=FILE), so every namespace sees it.\n")
	}
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: %s\n  labels:\n    %s: %s\nspec:\n  hosts:\n  - %s\n",
		e.Name, ManagedByLabel, ManagedBy, e.Host)
	if e.Address.IsValid() {
		fmt.Fprintf(&b, "  addresses:\n  - %q\n", e.Address.String())
	}
	b.WriteString("  ports:\n")
	for _, p := range e.Ports {
		fmt.Fprintf(&b, "  - number: %d\n    name: %s\n    protocol: %s\n", p.Number, portName(p), p.Protocol)
	}
	fmt.Fprintf(&b, "  resolution: %s\n  location: MESH_EXTERNAL\n", e.Resolution())
	if len(e.ExportTo) > 0 {
		b.WriteString("  exportTo:\n")
		for _, ns := range e.ExportTo {
			fmt.Fprintf(&b, "  - %s\n", ns)
		}
	}
	return b.String()
}

func orAddress(e Entry) string {
	if e.Address.IsValid() {
		return e.Address.String()
	}
	return e.Host
}

// header is the comment block at the top of the file: what it is, where it comes
// from, and what it does not cover.
func (s *Suggestion) header() string {
	var b strings.Builder
	names := make([]string, len(s.Sources))
	for i, src := range s.Sources {
		names[i] = src.Name
		if src.Workload != nil {
			names[i] = src.Workload.String() + "=" + src.Name
		}
	}
	c := s.Counts
	fmt.Fprintf(&b, "# ServiceEntries that keep working, under REGISTRY_ONLY, the calls the sidecars let out through\n"+
		"# PassthroughCluster under ALLOW_ANY: one per host, with the ports and protocols the calls used.\n"+
		"# Written by egresslab suggest (docs/suggest.md) from %s: %s.\n"+
		"# Apply them before switching the mode: kubectl apply -n NAMESPACE -f FILE.\n"+
		"#\n"+
		"# %s read: %s through PassthroughCluster, %s to registered services (no entry needed),\n"+
		"# %s blocked already, %s of other listeners and proxies skipped, %s with no cluster.\n",
		narrate.Count(len(names), "log"), strings.Join(names, ", "),
		narrate.Count(c.Text+c.JSON, "access-log line"), narrate.Count(c.Passthrough, "call"), narrate.Count(c.Registered, "call"),
		narrate.Count(c.Blocked, "call"), narrate.Count(c.Inbound+c.Gateway, "line"), narrate.Count(c.Other, "line"))
	if len(s.Uncovered) > 0 {
		fmt.Fprintf(&b, "#\n# NOT COVERED: these calls will be blocked under REGISTRY_ONLY; no entry can be written for them from the logs.\n")
		for _, u := range s.Uncovered {
			fmt.Fprintf(&b, "# - %s: %s from %s, first at %s.\n", u.What, narrate.Count(u.Calls, "call"), callers(u.Callers), u.First)
			b.WriteString(narrate.Wrap(u.Reason, 106, "#     ") + "\n")
		}
	}
	return b.String()
}
