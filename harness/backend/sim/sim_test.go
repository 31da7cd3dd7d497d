package sim_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/accesslog"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

const (
	httpCall  = "http://jsonplaceholder.typicode.com/todos/1"
	httpsCall = "https://jsonplaceholder.typicode.com/todos/1"
)

// world applies the lab's manifests: the mesh in mode, the client app, and the named
// ServiceEntry manifests.
func world(t testing.TB, mode string, withApp bool, entries ...string) *sim.Backend {
	t.Helper()
	ctx := context.Background()
	values, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	values, err = values.WithOutboundMode(mode)
	require.NoError(t, err)
	b := sim.New(sim.WithMesh(values))
	t.Cleanup(b.Close)
	if withApp {
		app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
		require.NoError(t, err)
		require.NoError(t, b.Apply(ctx, app))
	}
	for _, e := range entries {
		set, err := labs.Manifest(e, apps.Client.Namespace)
		require.NoError(t, err)
		require.NoError(t, b.Apply(ctx, set))
	}
	return b
}

func TestCallsFromTheClientSidecar(t *testing.T) {
	cases := []struct {
		name    string
		mode    string
		entries []string
		call    string
		want    outcome.Expect
	}{
		{
			name: "registry only, no entry: block_all 502 on the port-80 listener",
			mode: manifest.RegistryOnly, call: httpCall,
			want: labs.Expect("serviceentry", "blocked-by-block-all"),
		},
		{
			name: "registry only, seed entry: routed to the entry's outbound cluster",
			mode: manifest.RegistryOnly, entries: []string{labs.SeedServiceEntry}, call: httpCall,
			want: labs.Expect("serviceentry", "allowed-through-the-entry"),
		},
		{
			name: "registry only, seed entry, https: no listener on 443, black hole",
			mode: manifest.RegistryOnly, entries: []string{labs.SeedServiceEntry}, call: httpsCall,
			want: labs.Expect("serviceentry", "blocked-by-black-hole"),
		},
		{
			name: "registry only, misspelt entry: still block_all",
			mode: manifest.RegistryOnly, entries: []string{labs.MisspeltServiceEntry}, call: httpCall,
			want: outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll, VirtualHost: "block_all"},
		},
		{
			name: "allow any, no entry: passthrough",
			mode: manifest.AllowAny, call: httpCall,
			want: labs.Expect("modes", "allowed-by-passthrough"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := world(t, tc.mode, true, tc.entries...)
			v, err := b.Call(context.Background(), apps.Client, backend.MustCall(tc.call))
			require.NoError(t, err)
			require.Empty(t, tc.want.Check(v), "verdict %s, evidence %s", v, v.Evidence)
		})
	}
}

func TestWithoutAnyPort80ServiceTheCallIsBlackHoled(t *testing.T) {
	// Only the client's Deployment and Namespace: no Service, so no port-80 listener.
	b := world(t, manifest.RegistryOnly, false)
	app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	require.NoError(t, err)
	var kept manifest.Set
	for _, o := range app.Objects {
		if o.Kind != "Service" {
			kept.Objects = append(kept.Objects, o)
		}
	}
	require.NoError(t, b.Apply(context.Background(), &kept))
	v, err := b.Call(context.Background(), apps.Client, backend.MustCall(httpCall))
	require.NoError(t, err)
	want := labs.Expect("serviceentry", "blocked-by-black-hole")
	require.Empty(t, want.Check(v), "verdict %s, evidence %s", v, v.Evidence)
}

func TestApplyDeleteAndReapply(t *testing.T) {
	ctx := context.Background()
	b := world(t, manifest.RegistryOnly, true)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)
	call := backend.MustCall(httpCall)
	kinds := func() outcome.Kind {
		v, err := b.Call(ctx, apps.Client, call)
		require.NoError(t, err)
		return v.Kind
	}
	require.Equal(t, outcome.Blocked, kinds())
	require.NoError(t, b.Apply(ctx, entry))
	require.Equal(t, outcome.Allowed, kinds())
	require.NoError(t, b.Delete(ctx, entry))
	require.Equal(t, outcome.Blocked, kinds())
}

func TestSidecarInjection(t *testing.T) {
	ctx := context.Background()
	b := world(t, manifest.RegistryOnly, true)
	sc, err := b.Sidecar(ctx, apps.Client)
	require.NoError(t, err)
	require.True(t, sc.Injected)
	require.Equal(t, "egresslab/client-sim", sc.Pod)
	require.Contains(t, sc.Rule, "istio-injection=enabled")

	// The same app in a namespace without the label gets no sidecar, and calls say so.
	app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	require.NoError(t, err)
	yaml := strings.Replace(app.YAML(), "istio-injection: enabled", "team: lab", 1)
	unlabelled, err := manifest.Parse("unlabelled.yaml", []byte(yaml), apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, unlabelled))
	sc, err = b.Sidecar(ctx, apps.Client)
	require.NoError(t, err, "no sidecar is an answer, not an error")
	require.False(t, sc.Injected)
	require.Contains(t, sc.Rule, "namespace egresslab is not labelled for injection")
	_, err = b.Call(ctx, apps.Client, backend.MustCall(httpCall))
	require.ErrorContains(t, err, "namespace egresslab is not labelled for injection; label it (kubectl label namespace egresslab istio-injection=enabled)")
}

func TestNoMeshNoCall(t *testing.T) {
	b := sim.New()
	defer b.Close()
	_, err := b.Call(context.Background(), apps.Client, backend.MustCall(httpCall))
	require.ErrorContains(t, err, "no mesh installed")
}

func TestSidecarConfigShowsTheMatch(t *testing.T) {
	b := world(t, manifest.RegistryOnly, true, labs.SeedServiceEntry)
	cfg, err := b.SidecarConfig(context.Background(), apps.Client, backend.MustCall(httpCall))
	require.NoError(t, err)
	for _, want := range []string{"listener: 0.0.0.0_80", "jsonplaceholder.typicode.com", "outbound|80||jsonplaceholder.typicode.com"} {
		require.Contains(t, cfg, want)
	}
}

// An entry in a namespace that does not exist: local refused it (`namespaces "elsewhere"
// not found`) while sim answered ALLOWED. Both now refuse it, in the same words, before
// anything is applied.
func TestAnEntryInANamespaceThatDoesNotExistIsRefused(t *testing.T) {
	ctx := context.Background()
	values, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	b := sim.New(sim.WithMesh(values))
	defer b.Close()
	app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, app))
	elsewhere, err := labs.Manifest(labs.SeedServiceEntry, "elsewhere")
	require.NoError(t, err)
	err = b.Apply(ctx, elsewhere)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `(ServiceEntry jsonplaceholder): namespace "elsewhere" does not exist`)
	v, err := b.Call(ctx, apps.Client, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1"))
	require.NoError(t, err)
	assert.Equal(t, outcome.Blocked, v.Kind, "nothing was applied")

	inClientNS, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, inClientNS))
}

// istio.io's TLS origination task writes a DestinationRule with SIMPLE TLS and no sni:
// Istio then sets auto_sni on the cluster, and Envoy sends the request's Host as SNI.
// The evidence said "(none)", read from the transport socket's sni alone.
func TestTLSOriginationWithoutSNISendsTheHost(t *testing.T) {
	b := world(t, manifest.RegistryOnly, true, "tls-origination/entry.yaml")
	dr, err := manifest.Parse("originate-tls-auto-sni.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: jsonplaceholder-originate-tls
spec:
  host: jsonplaceholder.typicode.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE}
`), apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(context.Background(), dr))
	v, err := b.Call(context.Background(), apps.Client, backend.MustCall(httpCall))
	require.NoError(t, err)
	assert.Equal(t, outcome.Allowed, v.Kind, "%s", v.Evidence)
	assert.Equal(t, "jsonplaceholder.typicode.com", v.Evidence.UpstreamSNI, "auto_sni: the Host, without its port")
}

// istio.io's http-proxy task: a TCP entry for a company proxy at its address (here in
// TEST-NET-3), port 3128. A call to that address is routed to the entry's cluster. It
// was judged as a call to the stand-in address 203.0.113.80, so the entry never
// matched: BlackHoleCluster under REGISTRY_ONLY, PassthroughCluster under ALLOW_ANY.
func TestACallToAnAddressMatchesTheEntryWithThatAddress(t *testing.T) {
	entry, err := manifest.Parse("proxy.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: proxy
spec:
  hosts: [my-company-proxy.com]
  addresses: [203.0.113.7/32]
  ports:
  - {number: 3128, name: tcp, protocol: TCP}
  location: MESH_EXTERNAL
`), apps.Client.Namespace)
	require.NoError(t, err)
	for _, mode := range []string{manifest.RegistryOnly, manifest.AllowAny} {
		b := world(t, mode, true)
		require.NoError(t, b.Apply(context.Background(), entry))
		v, err := b.Call(context.Background(), apps.Client, backend.MustCall("http://203.0.113.7:3128/"))
		require.NoError(t, err)
		assert.Empty(t, outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "203.0.113.7_3128",
			Cluster: "outbound|3128||my-company-proxy.com"}.Check(v), "%s: %s", mode, v.Evidence)
		other, err := b.Call(context.Background(), apps.Client, backend.MustCall("http://203.0.113.8:3128/"))
		require.NoError(t, err)
		assert.NotEqual(t, "outbound|3128||my-company-proxy.com", other.Evidence.Cluster, "%s: another address is not the entry's", mode)
	}
}

// A call followed into an egress gateway arrives there as the sidecar's cluster sends
// it: with istio.io's ISTIO_MUTUAL DestinationRule for the gateway, inside Istio mutual
// TLS with the rule's SNI, which the Gateway's ISTIO_MUTUAL server terminates; then the
// gateway originates TLS to the host. It was replayed as the app's plaintext HTTP, and
// the gateway matched no filter chain: BLOCKED, where the task gets 200.
func TestAGatewayHopCarriesTheTLSTheSidecarOriginates(t *testing.T) {
	b := world(t, manifest.RegistryOnly, true, "apps/egress-gateway.yaml")
	data, err := os.ReadFile("testdata/egress-gateway-mtls.yaml")
	require.NoError(t, err)
	set, err := manifest.Parse("testdata/egress-gateway-mtls.yaml", data, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(context.Background(), set))
	v, err := b.Call(context.Background(), apps.Client, backend.MustCall(httpCall))
	require.NoError(t, err)
	assert.Empty(t, outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered,
		Cluster: "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local", UpstreamSNI: "jsonplaceholder.typicode.com",
		Gateway: &outcome.Hop{Listener: "0.0.0.0_80", VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: "outbound|443||jsonplaceholder.typicode.com"},
	}.Check(v), "%s", v.Evidence)
	require.NotNil(t, v.Evidence.Gateway)
	assert.Equal(t, "jsonplaceholder.typicode.com", v.Evidence.Gateway.UpstreamSNI, "the gateway originates TLS with the Host (auto_sni)")
}

// Of two TCP entries on one port without addresses, istiod keeps the older one's filter
// chain. An entry applied again (kubectl apply of the same file) keeps the age it has, as
// an API server keeps an object's creation time: billing, applied first, still wins.
func TestTheOlderOfTwoTCPEntriesOnOnePortWinsAndKeepsItsAgeWhenApplied(t *testing.T) {
	ctx := context.Background()
	b := world(t, manifest.RegistryOnly, true, "tcp-egress/billing.yaml", "tcp-egress/orders.yaml")
	call := backend.MustCall("tcp://orders.db.example:5432")
	cluster := func() string {
		v, err := b.Call(ctx, apps.Client, call)
		require.NoError(t, err)
		return v.Evidence.Cluster
	}
	assert.Equal(t, "outbound|5432||billing.db.example", cluster(), "the entry applied first wins the port")

	again, err := labs.Manifest("tcp-egress/billing.yaml", apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, again))
	assert.Equal(t, "outbound|5432||billing.db.example", cluster(), "billing applied again is as old as it was")

	require.NoError(t, b.Delete(ctx, again))
	require.NoError(t, b.Apply(ctx, again))
	assert.Equal(t, "outbound|5432||orders.db.example", cluster(), "billing deleted and created again is the newer")
}

// A sidecar that captures DNS gets a listener on the address istiod's IP auto-allocation
// gave each TCP entry without addresses, and its app dials the address its agent
// answers with: orders' connection reaches orders' cluster. A sidecar that does not
// capture DNS still has one listener for the whole port, billing's. istiod frees no
// address: an entry deleted and applied again gets the next one (ipallocate.go).
func TestDNSProxyingGivesEachTCPEntryWithoutAddressesItsOwnListener(t *testing.T) {
	ctx := context.Background()
	b := world(t, manifest.RegistryOnly, true, "tcp-egress/billing.yaml", "tcp-egress/orders.yaml", "tcp-egress/dns-proxying-client.yaml")
	dbClient := backend.Workload{Namespace: apps.Client.Namespace, Name: "db-client"}
	call := func(w backend.Workload, raw string) outcome.Evidence {
		v, err := b.Call(ctx, w, backend.MustCall(raw))
		require.NoError(t, err)
		return v.Evidence
	}
	for host, want := range map[string]outcome.Evidence{
		"billing": {Listener: "240.240.0.1_5432", Cluster: "outbound|5432||billing.db.example"},
		"orders":  {Listener: "240.240.0.2_5432", Cluster: "outbound|5432||orders.db.example"},
	} {
		got := call(dbClient, "tcp://"+host+".db.example:5432")
		assert.Equal(t, [2]string{want.Listener, want.Cluster}, [2]string{got.Listener, got.Cluster}, "db-client to %s", host)
	}
	got := call(apps.Client, "tcp://orders.db.example:5432")
	assert.Equal(t, [2]string{"0.0.0.0_5432", "outbound|5432||billing.db.example"}, [2]string{got.Listener, got.Cluster},
		"a client without DNS capture shares the port's listener")

	orders, err := labs.Manifest("tcp-egress/orders.yaml", apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, orders))
	require.NoError(t, b.Apply(ctx, orders))
	assert.Equal(t, "240.240.0.3_5432", call(dbClient, "tcp://orders.db.example:5432").Listener, "orders created again gets a new address")
	assert.Equal(t, "240.240.0.1_5432", call(dbClient, "tcp://billing.db.example:5432").Listener, "billing keeps its address")
}

// An entry with addresses of its own gets none allocated: its listener is on its address,
// whether or not the sidecar captures DNS, and the agent answers with that address.
func TestAnEntryWithAddressesGetsNoAllocatedOne(t *testing.T) {
	b := world(t, manifest.RegistryOnly, true, "tcp-egress/billing-address.yaml", "tcp-egress/dns-proxying-client.yaml")
	v, err := b.Call(context.Background(), backend.Workload{Namespace: apps.Client.Namespace, Name: "db-client"},
		backend.MustCall("tcp://billing.db.example:5432"))
	require.NoError(t, err)
	assert.Equal(t, "203.0.113.10_5432", v.Evidence.Listener)
	assert.Equal(t, "outbound|5432||billing.db.example", v.Evidence.Cluster)
}

// sim keeps, for each call, the line its sidecar would write as far as the config
// decides it: an HTTPS call under ALLOW_ANY is logged with its SNI only where a TLS
// entry on 443 gives the port's listener a TLS inspector (virtualOutbound has none);
// what only an exchange gives (the code, the upstream's address) is "-"; a log read
// since a time holds only the calls made from then.
func TestTheSidecarsAccessLogSaysWhatItsConfigDecides(t *testing.T) {
	ctx := context.Background()
	fields := func(log string) []string {
		lines := strings.Split(strings.TrimSpace(log), "\n")
		return accesslog.Fields(lines[len(lines)-1])
	}
	b := world(t, manifest.AllowAny, true)
	_, err := b.Call(ctx, apps.Client, backend.MustCall(httpsCall))
	require.NoError(t, err)
	log, err := b.SidecarAccessLog(ctx, apps.Client, time.Time{})
	require.NoError(t, err)
	f := fields(log)
	assert.Equal(t, []string{"PassthroughCluster", "-", "203.0.113.80:443", "-", "-"},
		[]string{f[accesslog.Cluster], f[accesslog.SNI], f[accesslog.DownstreamLocal], f[accesslog.Code], f[accesslog.UpstreamHost]}, log)

	set, err := labs.Manifest("migrate/sni-logging.yaml", apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, set))
	since := time.Now()
	_, err = b.Call(ctx, apps.Client, backend.MustCall(httpsCall))
	require.NoError(t, err)
	_, err = b.Call(ctx, apps.Client, backend.MustCall(httpCall))
	require.NoError(t, err)
	log, err = b.SidecarAccessLog(ctx, apps.Client, since)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	require.Len(t, lines, 2, "the calls made since: %s", log)
	tls := accesslog.Fields(lines[0])
	assert.Equal(t, []string{"PassthroughCluster", "jsonplaceholder.typicode.com"}, []string{tls[accesslog.Cluster], tls[accesslog.SNI]},
		"the listener for 443 inspects TLS: %s", lines[0])
	http := accesslog.Fields(lines[1])
	assert.Equal(t, []string{"GET /todos/1 HTTP/1.1", "jsonplaceholder.typicode.com", "PassthroughCluster", "allow_any"},
		[]string{http[accesslog.Request], http[accesslog.Authority], http[accesslog.Cluster], http[accesslog.Route]}, lines[1])
}
