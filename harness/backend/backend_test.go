package backend_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// slowSidecar turns ALLOWED once pushed has passed; it records when each call was made.
type slowSidecar struct {
	backend.Backend
	pushed time.Time
	calls  []time.Time
}

func (s *slowSidecar) Call(context.Context, backend.Workload, backend.Call) (outcome.Verdict, error) {
	now := time.Now()
	s.calls = append(s.calls, now)
	if now.After(s.pushed) {
		return outcome.Verdict{Kind: outcome.Allowed}, nil
	}
	return outcome.Verdict{Kind: outcome.Blocked}, nil
}

// On local istiod pushes in about 110 ms; polling once a second reported "1.023s".
// Await must measure a quick push to within tens of milliseconds, and say how closely.
// What is checked is what the sidecar saw of the polls, not how promptly this machine
// ran them: a busy machine runs them late, which makes the measure coarser, not wrong.
func TestAwaitMeasuresAQuickPushHonestly(t *testing.T) {
	start := time.Now()
	b := &slowSidecar{pushed: start.Add(150 * time.Millisecond)}
	v, waited, err := backend.Await(context.Background(), b, backend.Workload{Namespace: "ns", Name: "w"},
		backend.MustCall("http://example.com/"), outcome.Allowed, time.Minute)
	took := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, outcome.Allowed, v.Kind)
	// Took runs to the call that saw the push: after the push, before Await returned.
	assert.GreaterOrEqual(t, waited.Took, 150*time.Millisecond)
	assert.LessOrEqual(t, waited.Took, took)
	// The push landed between the last two polls, and the resolution Await reports is
	// the pause between them: the measure is good to within it.
	require.GreaterOrEqual(t, len(b.calls), 2, "a poll before the push and one after it")
	before, after := b.calls[len(b.calls)-2], b.calls[len(b.calls)-1]
	assert.False(t, before.After(b.pushed), "the poll before the last saw the old config")
	assert.True(t, after.After(b.pushed), "the last poll saw the push")
	assert.GreaterOrEqual(t, after.Sub(before), waited.Resolution, "the resolution is the pause between the last two polls")
	// The polls are quick from the start: a poll a second measured 110 ms as 1.023 s.
	assert.Greater(t, waited.Resolution, time.Duration(0))
	assert.LessOrEqual(t, waited.Resolution, 100*time.Millisecond, "the poll interval when the push landed")
}

func TestAwaitGivesUpSayingWhatItSaw(t *testing.T) {
	b := &slowSidecar{pushed: time.Now().Add(time.Hour)}
	v, waited, err := backend.Await(context.Background(), b, backend.Workload{Namespace: "ns", Name: "w"},
		backend.MustCall("http://example.com/"), outcome.Allowed, 200*time.Millisecond)
	require.Error(t, err)
	assert.Equal(t, outcome.Blocked, v.Kind)
	assert.Contains(t, err.Error(), "still BLOCKED after 200ms, want ALLOWED")
	assert.GreaterOrEqual(t, waited.Took, 200*time.Millisecond)
}

// staleEntry is a sidecar that still routes through a deleted entry's cluster until the
// deletion reaches it: the call is ALLOWED all along, only the cluster changes.
type staleEntry struct {
	backend.Backend
	deletedAt time.Time
}

func (s *staleEntry) Call(context.Context, backend.Workload, backend.Call) (outcome.Verdict, error) {
	cluster, reason := "outbound|80||jsonplaceholder.typicode.com", outcome.ReasonRegistered
	if time.Now().After(s.deletedAt) {
		cluster, reason = "PassthroughCluster", outcome.ReasonPassthrough
	}
	return outcome.Verdict{Kind: outcome.Allowed, Reason: reason,
		Evidence: outcome.Evidence{FromConfig: true, Cluster: cluster}}, nil
}

// Under ALLOW_ANY, deleting the entry keeps the call ALLOWED and moves it to
// PassthroughCluster. Waiting for the kind alone judged the config from before the
// deletion (a local-backend scenario failed so); AwaitExpected waits for all it names.
func TestAwaitExpectedWaitsForTheClusterNotOnlyTheKind(t *testing.T) {
	w, call := backend.Workload{Namespace: "ns", Name: "w"}, backend.MustCall("http://jsonplaceholder.typicode.com/")
	want := outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Cluster: "PassthroughCluster"}

	b := &staleEntry{deletedAt: time.Now().Add(150 * time.Millisecond)}
	v, _, err := backend.Await(context.Background(), b, w, call, want.Kind, 5*time.Second)
	require.NoError(t, err)
	assert.NotEmpty(t, want.Check(v), "the kind alone is met at once, by the stale config")

	b = &staleEntry{deletedAt: time.Now().Add(150 * time.Millisecond)}
	v, waited, err := backend.AwaitExpected(context.Background(), b, w, call, want, 5*time.Second)
	require.NoError(t, err)
	assert.Empty(t, want.Check(v))
	assert.GreaterOrEqual(t, waited.Took, 150*time.Millisecond)

	b = &staleEntry{deletedAt: time.Now().Add(time.Hour)}
	_, _, err = backend.AwaitExpected(context.Background(), b, w, call, want, 200*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "still ALLOWED")
}

// loggingSidecar is a real sidecar as the kind backend sees it: each call's verdict
// comes from what the client saw (ALLOWED, no cluster), and its access-log line names
// the cluster, which is PassthroughCluster until an entry reaches it.
type loggingSidecar struct {
	backend.Backend
	enteredAt time.Time
	mu        sync.Mutex
	lines     []backend.AccessLogEntry // one a call, with the call's time in Line
	sentAt    []time.Time
	clients   []string // each call's client address, as Envoy logs it
}

var _ backend.AccessLogger = (*loggingSidecar)(nil)

func (s *loggingSidecar) Call(context.Context, backend.Workload, backend.Call) (outcome.Verdict, error) {
	cluster := "PassthroughCluster"
	if time.Now().After(s.enteredAt) {
		cluster = "outbound|80||jsonplaceholder.typicode.com"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	client := fmt.Sprintf("10.244.0.8:%d", 40000+len(s.lines))
	s.lines = append(s.lines, backend.AccessLogEntry{Cluster: cluster})
	s.sentAt = append(s.sentAt, time.Now())
	s.clients = append(s.clients, client)
	return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonUpstream,
		Evidence: outcome.Evidence{FromCall: true, Status: 200, ClientAddress: client}}, nil
}

// AccessLogEntry finds the call's line by its client address, as the kind backend does.
func (s *loggingSidecar) AccessLogEntry(_ context.Context, _ backend.Workload, _ backend.Call, client string, since time.Time) (backend.AccessLogEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.lines) - 1; i >= 0; i-- {
		if !s.sentAt[i].Before(since) && s.clients[i] == client {
			return s.lines[i], nil
		}
	}
	return backend.AccessLogEntry{}, fmt.Errorf("no line from %q since then", client)
}

// On kind, an entry applied under ALLOW_ANY keeps the call ALLOWED and moves it from
// PassthroughCluster to the entry's cluster, which only the access log shows. Waiting
// for the verdict alone took the first call, made before the entry reached the sidecar
// (the offline run's modes lab failed so); AwaitExpected waits for the log's cluster.
func TestAwaitExpectedWaitsForTheAccessLogsCluster(t *testing.T) {
	w, call := backend.Workload{Namespace: "ns", Name: "w"}, backend.MustCall("http://jsonplaceholder.typicode.com/")
	want := outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Cluster: "outbound|80||jsonplaceholder.typicode.com", Status: 200}
	b := &loggingSidecar{enteredAt: time.Now().Add(150 * time.Millisecond)}
	_, waited, err := backend.AwaitExpected(context.Background(), b, w, call, want, 5*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, waited.Took, 150*time.Millisecond)
	b.mu.Lock()
	lastClient := b.clients[len(b.clients)-1]
	b.mu.Unlock()
	last, err := b.AccessLogEntry(context.Background(), w, call, lastClient, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, want.Cluster, last.Cluster)
}

// A wildcard entry on two ports, resolution NONE (as Istio requires for a wildcard).
const wildcardEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: typicode}
spec:
  hosts: ["*.typicode.com"]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: tls, protocol: TLS}]
  resolution: NONE
`

// On a backend whose proxies log, a call the proxy answered itself is checked on its
// line too, not only its status: block_all's 502 is a direct_response with no cluster,
// a route to a missing cluster is flagged NC (at the gateway, for a call through one).
// Before, only expectations naming a cluster had their line checked, so a 502 from
// anything else passed as block_all.
func TestTheLogOfAnAnswerTheProxyGaveItselfIsChecked(t *testing.T) {
	blockAll := outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll}
	assert.True(t, backend.ChecksLog(blockAll))
	assert.Empty(t, backend.AccessLogEntry{Status: 502, Flags: "-", Details: "direct_response", Cluster: "-"}.Mismatch(blockAll))
	assert.NotEmpty(t, backend.AccessLogEntry{Status: 502, Flags: "-", Details: "via_upstream", Cluster: "PassthroughCluster"}.Mismatch(blockAll),
		"an upstream's 502 is not block_all's")

	throughGateway := outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonNoCluster,
		Cluster: "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local",
		Gateway: &outcome.Hop{Cluster: "outbound|80||jsonplaceholder.typicode.com"}}
	sidecar := backend.AccessLogEntry{Status: 503, Flags: "-", Details: "via_upstream", Cluster: throughGateway.Cluster}
	nc := sidecar
	nc.Gateway = &backend.AccessLogEntry{Status: 503, Flags: "NC", Details: "cluster_not_found", Cluster: "-"}
	assert.Empty(t, nc.Mismatch(throughGateway))
	upstream503 := sidecar
	upstream503.Gateway = &backend.AccessLogEntry{Status: 503, Flags: "-", Details: "via_upstream", Cluster: "outbound|80||jsonplaceholder.typicode.com"}
	assert.NotEmpty(t, upstream503.Mismatch(throughGateway), "the host's own 503, relayed by the gateway, is not the gateway's NC")
	assert.NotEmpty(t, sidecar.Mismatch(throughGateway), "no gateway line")

	denied := outcome.Expect{Kind: outcome.Denied, Reason: outcome.ReasonRBAC, Cluster: throughGateway.Cluster,
		Gateway: &outcome.Hop{Cluster: "outbound|443||jsonplaceholder.typicode.com"}}
	assert.True(t, backend.ChecksLog(outcome.Expect{Kind: outcome.Denied, Reason: outcome.ReasonRBAC}))
	rbac := sidecar
	rbac.Status = 403
	rbac.Gateway = &backend.AccessLogEntry{Status: 403, Flags: "-", Details: "rbac_access_denied_matched_policy[none]",
		Cluster: "outbound|443||jsonplaceholder.typicode.com"}
	assert.Empty(t, rbac.Mismatch(denied))
	upstream403 := rbac
	upstream403.Gateway = &backend.AccessLogEntry{Status: 403, Flags: "-", Details: "via_upstream", Cluster: "outbound|443||jsonplaceholder.typicode.com"}
	assert.Contains(t, upstream403.Mismatch(denied), "an RBAC denial is Envoy's 403", "the host's own 403 is no denial at the gateway")
}

// A method goes with an HTTP request only, in upper case; GET is the default and is
// not written out.
func TestACallsMethod(t *testing.T) {
	c := backend.MustCall("http://jsonplaceholder.typicode.com/todos/1")
	assert.Equal(t, "GET", c.RequestMethod())
	post, err := c.Using("POST")
	require.NoError(t, err)
	assert.Equal(t, "POST", post.RequestMethod())
	assert.Equal(t, []string{"--method=POST", "http://jsonplaceholder.typicode.com/todos/1"}, post.ClientArgs())
	get, err := post.Using("GET")
	require.NoError(t, err)
	assert.Equal(t, c.ClientArgs(), get.ClientArgs(), "GET is the client's default")
	_, err = c.Using("post")
	assert.ErrorContains(t, err, "upper case")
	_, err = backend.MustCall("tcp://billing.db.example:5432").Using("POST")
	assert.ErrorContains(t, err, "carries no HTTP request")
}

// A call through a proxy connects to the proxy: it names no address of its own,
// whichever of the two a lab file gives first; and only an https:// call goes through one.
func TestACallThroughAProxyNamesNoAddress(t *testing.T) {
	c := backend.MustCall("https://jsonplaceholder.typicode.com/todos/1")
	through, err := c.Through("http://proxy.corp.example:3128")
	require.NoError(t, err)
	host, port := through.Dialed()
	assert.Equal(t, "proxy.corp.example", host)
	assert.Equal(t, 3128, port)
	_, err = through.At("203.0.113.9")
	assert.ErrorContains(t, err, "names no address of its own")
	at, err := c.At("203.0.113.9")
	require.NoError(t, err)
	_, err = at.Through("http://proxy.corp.example:3128")
	assert.ErrorContains(t, err, "names no address of its own")
	_, err = backend.MustCall("http://jsonplaceholder.typicode.com/").Through("http://proxy.corp.example:3128")
	assert.ErrorContains(t, err, "https://")
}
