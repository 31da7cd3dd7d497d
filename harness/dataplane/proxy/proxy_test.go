package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

const (
	todoHTTP  = "http://jsonplaceholder.typicode.com/todos/1"
	todoHTTPS = "https://jsonplaceholder.typicode.com/todos/1"
)

// simConfig is the config sim generates for the client's sidecar in mode, with the
// manifests applied: the same objects the lab and the scenarios apply.
func simConfig(t *testing.T, mode string, applied ...string) *simulation.Simulation {
	t.Helper()
	ctx := context.Background()
	b := sim.New()
	t.Cleanup(b.Close)
	values, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	values, err = values.WithOutboundMode(mode)
	require.NoError(t, err)
	require.NoError(t, b.InstallMesh(ctx, values))
	for _, name := range append([]string{labs.ClientApp}, applied...) {
		set, err := labs.Manifest(name, apps.Client.Namespace)
		require.NoError(t, err)
		require.NoError(t, b.Apply(ctx, set))
	}
	s, err := b.Simulation(apps.Client)
	require.NoError(t, err)
	return s
}

// internet is the stand-in internet's site on loopback; the stand-in reaches it
// through the test's dialer, so nothing leaves the machine.
type internet struct {
	http, https *httptest.Server
	database    net.Listener // the labs' own hosts' database port (site.LabHosts, site.DatabasePort)
	proxy       net.Listener // the company proxy (site.ProxyHost, site.ProxyPort)
	roots       *x509.CertPool
	mesh        *meshCA // the mesh's CA, which issues each of the test's proxies its certificate
	mu          sync.Mutex
	seen        []string // "scheme host path" of each request that reached it
}

func newInternet(t *testing.T) *internet {
	in := &internet{mesh: newMeshCA(t)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		in.mu.Lock()
		in.seen = append(in.seen, scheme+" "+r.Host+" "+r.URL.Path)
		in.mu.Unlock()
		site.Handler().ServeHTTP(w, r)
	})
	cert, roots, _, err := site.Certificate(site.Hosts...)
	require.NoError(t, err)
	in.roots = roots
	in.http = httptest.NewServer(h)
	in.https = httptest.NewUnstartedServer(h)
	in.https.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	in.https.StartTLS()
	t.Cleanup(in.http.Close)
	t.Cleanup(in.https.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	in.database = l
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- site.ServeTCP(ctx, l, io.Discard) }()
	// The company proxy opens its tunnels to the site's HTTPS port, whatever host a
	// CONNECT names: every host the labs tunnel to is the site's.
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	in.proxy = pl
	tunnels := make(chan error, 1)
	toSite := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, in.https.Listener.Addr().String())
	}
	go func() { tunnels <- site.ServeProxy(ctx, pl, toSite, io.Discard) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-served); require.NoError(t, <-tunnels) })
	return in
}

func (in *internet) requests() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string{}, in.seen...)
}

// testProxy is the stand-in's outbound listener on loopback with config held fixed.
// Every connection's original destination is the external address sim uses, on the
// port of the call under way (or the address the call names); that address leads to
// the test's internet, and DNS resolves every host of the site and of the labs' own
// (site.Hosts, site.LabHosts) to it, so the stand-in and sim see the same call.
type testProxy struct {
	addr      string
	port      atomic.Int32
	accessLog *bytes.Buffer
	held      *simulation.Simulation
	mu        sync.Mutex
	decisions []Decision
	endpoints map[string]*endpoint.ClusterLoadAssignment // EDS, by cluster name
	upstreams map[string]string                          // endpoint address -> where the test dials it
}

func standIn(t *testing.T, held *simulation.Simulation, in *internet) *testProxy {
	t.Helper()
	return standInDialedAt(t, held, in, netip.MustParseAddr(dataplane.ExternalAddress), clientIdentity)
}

// standInDialedAt is standIn with every connection's original destination at dialed:
// where the app sent it, whatever DNS says of the host; identity is the calling
// workload's, which its certificate names.
func standInDialedAt(t *testing.T, held *simulation.Simulation, in *internet, dialed netip.Addr, identity string) *testProxy {
	t.Helper()
	tp, p := newTestProcess(t, held, in, identity)
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) {
		return netip.AddrPortFrom(dialed, uint16(tp.port.Load())), nil
	}
	tp.listen(t, p.outbound)
	return tp
}

// gatewayStandIn is the stand-in as a gateway's proxy on loopback, with config held
// fixed: every connection is taken as one to the gateway's listener at, as a
// connection to the gateway pod's port would be.
func gatewayStandIn(t *testing.T, held *simulation.Simulation, in *internet, at netip.AddrPort) *testProxy {
	t.Helper()
	tp, p := newTestProcess(t, held, in, gatewayIdentity)
	tp.listen(t, func(c net.Conn) {
		defer c.Close()
		p.serve(c, at, true)
	})
	return tp
}

// newTestProcess is a stand-in with config held fixed, resolving jsonplaceholder to the
// external address and reaching only the test's internet (and, through tp.upstreams,
// other test proxies).
func newTestProcess(t *testing.T, held *simulation.Simulation, in *internet, identity string) (*testProxy, *Process) {
	tp := &testProxy{accessLog: &bytes.Buffer{}, held: held, upstreams: map[string]string{}}
	p := New(&Bootstrap{}, lockedWriter{&tp.mu, tp.accessLog}, io.Discard)
	p.held = func() (*simulation.Simulation, error) { return held, nil }
	p.heldEndpoints = func(c *cluster.Cluster) *endpoint.ClusterLoadAssignment {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.endpoints[c.GetName()]
	}
	p.Roots = in.roots                   // the proxy trusts the test internet's CA, as a real one trusts public roots
	p.Secret = in.mesh.secrets(identity) // pilot-agent's SDS, with the test's mesh CA
	p.decided = func(d Decision) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		tp.decisions = append(tp.decisions, d)
	}
	p.Resolve = func(_ context.Context, host string) ([]string, error) {
		if slices.Contains(site.Hosts, host) || slices.Contains(site.LabHosts, host) {
			return []string{dataplane.ExternalAddress}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	p.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		switch addr {
		case dataplane.ExternalAddress + ":80":
			return d.DialContext(ctx, network, in.http.Listener.Addr().String())
		case dataplane.ExternalAddress + ":443":
			return d.DialContext(ctx, network, in.https.Listener.Addr().String())
		case net.JoinHostPort(dataplane.ExternalAddress, strconv.Itoa(site.DatabasePort)):
			return d.DialContext(ctx, network, in.database.Addr().String())
		case net.JoinHostPort(dataplane.ExternalAddress, strconv.Itoa(site.ProxyPort)):
			return d.DialContext(ctx, network, in.proxy.Addr().String())
		}
		tp.mu.Lock()
		to, ok := tp.upstreams[addr]
		tp.mu.Unlock()
		if ok {
			return d.DialContext(ctx, network, to)
		}
		return nil, fmt.Errorf("the test lets the stand-in reach only its internet, not %s", addr)
	}
	return tp, p
}

// listen serves the test proxy's loopback listener with serve.
func (tp *testProxy) listen(t *testing.T, serve func(net.Conn)) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	tp.addr = l.Addr().String()
	go acceptLoop(l, serve)
}

// sendTo gives an EDS cluster one endpoint, at, which the test dials at to: as istiod's
// EDS names a gateway pod's address, which the test's gateway stand-in serves.
func (tp *testProxy) sendTo(cluster string, at netip.AddrPort, to string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.endpoints == nil {
		tp.endpoints = map[string]*endpoint.ClusterLoadAssignment{}
	}
	tp.endpoints[cluster] = &endpoint.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpoint.LocalityLbEndpoints{{
		LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: at.Addr().String(), PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(at.Port())}}}},
		}}}},
	}}}
	tp.upstreams[at.String()] = to
}

func (tp *testProxy) log() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.accessLog.String()
}

func (tp *testProxy) decided() []Decision {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]Decision{}, tp.decisions...)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// call makes the client app's own call, its connection sent to the stand-in as
// iptables would send it.
func (tp *testProxy) call(t *testing.T, url string, roots *x509.CertPool) outcome.Observation {
	t.Helper()
	c, err := backend.ParseCall(url)
	require.NoError(t, err)
	return tp.make(c, roots)
}

// make makes the call c through the stand-in: to its proxy's port, for a call through
// a proxy, as the app's connection goes there.
func (tp *testProxy) make(c backend.Call, roots *x509.CertPool) outcome.Observation {
	_, port := c.Dialed()
	tp.port.Store(int32(port))
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, tp.addr)
	}
	opts := []observe.Option{observe.WithDial(dial), observe.WithRootCAs(roots)}
	if c.Proxy != nil {
		opts = append(opts, observe.ViaProxy(c.Proxy))
	}
	if c.Method != "" {
		opts = append(opts, observe.WithMethod(c.Method))
	}
	return observe.Call(context.Background(), c.URL.String(), 5*time.Second, opts...)
}

// The stand-in must decide every call of the lab as Istio's simulator does on the same
// objects, and then do what Envoy does with that decision, so that the client's
// classification of what it saw gives the lab's expected verdict.
func TestTheStandInDecidesAsSimAndActsAsEnvoy(t *testing.T) {
	cases := []struct {
		name    string
		mode    string
		applied []string
		url     string
		want    outcome.Expect
		// reaches is the request the test's internet must see, "" for none.
		reaches string
		// sni is the %REQUESTED_SERVER_NAME% Envoy logs for the call: the ClientHello's
		// server name where the listener that took it has a TLS inspector, else "-".
		sni string
	}{
		{"no entry: block_all", manifest.RegistryOnly, nil, todoHTTP, labs.Expect("serviceentry", "blocked-by-block-all"), "", ""},
		{"the seed's entry", manifest.RegistryOnly, []string{labs.SeedServiceEntry}, todoHTTP,
			labs.Expect("serviceentry", "allowed-through-the-entry"), "http jsonplaceholder.typicode.com /todos/1", ""},
		{"the seed's entry, https", manifest.RegistryOnly, []string{labs.SeedServiceEntry}, todoHTTPS,
			labs.Expect("serviceentry", "blocked-by-black-hole"), "", "-"},
		{"misspelt entry", manifest.RegistryOnly, []string{labs.MisspeltServiceEntry}, todoHTTP,
			labs.Expect("serviceentry", "blocked-by-block-all"), "", ""},
		{"ALLOW_ANY", manifest.AllowAny, nil, todoHTTP, labs.Expect("modes", "allowed-by-passthrough"),
			"http jsonplaceholder.typicode.com /todos/1", ""},
		{"ALLOW_ANY_DYNAMIC_DNS", manifest.AllowAnyDynamicDNS, nil, todoHTTP, labs.Expect("modes", "allowed-by-dynamic-dns"),
			"http jsonplaceholder.typicode.com /todos/1", ""},
		{"ALLOW_ANY, https", manifest.AllowAny, nil, todoHTTPS,
			outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Listener: "virtualOutbound",
				Cluster: outcome.PassthroughCluster, Status: 200},
			"https jsonplaceholder.typicode.com /todos/1", "-"},
		{"TLS originated by a DestinationRule", manifest.RegistryOnly, []string{"tls-origination/entry.yaml", "tls-origination/originate-tls.yaml"},
			todoHTTP, labs.Expect("tls-origination", "tls-originated"), "https jsonplaceholder.typicode.com /todos/1", ""},
		{"a TLS entry on 443", manifest.RegistryOnly, []string{"https/entry-tls.yaml"}, todoHTTPS,
			outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "0.0.0.0_443",
				Cluster: "outbound|443||jsonplaceholder.typicode.com", Status: 200},
			"https jsonplaceholder.typicode.com /todos/1", "jsonplaceholder.typicode.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			held := simConfig(t, tc.mode, tc.applied...)
			in := newInternet(t)
			tp := standIn(t, held, in)

			// What sim decides for the URL, the way the sim backend decides it.
			c, err := backend.ParseCall(tc.url)
			require.NoError(t, err)
			want, err := dataplane.Simulate(held, c)
			require.NoError(t, err)
			assert.Empty(t, tc.want.Check(dataplane.JudgeIn(held, want, c.Host())), "sim's own verdict, the ground truth")

			obs := tp.call(t, tc.url, in.roots)
			got := outcome.Classify(obs)
			assert.Empty(t, tc.want.Check(got), "the client's verdict from what the stand-in did: %+v", obs)

			ds := tp.decided()
			require.NotEmpty(t, ds, "the stand-in made no decision")
			d := ds[0]
			assert.Equal(t, want.ListenerMatched, d.Result.ListenerMatched, "listener")
			assert.Equal(t, want.FilterChainMatched, d.Result.FilterChainMatched, "filter chain")
			assert.Equal(t, want.RouteConfigMatched, d.Result.RouteConfigMatched, "route config")
			assert.Equal(t, want.VirtualHostMatched, d.Result.VirtualHostMatched, "virtual host")
			assert.Equal(t, want.ClusterMatched, d.Result.ClusterMatched, "cluster")
			assert.Equal(t, errors.Is(want.Error, simulation.ErrNoRoute), errors.Is(d.Result.Error, simulation.ErrNoRoute), "no route")

			if tc.reaches == "" {
				assert.Empty(t, in.requests(), "nothing may reach the internet")
			} else {
				assert.Equal(t, []string{tc.reaches}, in.requests())
				assert.Contains(t, obs.BodyPrefix, `"delectus aut autem"`)
			}
			if cl := want.ClusterMatched; cl != "" {
				assert.Eventually(t, func() bool { return strings.Contains(tp.log(), " "+cl+" ") },
					2*time.Second, 20*time.Millisecond, "the access log names the upstream cluster %s: %q", cl, tp.log())
			}
			// The call's line, found by the client's own address as on a cluster, ends
			// with that address, the SNI Envoy knows and the route.
			require.NotEmpty(t, obs.ClientAddress, "the client reports its connection's address")
			var line []string
			require.Eventually(t, func() bool {
				for _, l := range strings.Split(tp.log(), "\n") {
					if f := strings.Fields(l); len(f) > 3 && f[len(f)-3] == obs.ClientAddress {
						line = f
						return true
					}
				}
				return false
			}, 2*time.Second, 20*time.Millisecond, "a line with %%DOWNSTREAM_REMOTE_ADDRESS%% %s: %q", obs.ClientAddress, tp.log())
			wantSNI := tc.sni
			if wantSNI == "" {
				wantSNI = "-"
			}
			assert.Equal(t, wantSNI, line[len(line)-2], "%%REQUESTED_SERVER_NAME%% of %s", strings.Join(line, " "))
		})
	}
}

// The TLS the sidecar originates is checked against the proxy's roots (Istio's
// file-root:system): an upstream whose certificate they do not trust fails the handshake,
// and Envoy answers 503 with flag UF and a TLS_error, never the upstream's answer.
func TestOriginatedTLSToAnUntrustedUpstreamIsA503(t *testing.T) {
	held := simConfig(t, manifest.RegistryOnly, "tls-origination/entry.yaml", "tls-origination/originate-tls.yaml")
	in := newInternet(t)
	// The proxy trusts another CA than the one that signed the site (the app's call is
	// plain HTTP: only the proxy checks a certificate).
	_, otherRoots, _, err := site.Certificate(site.Host)
	require.NoError(t, err)
	in.roots = otherRoots
	tp := standIn(t, held, in)
	obs := tp.call(t, todoHTTP, nil)
	assert.Equal(t, http.StatusServiceUnavailable, obs.Status, "%+v", obs)
	assert.Contains(t, obs.BodyPrefix, "TLS_error")
	assert.Empty(t, in.requests(), "no request reached the upstream")
	assert.Eventually(t, func() bool { return strings.Contains(tp.log(), " 503 UF ") }, 2*time.Second, 20*time.Millisecond, tp.log())
}

// Under ALLOW_ANY_DYNAMIC_DNS the sidecar connects to what the Host header resolves to,
// not to where the app dialed; under ALLOW_ANY, to where the app dialed. The app here
// dials a TEST-NET address the test's dialer refuses, while the host resolves to the
// test's internet: only the dynamic forward proxy reaches it.
func TestTheDynamicForwardProxyResolvesTheHostNotTheDialedAddress(t *testing.T) {
	dialed := netip.MustParseAddr("203.0.113.9")
	for _, tc := range []struct {
		mode    string
		status  int
		reaches []string
	}{
		{manifest.AllowAnyDynamicDNS, 200, []string{"http jsonplaceholder.typicode.com /todos/1"}},
		{manifest.AllowAny, 503, []string{}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			in := newInternet(t)
			tp := standInDialedAt(t, simConfig(t, tc.mode), in, dialed, clientIdentity)
			obs := tp.call(t, todoHTTP, in.roots)
			assert.Equal(t, tc.status, obs.Status, "%+v", obs)
			assert.Equal(t, tc.reaches, in.requests())
		})
	}
}
