package dataplane

import (
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
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
