package suggest

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/pkg/model"

	"github.com/egresslab/egresslab/harness/accesslog"
)

// Real lines: from the offline kind run (harness/backend/kind's tests), in Istio's
// default TEXT format, and the same calls in Istio's default JSON format as Envoy writes
// it (a value it lacks is null, a number a number).
const (
	// ALLOW_ANY, HTTP on a port with an HTTP listener: virtual host allow_any.
	textHTTPPassthrough = `[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "jsonplaceholder.typicode.com:80" "203.0.113.61:80" PassthroughCluster 10.244.0.8:57672 203.0.113.61:80 10.244.0.8:57658 - allow_any`
	// ALLOW_ANY, HTTPS to a port no listener has: the catch-all, no TLS inspector, no SNI.
	textCatchAll = `[2026-11-29T10:00:02.000Z] "- - -" 0 - - - "-" 517 4012 35 - "-" "-" "-" "-" "10.244.0.4:443" PassthroughCluster 10.244.0.8:41010 10.244.0.4:443 10.244.0.8:41002 - -`
	// ALLOW_ANY, HTTPS on 443 where a TLS entry gives the port a listener with a TLS
	// inspector: the unknown SNI takes the listener's PassthroughFilterChain.
	textTLSBySNI   = `[2026-11-29T10:00:03.000Z] "- - -" 0 - - - "-" 517 4012 35 - "-" "-" "-" "-" "203.0.113.62:443" PassthroughCluster 10.244.0.8:41020 203.0.113.62:443 10.244.0.8:41012 api.github.com -`
	textRegistered = `[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "jsonplaceholder.typicode.com" "10.244.0.4:80" outbound|80||jsonplaceholder.typicode.com 10.244.0.8:57672 10.244.0.4:80 10.244.0.8:57658 - default`
	textBlockAll   = `[2026-11-25T09:43:16.027Z] "GET /todos/1 HTTP/1.1" 502 - direct_response - "-" 0 118 2 - "-" "egresslab-client" "465a4e2e-d7c0-79ac-333c-7ca621a690bc" "jsonplaceholder.typicode.com" "-" - - 10.244.0.4:80 10.244.0.8:57642 - block_all`
	textBlackHole  = `[2026-11-25T09:43:16.905Z] "- - -" 0 UH - - "-" 0 0 0 - "-" "-" "-" "-" "-" BlackHoleCluster - 10.244.0.4:443 10.244.0.8:35336 jsonplaceholder.typicode.com -`
	textGatewayNC  = `[2026-11-29T17:40:02.102Z] "GET /todos/1 HTTP/1.1" 503 NC cluster_not_found - "-" 0 0 0 - "10.244.0.8" "egresslab-client" "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b" "jsonplaceholder.typicode.com" "-" - - 10.244.0.12:80 10.244.0.8:40310 - -`
	// An egress gateway's line: it was called at its own address, 10.244.0.12.
	textGateway = `[2026-11-29T17:40:01.500Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 8 "10.244.0.8" "egresslab-client" "11111111-2222-4333-8444-555555555555" "jsonplaceholder.typicode.com" "10.244.0.4:80" outbound|80||jsonplaceholder.typicode.com 10.244.0.12:51000 10.244.0.12:80 10.244.0.8:40300 - -`
	// A sidecar's inbound listener, called over mTLS by another sidecar.
	textInbound = `[2026-11-29T10:05:00.000Z] "GET /healthz HTTP/1.1" 200 - via_upstream - "-" 0 2 1 1 "-" "curl/8.5.0" "0e0e0e0e-0000-4000-8000-000000000000" "client.egresslab:80" "10.244.0.8:8080" inbound|8080|| 127.0.0.6:43567 10.244.0.8:8080 10.244.0.5:50002 outbound_.80_._.client.egresslab.svc.cluster.local default`
	// A gateway's AUTO_PASSTHROUGH (SNI-DNAT) cluster.
	textSNIDNAT    = `[2026-11-29T10:06:00.000Z] "- - -" 0 - - - "-" 1200 3400 20 - "-" "-" "-" "-" "10.244.1.7:8443" outbound_.8443_._.api.team-b.svc.cluster.local 10.244.0.30:41000 10.244.0.30:15443 10.244.2.9:52000 outbound_.8443_._.api.team-b.svc.cluster.local -`
	textTCPAddress = `[2026-11-29T10:07:00.000Z] "- - -" 0 - - - "-" 96 220 4100 - "-" "-" "-" "-" "203.0.113.10:5432" PassthroughCluster 10.244.0.8:44000 203.0.113.10:5432 10.244.0.8:43998 - -`
	textHTTP2      = `[2026-11-29T10:08:00.000Z] "POST /pkg.Svc/Call HTTP/2" 200 - via_upstream - "-" 12 30 4 3 "-" "grpc-go/1.70.0" "22222222-0000-4000-8000-000000000000" "grpc.example.com:8080" "198.51.100.5:8080" PassthroughCluster 10.244.0.8:45000 198.51.100.5:8080 10.244.0.8:44990 - allow_any`
	textHTTPToIP   = `[2026-11-29T10:09:00.000Z] "GET /latest/meta-data HTTP/1.1" 200 - via_upstream - "-" 0 20 1 1 "-" "aws-sdk" "33333333-0000-4000-8000-000000000000" "169.254.169.254" "169.254.169.254:80" PassthroughCluster 10.244.0.8:46000 169.254.169.254:80 10.244.0.8:45990 - allow_any`

	jsonHTTPPassthrough = `{"authority":"jsonplaceholder.typicode.com","bytes_received":0,"bytes_sent":359,"connection_termination_details":null,"downstream_local_address":"203.0.113.61:80","downstream_remote_address":"10.244.0.8:57658","duration":9,"method":"GET","path":"/todos/1","protocol":"HTTP/1.1","request_id":"18a47684-6b1d-56ab-9e7d-774e4f05551c","requested_server_name":null,"response_code":200,"response_code_details":"via_upstream","response_flags":"-","route_name":"allow_any","start_time":"2026-11-25T09:43:16.273Z","upstream_cluster":"PassthroughCluster","upstream_host":"203.0.113.61:80","upstream_local_address":"10.244.0.8:57672","upstream_service_time":"2","upstream_transport_failure_reason":null,"user_agent":"egresslab-client","x_forwarded_for":null}`
	jsonCatchAll        = `{"authority":null,"bytes_received":517,"bytes_sent":4012,"connection_termination_details":null,"downstream_local_address":"10.244.0.4:443","downstream_remote_address":"10.244.0.8:41002","duration":35,"method":null,"path":null,"protocol":null,"request_id":null,"requested_server_name":null,"response_code":0,"response_code_details":null,"response_flags":"-","route_name":null,"start_time":"2026-11-29T10:00:02.000Z","upstream_cluster":"PassthroughCluster","upstream_host":"10.244.0.4:443","upstream_local_address":"10.244.0.8:41010","upstream_service_time":null,"upstream_transport_failure_reason":null,"user_agent":null,"x_forwarded_for":null}`
	// The stand-in for Envoy writes every value as a string, "-" for none.
	jsonStandInTLS = `{"authority":"-","downstream_local_address":"203.0.113.62:443","downstream_remote_address":"10.244.0.8:41012","method":"-","protocol":"-","requested_server_name":"api.github.com","response_code":"0","route_name":"-","start_time":"2026-11-29T10:00:03.000Z","upstream_cluster":"PassthroughCluster","upstream_host":"203.0.113.62:443","upstream_local_address":"10.244.0.8:41020"}`
	jsonRegistered = `{"authority":"jsonplaceholder.typicode.com","downstream_local_address":"10.244.0.4:80","downstream_remote_address":"10.244.0.8:57658","method":"GET","protocol":"HTTP/1.1","requested_server_name":null,"response_code":200,"route_name":"default","start_time":"2026-11-25T09:43:16.273Z","upstream_cluster":"outbound|80||jsonplaceholder.typicode.com","upstream_local_address":"10.244.0.8:57672"}`

	agentLine     = "2026-11-25T09:43:15.173450Z\tinfo\tEnvoy proxy is ready"
	agentJSONLine = `{"level":"info","time":"2026-11-25T09:43:15.173450Z","scope":"envoy main","msg":"Envoy proxy is ready"}`
)

func TestALineIsReadInEitherOfIstiosFormats(t *testing.T) {
	cases := []struct {
		name string
		line string
		kind lineKind
		want record
	}{
		{"TEXT, HTTP through allow_any", textHTTPPassthrough, accessLog, record{method: "GET", protocol: "HTTP/1.1",
			authority: "jsonplaceholder.typicode.com:80", cluster: "PassthroughCluster", upstreamLocal: "10.244.0.8:57672",
			downstreamLocal: "203.0.113.61:80", route: "allow_any"}},
		{"TEXT, TCP on the catch-all: no SNI", textCatchAll, accessLog, record{cluster: "PassthroughCluster",
			upstreamLocal: "10.244.0.8:41010", downstreamLocal: "10.244.0.4:443"}},
		{"TEXT, TLS by SNI", textTLSBySNI, accessLog, record{cluster: "PassthroughCluster", upstreamLocal: "10.244.0.8:41020",
			downstreamLocal: "203.0.113.62:443", sni: "api.github.com"}},
		{"TEXT, HTTP/2", textHTTP2, accessLog, record{method: "POST", protocol: "HTTP/2", authority: "grpc.example.com:8080",
			cluster: "PassthroughCluster", upstreamLocal: "10.244.0.8:45000", downstreamLocal: "198.51.100.5:8080", route: "allow_any"}},
		{"TEXT, block_all has no cluster", textBlockAll, accessLog, record{method: "GET", protocol: "HTTP/1.1",
			authority: "jsonplaceholder.typicode.com", downstreamLocal: "10.244.0.4:80", route: "block_all"}},
		{"JSON as Envoy writes it, HTTP", jsonHTTPPassthrough, accessLog, record{json: true, method: "GET", protocol: "HTTP/1.1",
			authority: "jsonplaceholder.typicode.com", cluster: "PassthroughCluster", upstreamLocal: "10.244.0.8:57672",
			downstreamLocal: "203.0.113.61:80", route: "allow_any"}},
		{"JSON as Envoy writes it, TCP: nulls", jsonCatchAll, accessLog, record{json: true, cluster: "PassthroughCluster",
			upstreamLocal: "10.244.0.8:41010", downstreamLocal: "10.244.0.4:443"}},
		{"JSON as the stand-in writes it: dashes", jsonStandInTLS, accessLog, record{json: true, cluster: "PassthroughCluster",
			upstreamLocal: "10.244.0.8:41020", downstreamLocal: "203.0.113.62:443", sni: "api.github.com"}},
		{"JSON with an escape in a value", strings.Replace(jsonHTTPPassthrough, `"allow_any"`, `"allow\u005fany"`, 1), accessLog,
			record{json: true, method: "GET", protocol: "HTTP/1.1", authority: "jsonplaceholder.typicode.com", cluster: "PassthroughCluster",
				upstreamLocal: "10.244.0.8:57672", downstreamLocal: "203.0.113.61:80", route: "allow_any"}},
		{"pilot-agent's line", agentLine, notLog, record{}},
		{"pilot-agent's line in JSON (--log_as_json)", agentJSONLine, notLog, record{}},
		{"brackets that are no start time", "[warning] something", notLog, record{}},
		{"Envoy's own format, not Istio's", `[2026-11-25 09:43:15.173][15][warning][config] bad`, notLog, record{}},
		{"JSON that is no JSON", `{not json at all}`, notLog, record{}},
		{"TEXT cut short", textHTTPPassthrough[:120], unreadable, record{}},
		{"TEXT with a field too many", textRegistered + " extra", unreadable, record{}},
		{"JSON cut short", jsonCatchAll[:200], unreadable, record{}},
	}
	o := NewObservations()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, kind, problem := o.parseLine(tc.line)
			require.Equal(t, tc.kind, kind, "%+v", problem)
			assert.Equal(t, kind == unreadable, problem != nil, "a Problem exactly for an unreadable line")
			if kind == accessLog {
				assert.Equal(t, tc.want, rec)
			}
		})
	}
}

// The keys jsonLine reads are Istio's, each holding the operator its TEXT place holds.
func TestTheJSONKeysAreIstios(t *testing.T) {
	want := map[string]string{
		"start_time":                "%START_TIME%",
		"method":                    "%REQ(:METHOD)%",
		"protocol":                  "%PROTOCOL%",
		"authority":                 accesslog.Operators[accesslog.Authority],
		"upstream_cluster":          accesslog.Operators[accesslog.Cluster],
		"upstream_local_address":    accesslog.Operators[accesslog.UpstreamLocal],
		"downstream_local_address":  accesslog.Operators[accesslog.DownstreamLocal],
		"downstream_remote_address": accesslog.Operators[accesslog.DownstreamRemote],
		"requested_server_name":     accesslog.Operators[accesslog.SNI],
		"route_name":                accesslog.Operators[accesslog.Route],
	}
	typ := reflect.TypeFor[jsonLine]()
	require.Equal(t, len(want), typ.NumField())
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("json")
		v, ok := model.EnvoyJSONLogFormatIstio.Fields[key]
		require.True(t, ok, "Istio's JSON format has no key %q", key)
		assert.Equal(t, want[key], v.GetStringValue(), key)
	}
}

// What each kind of line counts as, and which ones become destinations.
func TestEachLineCountsAsWhatItIs(t *testing.T) {
	cases := []struct {
		name string
		line string
		want Counts
		dest *destKey
	}{
		{"HTTP through PassthroughCluster: by its Host, without the port", textHTTPPassthrough,
			Counts{Text: 1, Passthrough: 1}, &destKey{host: "jsonplaceholder.typicode.com", port: 80}},
		{"the same in JSON", jsonHTTPPassthrough, Counts{JSON: 1, Passthrough: 1}, &destKey{host: "jsonplaceholder.typicode.com", port: 80}},
		{"TLS by SNI", textTLSBySNI, Counts{Text: 1, Passthrough: 1}, &destKey{host: "api.github.com", port: 443}},
		{"the catch-all: by address", textCatchAll, Counts{Text: 1, Passthrough: 1}, &destKey{host: "10.244.0.4", port: 443, byAddress: true}},
		{"the catch-all in JSON", jsonCatchAll, Counts{JSON: 1, Passthrough: 1}, &destKey{host: "10.244.0.4", port: 443, byAddress: true}},
		{"raw TCP: by address", textTCPAddress, Counts{Text: 1, Passthrough: 1}, &destKey{host: "203.0.113.10", port: 5432, byAddress: true}},
		{"HTTP whose Host is an address: by address", textHTTPToIP, Counts{Text: 1, Passthrough: 1},
			&destKey{host: "169.254.169.254", port: 80, byAddress: true}},
		{"a registered service", textRegistered, Counts{Text: 1, Registered: 1}, nil},
		{"a registered service in JSON", jsonRegistered, Counts{JSON: 1, Registered: 1}, nil},
		{"block_all", textBlockAll, Counts{Text: 1, Blocked: 1}, nil},
		{"BlackHoleCluster", textBlackHole, Counts{Text: 1, Blocked: 1}, nil},
		{"Envoy's own 503, no cluster", textGatewayNC, Counts{Text: 1, Other: 1}, nil},
		{"an egress gateway's line", textGateway, Counts{Text: 1, Gateway: 1}, nil},
		{"a gateway's SNI-DNAT cluster", textSNIDNAT, Counts{Text: 1, Gateway: 1}, nil},
		{"an inbound listener's line", textInbound, Counts{Text: 1, Inbound: 1}, nil},
		{"pilot-agent's line", agentLine, Counts{NotLog: 1}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewObservations()
			// A second line keeps a file with only pilot-agent's line from being refused
			// as holding no access log at all; its counts are taken off again.
			err := o.Read(context.Background(), Source{Name: "istio-proxy.log"}, strings.NewReader(tc.line+"\n"+textRegistered+"\n"))
			require.NoError(t, err)
			got := o.Counts
			got.Lines, got.Text, got.Registered = got.Lines-2, got.Text-1, got.Registered-1
			assert.Equal(t, tc.want, got)
			if tc.dest == nil {
				assert.Empty(t, o.dests)
				return
			}
			require.Contains(t, o.dests, *tc.dest, "destinations: %v", o.dests)
			assert.Equal(t, "istio-proxy.log:1", o.dests[*tc.dest].first.String())
		})
	}
}

// Memory is bounded by the destinations: a million calls to one host keep one entry,
// and its host is copied out of the line it was read from, which can then go.
func TestObservationsKeepOneEntryPerDestination(t *testing.T) {
	o := NewObservations()
	log := strings.Repeat(textHTTPPassthrough+"\n"+textTLSBySNI+"\n", 5000)
	require.NoError(t, o.Read(context.Background(), Source{Name: "a.log"}, strings.NewReader(log)))
	assert.Len(t, o.dests, 2)
	d := o.dests[destKey{host: "jsonplaceholder.typicode.com", port: 80}]
	require.NotNil(t, d)
	assert.Equal(t, 5000, d.http)
	assert.Equal(t, map[caller]int{{file: "a.log"}: 5000}, d.callers)
	assert.Equal(t, 10000, o.Counts.Passthrough)
}
