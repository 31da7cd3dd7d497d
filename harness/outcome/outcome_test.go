package outcome_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/outcome"
)

func TestClassifyRealObservations(t *testing.T) {
	cases := []struct {
		name   string
		obs    outcome.Observation
		kind   outcome.Kind
		reason string
	}{
		{"envoy answers 502 itself: block_all",
			outcome.Observation{Status: 502, Server: "envoy"}, outcome.Blocked, outcome.ReasonBlockAll},
		{"reset by BlackHoleCluster",
			outcome.Observation{ErrorClass: outcome.ErrReset, Error: "read: connection reset by peer"}, outcome.Blocked, outcome.ReasonBlackHole},
		{"upstream answered through the sidecar",
			outcome.Observation{Status: 200, Server: "envoy", UpstreamServiceTime: "87"}, outcome.Allowed, outcome.ReasonUpstream},
		{"upstream's own 502 is not a block",
			outcome.Observation{Status: 502, Server: "cloudflare", UpstreamServiceTime: "40"}, outcome.Allowed, outcome.ReasonUpstream},
		{"DNS failure is unreachable, never blocked",
			outcome.Observation{ErrorClass: outcome.ErrDNS}, outcome.Unreachable, "dns"},
		{"timeout is unreachable",
			outcome.Observation{ErrorClass: outcome.ErrTimeout}, outcome.Unreachable, "timeout"},
		{"sidecar's 503 no healthy upstream is unreachable",
			outcome.Observation{Status: 503, Server: "envoy"}, outcome.Unreachable, "sidecar found no healthy upstream"},
		{"sidecar's 404 is no route",
			outcome.Observation{Status: 404, Server: "envoy"}, outcome.Blocked, outcome.ReasonNoRoute},
		{"TCP: a reply is the upstream's, with no status",
			outcome.Observation{URL: "tcp://db.postgres.example:5432", BodyPrefix: "egresslab stand-in server on port 5432: got \"egresslab ping\"\n"},
			outcome.Allowed, outcome.ReasonUpstream},
		{"TCP: the scheme is case-insensitive",
			outcome.Observation{URL: "TCP://db.postgres.example:5432", BodyPrefix: "R"}, outcome.Allowed, outcome.ReasonUpstream},
		{"TCP: part of a reply, then a read error, is still answered",
			outcome.Observation{URL: "tcp://db.postgres.example:5432", BodyPrefix: "FATAL:  ", Error: "reading the reply: i/o timeout"},
			outcome.Allowed, outcome.ReasonUpstream},
		{"TCP: no error and no byte is no response",
			outcome.Observation{URL: "tcp://db.postgres.example:5432"}, outcome.Unreachable, "no response"},
		{"TCP: closed unanswered by BlackHoleCluster",
			outcome.Observation{URL: "tcp://db.postgres.example:5432", ErrorClass: outcome.ErrReset, Error: "reading the reply: EOF"},
			outcome.Blocked, outcome.ReasonBlackHole},
		{"TCP: refused is unreachable",
			outcome.Observation{URL: "tcp://db.postgres.example:5432", ErrorClass: outcome.ErrRefused}, outcome.Unreachable, "refused"},
		{"Envoy's own RBAC 403 (no upstream reached)",
			outcome.Observation{Status: 403, Server: "envoy", BodyPrefix: "RBAC: access denied"}, outcome.Denied, outcome.ReasonRBAC},
		{"an RBAC body from an upstream is its answer until a gateway's log says otherwise (AtGateway)",
			outcome.Observation{Status: 403, Server: "envoy", UpstreamServiceTime: "3", BodyPrefix: "RBAC: access denied"}, outcome.Allowed, outcome.ReasonUpstream},
		{"an upstream's own 403 is its answer",
			outcome.Observation{Status: 403, Server: "envoy", UpstreamServiceTime: "40", BodyPrefix: "Forbidden"}, outcome.Allowed, outcome.ReasonUpstream},
		{"HTTP: bytes without a status are still no response",
			outcome.Observation{URL: "http://db.postgres.example:5432/", BodyPrefix: "R"}, outcome.Unreachable, "no response"},
		{"HTTP: a URL that only mentions tcp:// is HTTP",
			outcome.Observation{URL: "http://h/?next=tcp://db:5432", BodyPrefix: "R"}, outcome.Unreachable, "no response"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := outcome.Classify(tc.obs)
			assert.Equal(t, tc.kind, v.Kind)
			assert.Equal(t, tc.reason, v.Reason)
			assert.True(t, v.Evidence.FromCall)
			assert.Equal(t, tc.obs.Status, v.Evidence.Status)
		})
	}
}

func TestExpectChecksOnlyTheEvidenceTheBackendHas(t *testing.T) {
	fromConfig := outcome.Verdict{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
		Evidence: outcome.Evidence{FromConfig: true, Listener: "0.0.0.0_80", VirtualHost: "block_all"}}
	fromCall := outcome.Verdict{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
		Evidence: outcome.Evidence{FromCall: true, Status: 502, Server: "envoy"}}
	want := outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
		Listener: "0.0.0.0_80", VirtualHost: "block_all", Status: 502}

	assert.Empty(t, want.Check(fromConfig))
	assert.Empty(t, want.Check(fromCall))

	wrongHost := want
	wrongHost.VirtualHost = "allow_any"
	assert.Equal(t, []string{`virtual host: want "allow_any", got "block_all"`}, wrongHost.Check(fromConfig))

	wrongStatus := want
	wrongStatus.Status = 200
	assert.Equal(t, []string{"status: want 200, got 502"}, wrongStatus.Check(fromCall))

	assert.Contains(t, want.Check(outcome.Verdict{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll}),
		"the verdict carries no evidence")
	assert.Contains(t, want.Check(outcome.Verdict{Kind: outcome.Allowed, Evidence: fromConfig.Evidence}),
		"verdict: want BLOCKED, got ALLOWED")
}

func TestEvidenceFieldsAreStableAndSkipEmpty(t *testing.T) {
	e := outcome.Evidence{Listener: "0.0.0.0_80", Cluster: "outbound|80||h", Status: 200}
	assert.Equal(t, [][2]string{{"listener", "0.0.0.0_80"}, {"cluster", "outbound|80||h"}, {"status", "200"}}, e.Fields())
	assert.Equal(t, `listener="0.0.0.0_80" cluster="outbound|80||h" status="200"`, e.String())
}

// One expectation serves sim and a cluster: a config reason is not asked of a real call.
func TestConfigReasonsAreCheckedAgainstConfigOnly(t *testing.T) {
	want := outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Cluster: "outbound|80||a.example.com", Status: 200}
	real := outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonUpstream, Evidence: outcome.Evidence{FromCall: true, Status: 200}}
	if m := want.Check(real); len(m) != 0 {
		t.Errorf("a real call that went out: %v", m)
	}
	simulated := outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Evidence: outcome.Evidence{FromConfig: true, Cluster: "outbound|80||a.example.com"}}
	if m := want.Check(simulated); len(m) != 1 {
		t.Errorf("a simulated verdict with another reason must differ once, got %v", m)
	}
	blocked := outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll}
	if m := blocked.Check(outcome.Verdict{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole, Evidence: outcome.Evidence{FromCall: true}}); len(m) != 1 {
		t.Errorf("a block reason is checked on a real call too, got %v", m)
	}
}

// A 403 the client saw through its sidecar is the gateway's RBAC denial only when the
// gateway's line says so (403 rbac_access_denied_matched_policy[…]); otherwise it is the
// upstream's answer, whatever its body.
func TestAtGatewayTellsItsRBACDenialFromAnUpstreams403(t *testing.T) {
	seen := outcome.Classify(outcome.Observation{Status: 403, Server: "envoy", UpstreamServiceTime: "3", BodyPrefix: outcome.RBACDeniedBody})
	require.True(t, outcome.NextHopDecides(seen), "a relayed denial is read at the next hop")
	sidecar := outcome.Logged{Status: 403, Flags: "-", Details: "via_upstream", Cluster: "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local"}

	denied := outcome.AtGateway(seen, sidecar, "istio-system/istio-egressgateway",
		outcome.Logged{Status: 403, Flags: "-", Details: "rbac_access_denied_matched_policy[none]", Cluster: "outbound|443||jsonplaceholder.typicode.com"})
	assert.Equal(t, outcome.Denied, denied.Kind)
	assert.Equal(t, outcome.ReasonRBAC, denied.Reason)
	assert.Equal(t, "rbac_access_denied_matched_policy[none]", denied.Evidence.Gateway.Details)

	relayed := outcome.AtGateway(seen, sidecar, "istio-system/istio-egressgateway",
		outcome.Logged{Status: 403, Flags: "-", Details: "via_upstream", Cluster: "outbound|443||jsonplaceholder.typicode.com"})
	assert.Equal(t, outcome.Allowed, relayed.Kind, "the host's own 403, relayed by the gateway")
	assert.Equal(t, outcome.ReasonUpstream, relayed.Reason)

	own := outcome.Classify(outcome.Observation{Status: 403, Server: "envoy", BodyPrefix: outcome.RBACDeniedBody})
	assert.False(t, outcome.NextHopDecides(own), "the sidecar's own denial has no next hop")
}
