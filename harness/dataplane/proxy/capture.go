package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	snidfp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/outcome"
)

// bufSize holds a whole TLS record (a ClientHello) or an HTTP request head, so both
// can be read without being taken from the connection.
const bufSize = 32 << 10

// defaultConnectTimeout is Envoy's, for a cluster that sets none.
const defaultConnectTimeout = 5 * time.Second

// Decision is what the stand-in made of one outbound connection: what its first bytes
// said, and what the simulator matched on the config held then.
type Decision struct {
	Connection dataplane.Connection
	Result     simulation.Result
}

// Decide matches an outbound connection against the sidecar's config, as Envoy's
// listeners would: Istio's simulator on the same listeners, routes and clusters.
func Decide(sim *simulation.Simulation, conn dataplane.Connection) (Decision, error) {
	r, err := dataplane.SimulateCall(sim, conn.SimCall(), describe(conn))
	return Decision{Connection: conn, Result: r}, err
}

func (p *Process) decide(sim *simulation.Simulation, conn dataplane.Connection) (Decision, error) {
	d, err := Decide(sim, conn)
	if err == nil && p.decided != nil {
		p.decided(d)
	}
	return d, err
}

func describe(c dataplane.Connection) string {
	switch {
	case c.HTTP:
		return fmt.Sprintf("http://%s%s to %s:%d", c.Host, c.Path, c.Address, c.Port)
	case c.TLS:
		return fmt.Sprintf("TLS for %q to %s:%d", c.SNI, c.Address, c.Port)
	}
	return fmt.Sprintf("TCP to %s:%d", c.Address, c.Port)
}

// outbound serves one connection istio-init redirected to the outbound capture port.
func (p *Process) outbound(c net.Conn) {
	defer c.Close()
	dst, err := p.OriginalDst(c)
	if err != nil {
		p.logf("warning", "outbound connection from %s: no original destination (%v): closed", c.RemoteAddr(), err)
		return
	}
	p.serve(c, dst, false)
}

// atGateway serves one connection to a gateway's listener: it came to the address
// and port the listener binds, with no iptables in between.
func (p *Process) atGateway(c net.Conn) {
	defer c.Close()
	dst, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		p.logf("warning", "connection from %s: local address %s: %v: closed", c.RemoteAddr(), c.LocalAddr(), err)
		return
	}
	p.serve(c, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), true)
}

// serve decides a connection to dst on the config held and acts on the decision, as
// the listener that matched it would: outbound (a sidecar's capture) or at a gateway.
func (p *Process) serve(c net.Conn, dst netip.AddrPort, gateway bool) {
	e := &logEntry{Start: time.Now(), DownstreamRemote: c.RemoteAddr().String(), DownstreamLocal: dst.String()}
	br := bufio.NewReaderSize(c, bufSize)
	conn := dataplane.Connection{Address: dst.Addr().String(), Port: int(dst.Port()), Gateway: gateway}
	sniff(c, br, &conn)
	sim, err := p.config()
	if err != nil {
		p.logf("warning", "%s: %v: reset", describe(conn), err)
		reset(c)
		return
	}
	d, err := p.decide(sim, conn)
	if err != nil {
		p.logf("error", "%v: reset", err)
		reset(c)
		return
	}
	r := d.Result
	if dataplane.InspectsTLS(sim, r.ListenerMatched, conn.Port) {
		// Envoy knows the SNI only where a TLS inspector read the ClientHello: the
		// listener that took the connection has one (0.0.0.0_443 with a TLS entry), or
		// the field is "-" (virtualOutbound, the catch-all, has none).
		e.SNI = conn.SNI
	}
	if dt := dataplane.DownstreamTLS(sim, r); dt != nil {
		p.terminateTLS(c, br, conn, dt, e)
		return
	}
	p.act(c, br, conn, sim, r, e)
}

// act does what the filter chain the simulator matched does with the connection:
// serve its HTTP, relay its TCP, answer 400 for bytes an HTTP listener cannot read, or
// reset it.
func (p *Process) act(c net.Conn, br *bufio.Reader, conn dataplane.Connection, sim *simulation.Simulation, r simulation.Result, e *logEntry) {
	dst := netip.AddrPortFrom(netip.MustParseAddr(conn.Address), uint16(conn.Port))
	h, tcp, sniDFP := filtersOf(sim, r)
	switch {
	case h != nil && conn.HTTP:
		p.serveHTTP(c, br, conn, h, sim, r, e)
	case h != nil:
		// TLS or raw TCP bytes into an HTTP connection manager: Envoy's HTTP/1 codec fails
		// on them and answers 400 before closing.
		e.Code, e.Details, e.Cluster = http.StatusBadRequest, "http1.codec_error", "-"
		resp := localReply(http.StatusBadRequest, "Bad Request", serverName(h), h)
		resp.Close = true
		_ = resp.Write(c)
		p.logf("debug", "%s: not HTTP, into the HTTP listener %s: 400", describe(conn), r.ListenerMatched)
		p.writeAccessLogs(h.GetAccessLog(), e)
	case tcp != nil && r.Error == nil && dataplane.NetworkRBAC(sim, r):
		// Envoy would check the connection against the policy; the stand-in cannot, so
		// it lets nothing through that Envoy might close.
		p.logf("warning", "%s: the filter chain enforces a network RBAC filter, which the stand-in does not model: reset", describe(conn))
		reset(c)
	case tcp != nil && r.Error == nil:
		p.serveTCP(c, br, dst, sniForwardedTo(sniDFP, e.SNI), sim, tcp, e)
	default:
		p.logf("debug", "%s: %v (listener %q): reset", describe(conn), r.Error, r.ListenerMatched)
		reset(c)
	}
}

// terminateTLS ends the TLS of a connection whose filter chain has a TLS transport
// socket, then matches and serves what is inside as that chain's filters would: the
// match again, now with the request (and whether the client presented a certificate).
// A failed handshake closes the connection with no access-log line, as Envoy's HTTP
// connection manager logs requests and none came.
func (p *Process) terminateTLS(c net.Conn, br *bufio.Reader, conn dataplane.Connection, d *tlsv3.DownstreamTlsContext, e *logEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultConnectTimeout)
	defer cancel()
	conf, err := p.serverTLS(ctx, d)
	if err != nil {
		p.logf("warning", "%s: the TLS to terminate: %v: reset", describe(conn), err)
		reset(c)
		return
	}
	tc := tls.Server(bufferedConn{Conn: c, r: br}, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		p.logf("debug", "%s: TLS handshake: %v: closed", describe(conn), err)
		return
	}
	inner := bufio.NewReaderSize(tc, bufSize)
	in := conn
	if peer := tc.ConnectionState().PeerCertificates; len(peer) > 0 {
		in.MTLS = true
		if len(peer[0].URIs) > 0 {
			in.Principal = peer[0].URIs[0].String()
		}
	}
	sniff(tc, inner, &in)
	sim, err := p.config()
	if err != nil {
		p.logf("warning", "%s: %v: closed", describe(in), err)
		return
	}
	dec, err := p.decide(sim, in)
	if err != nil {
		p.logf("error", "%v: closed", err)
		return
	}
	p.act(tc, inner, in, sim, dec.Result, e)
}

// bufferedConn is a connection whose first bytes were read into r (to sniff them):
// reads come from r, the rest from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// filtersOf finds the HTTP connection manager or TCP proxy of the filter chain the
// simulator matched, and for a TCP proxy the SNI dynamic forward proxy filter before it
// in that chain, if any (Istio's TLS chain of a DYNAMIC_DNS wildcard entry:
// networkfilter.go, buildCompleteNetworkFilters).
func filtersOf(sim *simulation.Simulation, r simulation.Result) (*hcm.HttpConnectionManager, *tcpproxy.TcpProxy, *snidfp.FilterConfig) {
	if h := dataplane.HTTPConnectionManager(sim, r); h != nil {
		return h, nil, nil
	}
	t, before := dataplane.TCPProxy(sim, r)
	if t == nil {
		return nil, nil, nil
	}
	var sniDFP *snidfp.FilterConfig
	for _, f := range before {
		// Envoy picks a filter by its config's type, whatever its name (Istio names
		// this one envoy.extensions.filters.network.sni_dynamic_forward_proxy, Envoy's
		// docs envoy.filters.network.sni_dynamic_forward_proxy).
		d := &snidfp.FilterConfig{}
		if f.GetTypedConfig().MessageIs(d) && f.GetTypedConfig().UnmarshalTo(d) == nil {
			sniDFP = d
		}
	}
	return nil, t, sniDFP
}

// sniForwardedTo is the host and port a TCP proxy's dynamic forward proxy cluster
// connects to when the chain's SNI dynamic forward proxy filter f comes before it: the
// server name the listener's TLS inspector read (sni, "" where none ran or the client
// sent none), on the port f's config names, whatever the connection's own port and
// address (Envoy's sni_dynamic_forward_proxy/proxy_filter.cc, onNewConnection, puts the
// SNI and port_value in its DNS cache and the port in the connection's filter state,
// which the cluster's chooseHost reads with the SNI; Istio writes the ServiceEntry's
// port: networkfilter.go, buildSNIDFPFilter). "" without f, a server name or a port:
// the cluster then has no host to pick and the TCP proxy answers UH. Istio puts the
// filter in front of every TCP proxy to such a cluster, and a filter without a port is
// not Istio's: the stand-in does not guess Envoy's defaults for either.
func sniForwardedTo(f *snidfp.FilterConfig, sni string) string {
	if f == nil || sni == "" || f.GetPortValue() == 0 {
		return ""
	}
	return net.JoinHostPort(sni, strconv.Itoa(int(f.GetPortValue())))
}

// serveHTTP serves the requests of one connection an HTTP connection manager took.
// The first request is the one the connection was decided on; each later one is
// matched on its own Host against the config held when it arrives.
func (p *Process) serveHTTP(c net.Conn, br *bufio.Reader, conn dataplane.Connection, h *hcm.HttpConnectionManager,
	sim *simulation.Simulation, first simulation.Result, firstEntry *logEntry) {
	dst := netip.AddrPortFrom(netip.MustParseAddr(conn.Address), uint16(conn.Port))
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		e := &logEntry{Start: time.Now(), DownstreamRemote: firstEntry.DownstreamRemote, DownstreamLocal: firstEntry.DownstreamLocal,
			SNI: firstEntry.SNI, Req: req} // the connection's SNI, on each of its requests' lines
		if i == 0 {
			e.Start = firstEntry.Start
		}
		if req.Header.Get("X-Request-Id") == "" {
			req.Header.Set("X-Request-Id", requestID())
		}
		var resp *http.Response
		r := first
		if i > 0 {
			sim, r, resp = p.decideRequest(req, conn, h, e)
		}
		if resp == nil {
			resp = p.respond(req, dst, conn.Principal, h, sim, r, e)
		}
		resp.Close = resp.Close || req.Close
		// %BYTES_SENT% of an HTTP request is the response body's bytes, not its headers'
		// (Envoy counts the body the codec sends: "RBAC: access denied" is 19).
		body := &countingReader{r: resp.Body}
		if resp.Body != nil {
			resp.Body = body
		}
		_ = resp.Write(c)
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		e.Code, e.BytesOut = resp.StatusCode, body.n
		e.UpstreamTime = resp.Header.Get("X-Envoy-Upstream-Service-Time")
		p.writeAccessLogs(h.GetAccessLog(), e)
		if resp.Close {
			return
		}
	}
}

// decideRequest matches a later request of a connection on the config held now; when
// it cannot, the reply says why.
func (p *Process) decideRequest(req *http.Request, conn dataplane.Connection, h *hcm.HttpConnectionManager, e *logEntry) (*simulation.Simulation, simulation.Result, *http.Response) {
	sim, err := p.config()
	if err != nil {
		e.Flags, e.Details = "NC", "no_config"
		return nil, simulation.Result{}, localReply(http.StatusServiceUnavailable, "no config from istiod yet", serverName(h), h)
	}
	next := conn // the same connection (its TLS, if terminated), another request
	next.HTTP, next.Host, next.Path = true, req.Host, req.URL.RequestURI()
	d, err := p.decide(sim, next)
	if err != nil {
		p.logf("error", "%v", err)
		e.Flags, e.Details = "-", "standin_cannot_simulate"
		return nil, simulation.Result{}, localReply(http.StatusInternalServerError, err.Error(), serverName(h), h)
	}
	return sim, d.Result, nil
}

// respond returns the response Envoy would send for a request matched as r, from a
// client with that principal ("" unless it presented a certificate): first what the
// connection manager's RBAC filters decide, then what the router does.
func (p *Process) respond(req *http.Request, dst netip.AddrPort, principal string, h *hcm.HttpConnectionManager, sim *simulation.Simulation, r simulation.Result, e *logEntry) *http.Response {
	server := serverName(h)
	e.Route, e.Cluster = r.RouteMatched, r.ClusterMatched
	if resp := p.authorize(req, dst, principal, h, sim, r, e); resp != nil {
		return resp
	}
	if errors.Is(r.Error, simulation.ErrNoVirtualHost) || errors.Is(r.Error, simulation.ErrNoRoute) {
		e.Flags, e.Details = "NR", "route_not_found"
		return localReply(http.StatusNotFound, "", server, h)
	}
	if r.Error != nil {
		e.Flags, e.Details = "-", "standin_"+strings.ReplaceAll(r.Error.Error(), " ", "_")
		return localReply(http.StatusNotFound, "", server, h)
	}
	if rt := routeOf(sim, r); rt.GetDirectResponse() != nil {
		dr := rt.GetDirectResponse()
		e.Details = "direct_response"
		return localReply(int(dr.GetStatus()), dr.GetBody().GetInlineString(), server, h)
	}
	cl := dataplane.ClusterNamed(sim, r.ClusterMatched)
	if cl == nil {
		// Envoy's router records the upstream cluster only once it has found it
		// (source/common/router/router.cc, decodeHeaders: setUpstreamClusterInfo after
		// getThreadLocalCluster), so an NC line's %UPSTREAM_CLUSTER_RAW% is "-".
		e.Cluster = "-"
		e.Flags, e.Details = "NC", "cluster_not_found"
		return localReply(http.StatusServiceUnavailable, "", server, h)
	}
	ctx, cancel := context.WithTimeout(req.Context(), connectTimeout(cl))
	defer cancel()
	to, err := p.endpoint(ctx, cl, dst, req.Host)
	if err != nil {
		p.logf("debug", "cluster %s: %v", cl.GetName(), err)
		e.Flags, e.Details = "UH", "no_healthy_upstream"
		return localReply(http.StatusServiceUnavailable, "no healthy upstream", server, h)
	}
	e.UpstreamHost = to.addr
	tc, err := dataplane.UpstreamTLS(cl, to.metadata)
	if err != nil {
		p.logf("warning", "cluster %s: %v: 503", cl.GetName(), err)
		e.Flags, e.Details = "UF", "standin_cannot_originate{"+strings.ReplaceAll(err.Error(), " ", "_")+"}"
		return localReply(http.StatusServiceUnavailable, "the stand-in for Envoy cannot do this: "+err.Error(), server, h)
	}
	up, err := p.Dial(ctx, "tcp", to.addr)
	if err != nil {
		e.Flags, e.Details = "UF", "upstream_reset_before_response_started{remote_connection_failure}"
		return localReply(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. "+
			"reset reason: remote connection failure, transport failure reason: "+err.Error(), server, h)
	}
	e.UpstreamLocal = up.LocalAddr().String()
	if tc != nil {
		tlsUp, err := p.originateTLS(ctx, up, cl, tc, req.Host)
		if err != nil {
			_ = up.Close()
			e.Flags, e.Details = "UF", "upstream_reset_before_response_started{remote_connection_failure,TLS_error}"
			return localReply(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. "+
				"reset reason: remote connection failure, transport failure reason: TLS_error: "+err.Error(), server, h)
		}
		up = tlsUp
	}
	sent := time.Now()
	out := req.Clone(req.Context())
	out.Header.Set("X-Forwarded-Proto", "http")
	var resp *http.Response
	if err = out.Write(up); err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(up), req)
	}
	if err != nil {
		_ = up.Close()
		e.Flags, e.Details = "UC", "upstream_reset_before_response_started{connection_termination}"
		return localReply(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. "+
			"reset reason: connection termination", server, h)
	}
	resp.Body = closeBoth{resp.Body, up}
	resp.Header.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(time.Since(sent).Milliseconds(), 10))
	setServer(resp.Header, server, h)
	e.Details = "via_upstream"
	return resp
}

type closeBoth struct {
	io.ReadCloser
	c io.Closer
}

func (b closeBoth) Close() error {
	err := b.ReadCloser.Close()
	_ = b.c.Close()
	return err
}

// serverName is the Server header the connection manager writes: its server_name, or
// Envoy's default.
func serverName(h *hcm.HttpConnectionManager) string {
	if n := h.GetServerName(); n != "" {
		return n
	}
	return "envoy"
}

func setServer(hd http.Header, server string, h *hcm.HttpConnectionManager) {
	switch h.GetServerHeaderTransformation() {
	case hcm.HttpConnectionManager_PASS_THROUGH:
	case hcm.HttpConnectionManager_APPEND_IF_ABSENT:
		if hd.Get("Server") == "" {
			hd.Set("Server", server)
		}
	default: // OVERWRITE
		hd.Set("Server", server)
	}
}

// localReply is a response Envoy makes itself (a direct response, a 404 for no route,
// a 503 for no upstream): no x-envoy-upstream-service-time, since no upstream answered.
func localReply(status int, body, server string, h *hcm.HttpConnectionManager) *http.Response {
	hd := http.Header{}
	hd.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if body != "" {
		hd.Set("Content-Type", "text/plain")
	}
	setServer(hd, server, h)
	return &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: hd,
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
}

// authorize runs the connection manager's RBAC filters on the request (an
// AuthorizationPolicy on a gateway), as Envoy runs them before the router, and returns
// Envoy's 403 for a denied request, nil for one they let through. The line logs the
// route's cluster when the proxy has it, as Envoy's does (the connection manager looks
// the route and its cluster up before any filter runs; only the router would connect),
// and no upstream host. A filter the evaluator does not model answers 500 and says so:
// the stand-in never lets through what Envoy might deny.
func (p *Process) authorize(req *http.Request, dst netip.AddrPort, principal string, h *hcm.HttpConnectionManager,
	sim *simulation.Simulation, r simulation.Result, e *logEntry) *http.Response {
	d, err := dataplane.Authorize(h, dataplane.AuthzRequest{Method: req.Method, Authority: req.Host, Path: req.URL.RequestURI(),
		Headers: req.Header, Principal: principal, DestinationPort: int(dst.Port()), DestinationIP: dst.Addr().String(),
		RemoteIP: remoteIP(e.DownstreamRemote)})
	if err != nil {
		p.logf("warning", "%s %s: the RBAC filter: %v: 500", req.Method, req.Host, err)
		e.Flags, e.Details = "-", "standin_cannot_authorize"
		return localReply(http.StatusInternalServerError, "the stand-in for Envoy cannot do this: "+err.Error(), serverName(h), h)
	}
	if !d.Denied {
		return nil
	}
	if dataplane.ClusterNamed(sim, r.ClusterMatched) == nil {
		e.Cluster = "-"
	}
	e.Flags, e.Details = "-", d.Details()
	return localReply(http.StatusForbidden, outcome.RBACDeniedBody, serverName(h), h)
}

// remoteIP is the address of an "IP:port", "" when it is none.
func remoteIP(addrPort string) string {
	if ap, err := netip.ParseAddrPort(addrPort); err == nil {
		return ap.Addr().Unmap().String()
	}
	return ""
}

// routeOf is the route the simulator matched.
func routeOf(sim *simulation.Simulation, r simulation.Result) *route.Route {
	for _, rc := range sim.Routes {
		if rc.GetName() != r.RouteConfigMatched {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() != r.VirtualHostMatched {
				continue
			}
			for _, rt := range vh.GetRoutes() {
				if rt.GetName() == r.RouteMatched {
					return rt
				}
			}
		}
	}
	return nil
}

func connectTimeout(c *cluster.Cluster) time.Duration {
	if d := c.GetConnectTimeout(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return defaultConnectTimeout
}

var errNoHealthyUpstream = errors.New("no healthy upstream")

// dynamicForwardProxy is the custom cluster type of Envoy's dynamic forward proxy.
const dynamicForwardProxy = "envoy.clusters.dynamic_forward_proxy"

// upstream is where a cluster sends one connection: the address, and the endpoint's
// metadata (which picks the cluster's transport socket, see upstreamTLS).
type upstream struct {
	addr     string
	metadata *core.Metadata
}

// endpoint is where a cluster sends a connection whose original destination was dst
// (and, for HTTP, whose request named authority; for TLS through an SNI dynamic forward
// proxy filter, the SNI and the filter's port, see sniForwardedTo): dst itself for
// ORIGINAL_DST (PassthroughCluster, resolution NONE); the authority resolved in the pod
// for a dynamic forward proxy (ALLOW_ANY_DYNAMIC_DNS's AllowAnyDynamicDNSCluster, a
// DYNAMIC_DNS entry's clusters), whatever dst was; for an EDS
// cluster (a Kubernetes Service, such as an egress gateway's), an endpoint of the
// load assignment istiod sent over EDS; the first endpoint of the cluster's own load
// assignment for STATIC and DNS clusters, its name resolved in the pod as Envoy's DNS
// cluster would; none for a cluster without endpoints (BlackHoleCluster). Envoy
// balances among several endpoints; the stand-in takes the first healthy one.
func (p *Process) endpoint(ctx context.Context, c *cluster.Cluster, dst netip.AddrPort, authority string) (upstream, error) {
	if c.GetClusterType().GetName() == dynamicForwardProxy {
		if authority == "" {
			// Envoy's cluster finds no host to pick ("host empty" in its chooseHost).
			return upstream{}, fmt.Errorf("%w: a dynamic forward proxy needs the request's Host or the TLS server name", errNoHealthyUpstream)
		}
		host, port, err := net.SplitHostPort(authority)
		if err != nil {
			host, port = authority, "80" // no port in the Host header: HTTP's own
		}
		addrs, err := p.Resolve(ctx, host)
		if err != nil || len(addrs) == 0 {
			return upstream{}, fmt.Errorf("%w: DNS for %s: %v", errNoHealthyUpstream, host, err)
		}
		return upstream{addr: net.JoinHostPort(addrs[0], port)}, nil
	}
	la := c.GetLoadAssignment()
	switch c.GetType() {
	case cluster.Cluster_ORIGINAL_DST:
		return upstream{addr: dst.String()}, nil
	case cluster.Cluster_EDS:
		if la = p.loadAssignment(c); la == nil {
			return upstream{}, fmt.Errorf("%w: no endpoints from EDS for %s", errNoHealthyUpstream, c.GetName())
		}
	}
	for _, le := range la.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || !healthy(lb.GetHealthStatus()) {
				continue
			}
			host, port := sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))
			if _, err := netip.ParseAddr(host); err == nil {
				return upstream{addr: net.JoinHostPort(host, port), metadata: lb.GetMetadata()}, nil
			}
			addrs, err := p.Resolve(ctx, host)
			if err != nil || len(addrs) == 0 {
				return upstream{}, fmt.Errorf("%w: DNS for %s: %v", errNoHealthyUpstream, host, err)
			}
			return upstream{addr: net.JoinHostPort(addrs[0], port), metadata: lb.GetMetadata()}, nil
		}
	}
	return upstream{}, errNoHealthyUpstream
}

// healthy says whether Envoy sends to an endpoint of this health status: EDS's
// UNKNOWN (the default) and HEALTHY, and DEGRADED when nothing better is there (the
// stand-in, taking the first, takes it too).
func healthy(s core.HealthStatus) bool {
	return s == core.HealthStatus_UNKNOWN || s == core.HealthStatus_HEALTHY || s == core.HealthStatus_DEGRADED
}

// loadAssignment is the EDS load assignment the proxy holds for an EDS cluster.
func (p *Process) loadAssignment(c *cluster.Cluster) *endpoint.ClusterLoadAssignment {
	if p.heldEndpoints != nil {
		return p.heldEndpoints(c)
	}
	p.mu.Lock()
	s := p.sidecar
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Endpoints(c)
}

// serveTCP relays a connection a TCP proxy took to its cluster's endpoint; authority is
// the host and port a dynamic forward proxy cluster connects to (sniForwardedTo), "" for
// none. With no endpoint (BlackHoleCluster, or a dynamic forward proxy with no host) the
// connection is reset: Envoy closes it with the client's first bytes still unread,
// which makes the kernel send a reset.
func (p *Process) serveTCP(c net.Conn, br *bufio.Reader, dst netip.AddrPort, authority string, sim *simulation.Simulation, t *tcpproxy.TcpProxy, e *logEntry) {
	e.Cluster = t.GetCluster()
	defer p.writeAccessLogs(t.GetAccessLog(), e)
	cl := dataplane.ClusterNamed(sim, t.GetCluster())
	if cl == nil {
		e.Flags = "NC"
		reset(c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout(cl))
	to, err := p.endpoint(ctx, cl, dst, authority)
	if err != nil {
		cancel()
		e.Flags = "UH"
		reset(c)
		return
	}
	e.UpstreamHost = to.addr
	if tc, err := dataplane.UpstreamTLS(cl, to.metadata); tc != nil || err != nil {
		// A TCP proxy to a cluster that originates TLS (TLS origination for TCP, or
		// Istio mutual TLS to another proxy): not in these labs, and not done.
		cancel()
		p.logf("warning", "cluster %s: the stand-in originates TLS only for HTTP (%v): reset", cl.GetName(), err)
		e.Flags = "UF"
		reset(c)
		return
	}
	up, err := p.Dial(ctx, "tcp", to.addr)
	cancel()
	if err != nil {
		e.Flags = "UF"
		reset(c)
		return
	}
	defer up.Close()
	e.UpstreamLocal = up.LocalAddr().String()
	e.BytesIn, e.BytesOut = relay(c, br, up)
}

// relay copies both ways until both sides are done, passing half-closes on.
func relay(down net.Conn, downR io.Reader, up net.Conn) (in, out int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(up, downR)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	out, _ = io.Copy(down, up)
	if cw, ok := down.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	wg.Wait()
	return in, out
}

// reset closes the connection with a TCP reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// inboundSource is the address Envoy connects to local workloads from, which
// istio-init's rules let through instead of capturing again.
var inboundSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6)}

// inbound relays one connection redirected to the inbound capture port to where it
// was going. The stand-in makes no inbound decision: the labs are about egress.
func (p *Process) inbound(c net.Conn) {
	defer c.Close()
	dst, err := p.OriginalDst(c)
	if err != nil {
		p.logf("warning", "inbound connection from %s: no original destination (%v): closed", c.RemoteAddr(), err)
		return
	}
	d := &net.Dialer{LocalAddr: inboundSource, Timeout: defaultConnectTimeout}
	up, err := d.Dial("tcp", dst.String())
	if err != nil {
		reset(c)
		return
	}
	defer up.Close()
	relay(c, c, up)
}

// countingReader counts the bytes read through it: a response body as it is sent.
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	s := hex.EncodeToString(b)
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}
