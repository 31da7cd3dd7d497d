package suggest

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
)

// build reads logs (file name → lines) and builds the suggestion.
func build(t *testing.T, logs ...Source) *Suggestion {
	t.Helper()
	o := NewObservations()
	for _, src := range logs {
		require.NoError(t, o.Read(context.Background(), src, strings.NewReader(logOf[src.Name])))
	}
	s, err := Build(o)
	require.NoError(t, err)
	return s
}

var logOf = map[string]string{}

// source registers a log's lines under name, for build.
func source(name string, w *backend.Workload, lines ...string) Source {
	logOf[name] = strings.Join(lines, "\n") + "\n"
	return Source{Name: name, Workload: w}
}

// entries are the written YAML's ServiceEntries as Istio reads them, by name.
func entries(t *testing.T, s *Suggestion) map[string]*networking.ServiceEntry {
	t.Helper()
	set, err := manifest.Parse("out.yaml", s.YAML, "egresslab")
	require.NoError(t, err, "the written file is read back by the labs' own reader")
	out := map[string]*networking.ServiceEntry{}
	for _, o := range set.Objects {
		require.Equal(t, "ServiceEntry", o.Kind)
		se, ok := o.Istio.Spec.(*networking.ServiceEntry)
		require.True(t, ok)
		out[o.Name] = se
	}
	return out
}

type port struct {
	number   uint32
	protocol string
}

func ports(se *networking.ServiceEntry) []port {
	var out []port
	for _, p := range se.Ports {
		out = append(out, port{p.Number, p.Protocol})
	}
	return out
}

func TestEachHostGetsOneEntryWithThePortsAndProtocolsItWasCalledOn(t *testing.T) {
	// One host over HTTP (by Host) on 80 and over TLS (by SNI) on 443; another over HTTP/2
	// only; a database by address; and what needs no entry.
	tls := strings.Replace(textTLSBySNI, "api.github.com", "jsonplaceholder.typicode.com", 1)
	s := build(t, source("a.log", nil, agentLine, textHTTPPassthrough, tls, textHTTP2, textTCPAddress, textRegistered, textBlockAll, textInbound))
	got := entries(t, s)
	require.Len(t, got, 3, "%s", s.YAML)

	se := got["jsonplaceholder.typicode.com"]
	require.NotNil(t, se, "%s", s.YAML)
	assert.Equal(t, []string{"jsonplaceholder.typicode.com"}, se.Hosts)
	assert.Equal(t, []port{{80, "HTTP"}, {443, "TLS"}}, ports(se))
	assert.Equal(t, networking.ServiceEntry_DNS, se.Resolution)
	assert.Equal(t, networking.ServiceEntry_MESH_EXTERNAL, se.Location)
	assert.Empty(t, se.Addresses)
	assert.Empty(t, se.ExportTo, "a log with no workload: no exportTo")

	se = got["grpc.example.com"]
	require.NotNil(t, se)
	assert.Equal(t, []port{{8080, "HTTP2"}}, ports(se), "every call HTTP/2: HTTP2")

	se = got["ip-203-0-113-10"]
	require.NotNil(t, se)
	assert.Equal(t, []string{"203.0.113.10"}, se.Addresses)
	assert.Equal(t, []port{{5432, "TCP"}}, ports(se))
	assert.Equal(t, networking.ServiceEntry_NONE, se.Resolution)
	assert.Equal(t, []string{"ip-203-0-113-10.invalid"}, se.Hosts)

	yaml := string(s.YAML)
	for _, want := range []string{
		"# jsonplaceholder.typicode.com: port 80 HTTP (by Host header, 1 call); port 443 TLS (by SNI, 1 call).",
		"# Called by a.log (2 calls); first seen at a.log:2.",
		"# resolution DNS:", "# resolution NONE:", "A name is better",
		"# 7 access-log lines read: 4 calls through PassthroughCluster, 1 call to registered services",
		"# 1 call blocked already, 1 line of other listeners and proxies skipped, 0 lines with no cluster.",
	} {
		assert.Contains(t, yaml, want)
	}
	assert.Empty(t, s.Uncovered)
}

// The same logs give the same file, byte for byte, whatever order Go's maps iterate in.
func TestTheOutputIsDeterministic(t *testing.T) {
	lines := []string{textTCPAddress, textHTTP2, textHTTPPassthrough, textTLSBySNI,
		strings.Replace(textTCPAddress, "203.0.113.10", "203.0.113.9", 2), strings.Replace(textHTTP2, "grpc.example.com", "a.example.com", 1)}
	first := build(t, source("a.log", nil, lines...)).YAML
	for range 10 {
		assert.Equal(t, string(first), string(build(t, source("a.log", nil, lines...)).YAML))
	}
	// Names first, sorted; then addresses, in address order (203.0.113.9 before .10).
	order := []string{"name: a.example.com", "name: api.github.com", "name: grpc.example.com", "name: jsonplaceholder.typicode.com",
		"name: ip-203-0-113-9", "name: ip-203-0-113-10"}
	last := -1
	for _, name := range order {
		i := strings.Index(string(first), name)
		require.Greater(t, i, last, "%s out of order in\n%s", name, first)
		last = i
	}
}

func TestExportToNamesTheCallingNamespacesOnlyWhenEveryLogNamesItsWorkload(t *testing.T) {
	api := &backend.Workload{Namespace: "team-a", Name: "api"}
	web := &backend.Workload{Namespace: "team-b", Name: "web"}
	s := build(t, source("api.log", api, textHTTPPassthrough, textHTTPPassthrough), source("web.log", web, textHTTPPassthrough, textTLSBySNI))
	got := entries(t, s)
	assert.Equal(t, []string{"team-a", "team-b"}, got["jsonplaceholder.typicode.com"].ExportTo)
	assert.Equal(t, []string{"team-b"}, got["api.github.com"].ExportTo)
	assert.Contains(t, string(s.YAML), "# Called by team-a/api (2 calls), team-b/web (1 call)")
	assert.Equal(t, "team-a", s.Namespace, "the replay puts the entries where a calling workload is")

	// A third log without a workload: who else calls is unknown, so no exportTo.
	s = build(t, source("api.log", api, textHTTPPassthrough), source("other.log", nil, textHTTPPassthrough))
	assert.Empty(t, entries(t, s)["jsonplaceholder.typicode.com"].ExportTo)
	assert.Contains(t, string(s.YAML), "# Called by other.log (1 call), team-a/api (1 call)")
}

func TestWhatNoEntryCanCoverIsListedWithTheReason(t *testing.T) {
	// HTTPS on the catch-all: an address and 443, no SNI. An address the logs saw serve
	// two hosts, on raw TCP. A host seen as both HTTP and TLS on one port. A Host that
	// is no DNS name.
	shared := []string{
		strings.NewReplacer(`"jsonplaceholder.typicode.com:80"`, `"a.example.com"`, "203.0.113.61", "198.51.100.7").Replace(textHTTPPassthrough),
		strings.NewReplacer(`"jsonplaceholder.typicode.com:80"`, `"b.example.com"`, "203.0.113.61", "198.51.100.7").Replace(textHTTPPassthrough),
		strings.ReplaceAll(textTCPAddress, "203.0.113.10", "198.51.100.7"),
	}
	both := strings.NewReplacer("api.github.com", "mixed.example.com", "203.0.113.62:443", "198.51.100.8:8443").Replace(textTLSBySNI)
	plain := strings.NewReplacer(`"jsonplaceholder.typicode.com:80"`, `"mixed.example.com"`, "203.0.113.61:80", "198.51.100.8:8443").Replace(textHTTPPassthrough)
	bad := strings.Replace(textHTTPPassthrough, `"jsonplaceholder.typicode.com:80"`, `"under_score.example.com"`, 1)
	s := build(t, source("a.log", nil, append(shared, textCatchAll, both, plain, bad)...))

	byWhat := map[string]Uncovered{}
	for _, u := range s.Uncovered {
		byWhat[u.What] = u
	}
	require.Len(t, byWhat, 4, "%+v", s.Uncovered)
	assert.Contains(t, byWhat["10.244.0.4:443"].Reason, "port 443 (HTTPS, most likely) seen only by address, with no SNI")
	assert.Contains(t, byWhat["10.244.0.4:443"].Reason, "cannot be replayed by name")
	assert.Contains(t, byWhat["198.51.100.7:5432"].Reason, "serve 2 hosts (a.example.com, b.example.com)")
	assert.Contains(t, byWhat["mixed.example.com:8443"].Reason, "both as TLS (by SNI, 1 call) and as plaintext HTTP (by Host, 1 call)")
	assert.Contains(t, byWhat["under_score.example.com:80"].Reason, "Istio refuses an entry for it")
	assert.Equal(t, 1, byWhat["10.244.0.4:443"].Calls)
	assert.Equal(t, "a.log:4", byWhat["10.244.0.4:443"].First)

	// The file says so at the top, and holds entries only for what can be covered.
	yaml := string(s.YAML)
	assert.Contains(t, yaml, "# NOT COVERED: these calls will be blocked under REGISTRY_ONLY")
	assert.Contains(t, yaml, "# - 10.244.0.4:443: 1 call from a.log (1 call), first at a.log:4.")
	got := entries(t, s)
	assert.Len(t, got, 2, "%s", yaml)
	assert.Contains(t, got, "a.example.com")
	assert.Contains(t, got, "b.example.com")
}

// The replay asks for each call once per workload, as the app made it: by name at the
// address it went to, or by address; each expected ALLOWED.
func TestTheReplayMakesEachCallAsTheAppDid(t *testing.T) {
	api := &backend.Workload{Namespace: "team-a", Name: "api"}
	s := build(t, source("api.log", api, textHTTPPassthrough, textTLSBySNI, textTCPAddress, textHTTPPassthrough), source("x.log", nil, textTCPAddress))
	q := s.Question()
	assert.Equal(t, manifest.RegistryOnly, q.Mode)
	require.Len(t, q.Objects, 1)
	assert.Len(t, q.Objects[0].Objects, 3)
	var got []string
	for _, c := range q.Calls {
		require.NotNil(t, c.Expect)
		assert.Equal(t, "ALLOWED", string(c.Expect.Kind))
		got = append(got, c.From.String()+" "+c.Call.String()+" @"+c.Call.Address)
	}
	assert.Equal(t, []string{
		"team-a/api https://api.github.com:443/ @203.0.113.62",
		"team-a/api http://jsonplaceholder.typicode.com:80/ @203.0.113.61",
		"egresslab/client tcp://203.0.113.10:5432 @",
		"team-a/api tcp://203.0.113.10:5432 @",
	}, got)
}

// An entry's first call is the earliest of its ports', in the order the logs were read,
// not its lowest port's.
func TestAnEntrysFirstCallIsTheEarliestOfItsPorts(t *testing.T) {
	tls := strings.Replace(textTLSBySNI, "api.github.com", "jsonplaceholder.typicode.com", 1)
	s := build(t, source("b.log", nil, textRegistered, tls), source("a.log", nil, textHTTPPassthrough))
	require.Len(t, s.Entries, 1)
	assert.Equal(t, []int{80, 443}, []int{s.Entries[0].Ports[0].Number, s.Entries[0].Ports[1].Number})
	assert.Equal(t, "b.log:2", s.Entries[0].First, "443 on b.log, read first, before 80 on a.log")
}

// An IPv6 destination gets a name Kubernetes takes (no label starts with '-') and an
// address Istio takes, and is replayed at its address.
func TestAnIPv6AddressBecomesAValidEntry(t *testing.T) {
	v6 := strings.ReplaceAll(textTCPAddress, "203.0.113.10:5432", "[2001:db8::10]:5432")
	s := build(t, source("a.log", nil, v6))
	got := entries(t, s)
	se := got["ip-2001-0db8-0000-0000-0000-0000-0000-0010"]
	require.NotNil(t, se, "%s", s.YAML)
	assert.Equal(t, []string{"2001:db8::10"}, se.Addresses)
	q := s.Question()
	require.Len(t, q.Calls, 1)
	assert.Equal(t, "tcp://[2001:db8::10]:5432", q.Calls[0].Call.String())
}
