// Package dataplane is egresslab's stand-in for a sidecar's data plane, shared by every
// backend that runs no Envoy: from a call to what the sidecar's configuration does with
// it. It turns a call into one for Istio's simulator (pilot/pkg/simulation), runs the
// simulator, judges the match, and renders the matched config; it holds the identity a
// pod's sidecar presents to istiod, the injection webhook's rules, the pod a Deployment
// would run, and a stand-in sidecar that receives istiod's pushes over ADS.
//
// sim generates the config in process; local receives it from a real istiod; both judge
// it here, so their verdicts cannot drift apart. This is the simulator's side of a
// verdict: which listener, route and cluster a call matches, and the verdict that
// follows (Judge, JudgeIn). Whether it is the verdict a lab expects is for
// outcome.Expect.Check and harness/lab to say.
package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"

	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pkg/wellknown"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// ExternalAddress stands in for the address DNS would give an external host: the
// simulator does not resolve names, and a sidecar matches this kind of call by port,
// Host header and SNI, not by address. It is in TEST-NET-3, so it is nobody's server.
const ExternalAddress = "203.0.113.80"

// SimCall is the call as the client's sidecar receives it, for Istio's simulator:
// iptables redirects every outbound connection to the sidecar, which then matches
// address, port, Host header and SNI. The connection goes where the app dials
// (backend.Call.Dialed: the URL's host, or its proxy's); a host name's address is
// ExternalAddress; an IP address is its own, and so is the call's Address when it
// names one.
func SimCall(c backend.Call) simulation.Call {
	return ConnectionFor(c).SimCall()
}

// ConnectionFor is the connection the app opens for the call, as its sidecar receives
// it (SimCall).
func ConnectionFor(c backend.Call) Connection {
	host, port := c.Dialed()
	conn := Connection{Address: ExternalAddress, Port: port, Host: c.Host(), Path: c.Path(), HTTP: true}
	if ip, err := netip.ParseAddr(host); err == nil {
		// An address in the URL is where the app connects: a ServiceEntry with
		// addresses (a company proxy at its IP) is matched by it.
		conn.Address = ip.String()
	}
	if c.Address != "" {
		conn.Address = c.Address // the address the app was told to connect to
	}
	switch {
	case c.Proxy != nil:
		// The connection opens with a plaintext HTTP/1.1 CONNECT request for the URL's
		// host and port: what a listener that reads HTTP would read of it (the stand-in
		// sniffs the same bytes). The TLS of the call itself follows inside the tunnel,
		// unseen. Path "/": what the stand-in's HTTP reader makes of CONNECT's
		// authority-form target, so that both hand the simulator the same call.
		conn.Host, conn.Path = c.HostPort(), "/"
	case c.TCP():
		// Bytes that are neither TLS nor HTTP: the sidecar has the address and port only.
		conn.HTTP, conn.Host, conn.Path = false, "", ""
	case c.HTTPS():
		// An HTTP/1.1 client in TLS: what the simulator calls an HTTP call over TLS.
		conn.HTTP, conn.TLS, conn.SNI, conn.ALPN = false, true, c.Host(), []string{"http/1.1"}
	}
	return conn
}

// Connection is an outbound connection as a sidecar's listeners see it: where it was
// going (the original destination iptables redirected to the sidecar) and what
// Envoy's listener filters read from its first bytes (tls_inspector: SNI and ALPN;
// http_inspector: plaintext HTTP/1.x, then the HTTP connection manager: Host and
// path). The stand-in for the Envoy process fills it from a real connection; SimCall
// fills it from a URL; both are matched by the same simulator through SimCall.
type Connection struct {
	Address string
	Port    int
	// TLS: the connection opened with a TLS ClientHello, offering SNI and ALPN.
	TLS  bool
	SNI  string
	ALPN []string
	// HTTP: the connection opened with a plaintext HTTP/1.x request for Host and Path.
	HTTP bool
	Host string
	Path string
	// Gateway: the connection came to a gateway's own listener (a router: no iptables,
	// the address and port are the ones it listens on), not redirected to a sidecar.
	Gateway bool
	// MTLS: the TLS was terminated and the client presented a certificate; HTTP then
	// says what was inside it.
	MTLS bool
	// Principal is the URI SAN of that certificate (spiffe://…, the calling sidecar's
	// identity): what an RBAC filter's authenticated principal matches.
	Principal string
}

// SimCall is the connection as a call for Istio's simulator. The simulator takes one
// ALPN value: the client's first offer, as the filter chain match on application
// protocols in these labs (http/1.1 or h2) reads it.
func (c Connection) SimCall() simulation.Call {
	call := simulation.Call{
		Address:  c.Address,
		Port:     c.Port,
		Path:     c.Path,
		Protocol: simulation.TCP,
		CallMode: simulation.CallModeOutbound,
	}
	if c.Gateway {
		call.CallMode = simulation.CallModeGateway
	}
	switch {
	case c.TLS:
		call.TLS, call.Sni = simulation.TLS, c.SNI
		if c.MTLS {
			call.TLS = simulation.MTLS
		}
		if len(c.ALPN) > 0 {
			call.Alpn = c.ALPN[0]
		}
		switch call.Alpn {
		case "http/1.1":
			call.Protocol = simulation.HTTP
		case "h2":
			call.Protocol = simulation.HTTP2
		}
		if c.HTTP { // a request read inside TLS the proxy terminated
			call.Protocol, call.HostHeader = simulation.HTTP, c.Host
		}
	case c.HTTP:
		call.Protocol, call.HostHeader = simulation.HTTP, c.Host
	}
	return call
}

// Simulate matches the call against the configuration in s. The simulator reports a
// configuration it cannot read by failing its test (t.Fatalf); a Simulation built
// outside a test has no *testing.T, so that failure is a nil-pointer panic. Every panic
// of the simulator becomes an error here: one policy for every backend.
func Simulate(s *simulation.Simulation, c backend.Call) (simulation.Result, error) {
	return SimulateCall(s, SimCall(c), c.String())
}

// SimulateCall is Simulate for a call already in the simulator's terms; what names
// the call in an error.
func SimulateCall(s *simulation.Simulation, call simulation.Call, what string) (r simulation.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("simulate call %s: Istio's simulator cannot read the sidecar's configuration: %v", what, p)
		}
	}()
	return s.Run(call), nil
}

// InMesh reports whether an outbound cluster's host is a workload of the mesh (a
// Kubernetes Service: name.namespace.svc.cluster.local), such as an egress gateway. A
// call routed there has not left the mesh yet: what happens to it is decided by that
// workload's proxy. ServiceEntry hosts are taken to leave the mesh (MESH_INTERNAL
// entries, which stand for in-mesh VMs, are not told apart).
func InMesh(host string) bool {
	return strings.HasSuffix(host, serviceDomain)
}

// serviceDomain ends the host of every Kubernetes Service in the mesh's cluster.
const serviceDomain = ".svc.cluster.local"

// JudgeIn is Judge with the matched cluster looked up in the config s holds: a route to
// a cluster the proxy does not have is Envoy's own 503 (NC), and what a cluster it has
// does with the connection (the TLS it originates for a request to host, the call's
// Host header) is added to the evidence.
func JudgeIn(s *simulation.Simulation, r simulation.Result, host string) outcome.Verdict {
	v := Judge(r)
	if r.ClusterMatched == "" || v.Kind == outcome.Blocked {
		return v
	}
	c := ClusterNamed(s, r.ClusterMatched)
	if c == nil {
		return outcome.Verdict{Kind: outcome.Blocked, Reason: outcome.ReasonNoCluster, Evidence: v.Evidence}
	}
	if u, _ := UpstreamTLS(c, nil); u != nil { // a socket it cannot read originates nothing here
		v.Evidence.UpstreamSNI = UpstreamSNI(c, u, host)
		if v.Evidence.UpstreamSNI == "" {
			v.Evidence.UpstreamSNI = "(none)"
		}
	}
	return v
}

// TransportSocketMatch is the endpoint metadata key Envoy reads a cluster's
// transport_socket_matches against (Istio writes tlsMode there).
const TransportSocketMatch = "envoy.transport_socket_match"

// UpstreamTLS is the TLS a cluster originates to an endpoint with metadata md: the
// first of the cluster's transport_socket_matches whose match the endpoint's
// envoy.transport_socket_match metadata satisfies, else the cluster's transport socket
// (a DestinationRule's tls mode SIMPLE or ISTIO_MUTUAL gives one). Istio's auto mTLS
// writes two matches (tlsMode "istio": mutual TLS; else plaintext); an egress gateway's
// pod carries no tlsMode label, so a sidecar speaks plaintext to it unless a
// DestinationRule asks for ISTIO_MUTUAL. nil: the bytes go as they are. The
// simulator's judgement knows no endpoint and passes nil metadata, which matches what
// Istio writes for an endpoint without tlsMode; the stand-in passes the endpoint's.
func UpstreamTLS(cl *cluster.Cluster, md *core.Metadata) (*tlsv3.UpstreamTlsContext, error) {
	ts := cl.GetTransportSocket()
	fields := md.GetFilterMetadata()[TransportSocketMatch].GetFields()
	for _, m := range cl.GetTransportSocketMatches() {
		matches := true
		for k, v := range m.GetMatch().GetFields() {
			if got, ok := fields[k]; !ok || !proto.Equal(got, v) {
				matches = false
			}
		}
		if matches {
			ts = m.GetTransportSocket()
			break
		}
	}
	if ts.GetName() != wellknown.TransportSocketTLS {
		return nil, nil
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("read the TLS transport socket of cluster %s: %w", cl.GetName(), err)
	}
	return ctx, nil
}

// httpProtocolOptions is where a cluster keeps its upstream HTTP options (auto_sni).
const httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// UpstreamSNI is the server name Envoy sends in the TLS a cluster opens with context u,
// for a request whose Host is host: u's sni; else, where the cluster's upstream HTTP
// options set auto_sni (Istio does for a DestinationRule with SIMPLE TLS and no sni, as
// istio.io's TLS origination task has), the Host without its port, unless it is an IP
// address (Envoy's router parses the authority and sets no SNI for an address); else
// none, "". The sidecar's evidence and the stand-in's TLS both read it here.
func UpstreamSNI(c *cluster.Cluster, u *tlsv3.UpstreamTlsContext, host string) string {
	if sni := u.GetSni(); sni != "" {
		return sni
	}
	opts := &httpv3.HttpProtocolOptions{}
	raw, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptions]
	if !ok || raw.UnmarshalTo(opts) != nil || !opts.GetUpstreamHttpProtocolOptions().GetAutoSni() {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ""
	}
	return host
}

// Judge turns the simulator's match into a verdict, with the match as evidence.
func Judge(r simulation.Result) outcome.Verdict {
	ev := outcome.Evidence{
		FromConfig:  true,
		Listener:    r.ListenerMatched,
		FilterChain: r.FilterChainMatched,
		RouteConfig: r.RouteConfigMatched,
		VirtualHost: r.VirtualHostMatched,
		Route:       r.RouteMatched,
		Cluster:     r.ClusterMatched,
	}
	blocked := func(reason string) outcome.Verdict {
		return outcome.Verdict{Kind: outcome.Blocked, Reason: reason, Evidence: ev}
	}
	switch {
	case errors.Is(r.Error, simulation.ErrNoRoute):
		ev.Error = r.Error.Error()
		return blocked(outcome.ReasonNoRoute)
	case r.Error != nil:
		ev.Error = r.Error.Error()
		return blocked("the sidecar cannot route it: " + r.Error.Error())
	case r.VirtualHostMatched == outcome.BlockAllHost:
		return blocked(outcome.ReasonBlockAll)
	case r.ClusterMatched == outcome.BlackHoleCluster:
		return blocked(outcome.ReasonBlackHole)
	case r.ClusterMatched == outcome.PassthroughCluster:
		return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Evidence: ev}
	case r.ClusterMatched == outcome.AllowAnyDynamicDNSCluster:
		return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonDynamicDNS, Evidence: ev}
	}
	if host, _, ok := OutboundService(r.ClusterMatched); ok {
		if InMesh(host) {
			return outcome.Verdict{Kind: outcome.InMesh, Reason: outcome.ReasonInMesh, Evidence: ev}
		}
		return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Evidence: ev}
	}
	return blocked("matched no cluster that leaves the mesh")
}
