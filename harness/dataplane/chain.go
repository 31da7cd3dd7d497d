package dataplane

import (
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pkg/wellknown"
)

// MatchedChains are the filter chains of the listener the simulator matched that bear
// the matched chain's name. The simulator names the chain, not its place, and Istio
// leaves some chains unnamed (a gateway's), so there may be several: the caller picks
// by what else the result says.
func MatchedChains(sim *simulation.Simulation, r simulation.Result) []*listener.FilterChain {
	var out []*listener.FilterChain
	for _, l := range sim.Listeners {
		if l.GetName() != r.ListenerMatched {
			continue
		}
		for _, fc := range FilterChains(l) {
			if fc.GetName() == r.FilterChainMatched {
				out = append(out, fc)
			}
		}
	}
	return out
}

// DownstreamTLS is the TLS the matched filter chain terminates (its transport socket:
// a Gateway server with tls, ISTIO_MUTUAL or SIMPLE), nil for none.
func DownstreamTLS(sim *simulation.Simulation, r simulation.Result) *tlsv3.DownstreamTlsContext {
	for _, fc := range MatchedChains(sim, r) {
		if fc.GetTransportSocket().GetName() != wellknown.TransportSocketTLS {
			continue
		}
		d := &tlsv3.DownstreamTlsContext{}
		if fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(d) == nil {
			return d
		}
	}
	return nil
}

// HTTPConnectionManager is the HTTP connection manager of the matched filter chain
// whose routes the simulator matched the request on, nil when the chain has none (a
// TCP proxy's).
func HTTPConnectionManager(sim *simulation.Simulation, r simulation.Result) *hcm.HttpConnectionManager {
	for _, fc := range MatchedChains(sim, r) {
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager {
				continue
			}
			h := &hcm.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(h) == nil && h.GetRds().GetRouteConfigName() == r.RouteConfigMatched {
				return h
			}
		}
	}
	return nil
}

// NetworkRBAC says whether the matched filter chain enforces a network RBAC filter
// (envoy.filters.network.rbac with rules: Istio's form of an AuthorizationPolicy on a
// TCP chain), which no evaluator here models: who judges the chain must refuse to
// judge it rather than let through what Envoy might close.
func NetworkRBAC(sim *simulation.Simulation, r simulation.Result) bool {
	for _, fc := range MatchedChains(sim, r) {
		for _, f := range fc.GetFilters() {
			n := &netrbac.RBAC{}
			if f.GetTypedConfig().MessageIs(n) && f.GetTypedConfig().UnmarshalTo(n) == nil && (n.GetRules() != nil || n.GetMatcher() != nil) {
				return true
			}
		}
	}
	return false
}

// ClusterNamed is the proxy's cluster of that name, nil when it has none (a route to it
// is Envoy's NC).
func ClusterNamed(sim *simulation.Simulation, name string) *cluster.Cluster {
	for _, c := range sim.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// InspectsTLS says whether the listener named ran Envoy's TLS inspector on a connection
// to port: it lists it among its listener filters, not disabled for that port. Istio
// adds it to an outbound port's listener whose filter chains match on TLS
// (listener.go), never to virtualOutbound (buildVirtualOutboundListener).
func InspectsTLS(sim *simulation.Simulation, listenerName string, port int) bool {
	for _, l := range sim.Listeners {
		if l.GetName() != listenerName {
			continue
		}
		for _, f := range l.GetListenerFilters() {
			if f.GetName() == wellknown.TLSInspector && !disabledFor(f.GetFilterDisabled(), port) {
				return true
			}
		}
	}
	return false
}

// disabledFor evaluates a listener filter's filter_disabled predicate for a destination
// port, in the forms Istio writes (a port range, any of several, not); a predicate with
// any other form in it is taken as disabled, so that no stand-in claims to know
// more than Envoy.
func disabledFor(p *listener.ListenerFilterChainMatchPredicate, port int) bool {
	if p == nil {
		return false
	}
	disabled, known := evaluate(p, port)
	return disabled || !known
}

// evaluate is the predicate's value for port, and whether every part of it was one this
// package reads.
func evaluate(p *listener.ListenerFilterChainMatchPredicate, port int) (value, known bool) {
	switch r := p.GetRule().(type) {
	case *listener.ListenerFilterChainMatchPredicate_DestinationPortRange:
		return int32(port) >= r.DestinationPortRange.GetStart() && int32(port) < r.DestinationPortRange.GetEnd(), true
	case *listener.ListenerFilterChainMatchPredicate_OrMatch:
		for _, q := range r.OrMatch.GetRules() {
			v, ok := evaluate(q, port)
			if !ok {
				return false, false
			}
			if v {
				return true, true
			}
		}
		return false, true
	case *listener.ListenerFilterChainMatchPredicate_NotMatch:
		v, ok := evaluate(r.NotMatch, port)
		return !v, ok
	}
	return false, false
}

// TCPProxy is the TCP proxy of the filter chain the simulator matched (the one that
// sends to the matched cluster) and the network filters before it in that chain; nil
// when the chain has none (an HTTP chain).
func TCPProxy(sim *simulation.Simulation, r simulation.Result) (*tcpproxy.TcpProxy, []*listener.Filter) {
	for _, fc := range MatchedChains(sim, r) {
		for i, f := range fc.GetFilters() {
			if f.GetName() != wellknown.TCPProxy {
				continue
			}
			t := &tcpproxy.TcpProxy{}
			if f.GetTypedConfig().UnmarshalTo(t) == nil && t.GetCluster() == r.ClusterMatched {
				return t, fc.GetFilters()[:i]
			}
		}
	}
	return nil, nil
}
