package kind

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
)

// Lines from istio-proxy's log on the offline kind run, in the format istiod configures
// (Istio's default TEXT format), between pilot-agent's own lines.
const proxyLog = `2026-11-25T09:43:15.173450Z	info	Envoy proxy is ready
[2026-11-25T09:43:16.027Z] "GET /todos/1 HTTP/1.1" 502 - direct_response - "-" 0 118 2 - "-" "egresslab-client" "465a4e2e-d7c0-79ac-333c-7ca621a690bc" "jsonplaceholder.typicode.com" "-" - - 10.244.0.4:80 10.244.0.8:57642 - block_all
[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "jsonplaceholder.typicode.com" "10.244.0.4:80" outbound|80||jsonplaceholder.typicode.com 10.244.0.8:57672 10.244.0.4:80 10.244.0.8:57658 - default
[2026-11-25T09:43:16.905Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 10.244.0.4:443 10.244.0.8:35336 jsonplaceholder.typicode.com -
2026-11-25T09:43:17.000000Z	info	xdsproxy	connected to upstream XDS server`

// The blocked-how lab on the offline run: a 502 on port 80, then plain HTTP on port 81,
// where the sidecar has no HTTP listener and logs a TCP connection to BlackHoleCluster.
// The port-81 call once matched the port-80 line (same host and path).
const port81Log = `[2026-11-25T23:04:25.498Z] "GET /todos/1 HTTP/1.1" 502 - direct_response - "-" 0 118 0 - "-" "egresslab-client" "793416b8-aa9b-19eb-6a86-d5f284f24580" "jsonplaceholder.typicode.com" "-" - - 10.244.0.4:80 10.244.0.8:47362 - block_all
[2026-11-25T23:04:25.900Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 10.244.0.4:81 10.244.0.8:46468 - -`

func TestPlainHTTPOnAPortWithoutAnHTTPListenerMatchesItsTCPLine(t *testing.T) {
	for _, tc := range []struct{ url, cluster string }{
		{"http://jsonplaceholder.typicode.com:81/todos/1", "BlackHoleCluster"},
		{"http://jsonplaceholder.typicode.com/todos/1", "-"},
	} {
		c, err := backend.ParseCall(tc.url)
		require.NoError(t, err)
		e, ok := LastAccessLogEntry(port81Log, c, "")
		require.True(t, ok, tc.url)
		assert.Equal(t, tc.cluster, e.Cluster, tc.url)
	}
	c, err := backend.ParseCall("http://jsonplaceholder.typicode.com:82/todos/1")
	require.NoError(t, err)
	_, ok := LastAccessLogEntry(port81Log, c, "")
	assert.False(t, ok, "no line records a call to port 82")
}

func TestTheCallsLastAccessLogLineNamesItsCluster(t *testing.T) {
	for _, tc := range []struct {
		url, cluster string
	}{
		{"http://jsonplaceholder.typicode.com/todos/1", "outbound|80||jsonplaceholder.typicode.com"},
		{"https://jsonplaceholder.typicode.com/todos/1", "BlackHoleCluster"},
	} {
		c, err := backend.ParseCall(tc.url)
		require.NoError(t, err)
		e, ok := LastAccessLogEntry(proxyLog, c, "")
		require.True(t, ok, tc.url)
		assert.Equal(t, tc.cluster, e.Cluster, tc.url)
	}
	for _, other := range []string{"http://jsonplaceholder.typicode.com/todos/2", "http://example.com/todos/1", "https://jsonplaceholder.typicode.com:8443/"} {
		c, err := backend.ParseCall(other)
		require.NoError(t, err)
		_, ok := LastAccessLogEntry(proxyLog, c, "")
		assert.False(t, ok, "no line records %s", other)
	}
}

// What Envoy logs for HTTPS to a host with no listener of its own under REGISTRY_ONLY:
// virtualOutbound takes the connection, it has no TLS inspector
// (buildVirtualOutboundListener adds listener filters only for ALLOW_ANY_DYNAMIC_DNS),
// so %REQUESTED_SERVER_NAME% is "-". The line was never found (the match wanted the host
// as SNI, which only the stand-in logged), and a call on a real sidecar waited out its
// timeout. It is found by the app's own address, which Envoy always logs.
const catchAllLog = `[2026-11-29T10:00:01.000Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 10.244.0.4:443 10.244.0.8:41000 - -
[2026-11-29T10:00:02.000Z] "- - -" 0 - - - "-" 517 4012 35 - "-" "-" "-" "-" "10.244.0.4:443" PassthroughCluster 10.244.0.8:41010 10.244.0.4:443 10.244.0.8:41002 - -
[2026-11-29T10:00:03.000Z] "GET /todos/1 HTTP/1.1" 502 - direct_response - "-" 0 118 0 - "-" "egresslab-client" "793416b8-aa9b-19eb-6a86-d5f284f24580" "jsonplaceholder.typicode.com" "-" - - 10.244.0.4:80 10.244.0.8:41004 - block_all`

func TestACatchAllLineWithoutSNIIsFoundByTheClientsAddress(t *testing.T) {
	https, err := backend.ParseCall("https://jsonplaceholder.typicode.com/todos/1")
	require.NoError(t, err)
	for client, cluster := range map[string]string{"10.244.0.8:41000": "BlackHoleCluster", "10.244.0.8:41002": "PassthroughCluster"} {
		e, ok := LastAccessLogEntry(catchAllLog, https, client)
		require.True(t, ok, client)
		assert.Equal(t, cluster, e.Cluster, client)
	}
	http, err := backend.ParseCall("http://jsonplaceholder.typicode.com/todos/1")
	require.NoError(t, err)
	e, ok := LastAccessLogEntry(catchAllLog, http, "10.244.0.8:41004")
	require.True(t, ok)
	assert.Equal(t, "-", e.Cluster)
	// Another client's call, or the same client's to another port, is not this call's.
	_, ok = LastAccessLogEntry(catchAllLog, https, "10.244.0.8:49999")
	assert.False(t, ok)
	_, ok = LastAccessLogEntry(catchAllLog, http, "10.244.0.8:41000")
	assert.False(t, ok, "the line at 41000 is a call to port 443")
}

// The egress-gateway lab's last call, on a cluster: the client's sidecar reached the
// gateway, which answered 503 itself (NC: nothing registers the host there). The
// client's line shows only an upstream's 503; the gateway's line, found by the
// x-request-id both log, shows the NC, and no cluster (Envoy records the upstream
// cluster only once it has found one). Judged from both, the call is blocked as sim
// says, and the lab's expectation holds; from the client's line alone it was "allowed".
func TestAGatewaysOwn503IsFoundByItsRequestIDAndJudgedAsSimJudgesIt(t *testing.T) {
	const id = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
	client := `[2026-11-29T17:40:02.101Z] "GET /todos/1 HTTP/1.1" 503 - via_upstream - "-" 0 0 3 2 "-" "egresslab-client" "` + id +
		`" "jsonplaceholder.typicode.com" "10.244.0.12:80" outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local 10.244.0.8:40310 10.244.0.4:80 10.244.0.8:57642 - -`
	gateway := `2026-11-29T17:40:01.000000Z	info	Envoy proxy is ready
[2026-11-29T17:40:01.500Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 8 "10.244.0.8" "egresslab-client" "11111111-2222-4333-8444-555555555555" "jsonplaceholder.typicode.com" "10.244.0.4:80" outbound|80||jsonplaceholder.typicode.com 10.244.0.12:51000 10.244.0.12:80 10.244.0.8:40300 - -
[2026-11-29T17:40:02.102Z] "GET /todos/1 HTTP/1.1" 503 NC cluster_not_found - "-" 0 0 0 - "10.244.0.8" "egresslab-client" "` + id +
		`" "jsonplaceholder.typicode.com" "-" - - 10.244.0.12:80 10.244.0.8:40310 - -`

	c := backend.MustCall("http://jsonplaceholder.typicode.com/todos/1")
	e, ok := LastAccessLogEntry(client, c, "10.244.0.8:57642")
	require.True(t, ok)
	assert.Equal(t, id, RequestIDOf(e.Line))
	g, ok := AccessLogEntryByRequestID(gateway, id)
	require.True(t, ok, "the gateway's line has the client's request id")
	assert.Equal(t, 503, g.Status)
	assert.Equal(t, "NC", g.Flags)
	assert.Equal(t, "-", g.Cluster)
	e.Gateway, e.GatewayName = &g, "istio-system/istio-egressgateway"

	seen := outcome.Classify(outcome.Observation{URL: c.String(), Status: 503, Server: "envoy", UpstreamServiceTime: "2"})
	require.Equal(t, outcome.Allowed, seen.Kind, "the client alone sees an upstream's 503")
	require.True(t, outcome.NextHopDecides(seen))
	v := outcome.AtGateway(seen, e.Logged(), e.GatewayName, g.Logged())

	want := labs.Expect("egress-gateway", "the-gateway-answers-503") // the lab's call without the entry
	require.Equal(t, outcome.ReasonNoCluster, want.Reason)
	assert.Empty(t, want.Check(v), "the lab's expectation, against the verdict from both lines")
	assert.Empty(t, e.Mismatch(want), "the lines against the clusters the lab names")
	assert.Equal(t, "istio-system/istio-egressgateway", v.Evidence.GatewayName)
	assert.Equal(t, "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local", v.Evidence.Cluster,
		"the sidecar's cluster, from its line")
}
