// Package outcome is the verdict model every backend shares: a call from the client
// was Allowed out of the mesh, Blocked by it (and why), Unreachable (the mesh let it
// out but DNS, the network or the upstream failed), InMesh (sent to another workload
// of the mesh, whose proxy decides), or Denied (an AuthorizationPolicy refused it). A
// verdict always carries the evidence it was reached from.
//
// Who owns which part of a verdict:
//   - harness/dataplane reaches it from config, on the backends that run no Envoy
//     (sim, local): Judge and JudgeIn turn the simulator's match into a Verdict;
//   - on a cluster, apps/client/observe names how a real call failed (an ErrorClass)
//     in its Observation, and Classify, here, turns that Observation into a Verdict;
//   - Expect.Check, here, lists how a verdict differs from what was expected;
//   - harness/lab decides from those differences whether a step passed;
//   - harness/narrate only prints what harness/lab hands it.
package outcome

import (
	"fmt"
	"strings"
	"time"
)

// Kind is the verdict itself.
type Kind string

const (
	// Allowed: the call reached the upstream (or, on sim, was routed to a cluster that leads to it).
	Allowed Kind = "ALLOWED"
	// Blocked: the sidecar refused the call.
	Blocked Kind = "BLOCKED"
	// Unreachable: the mesh let the call out but it failed beyond the sidecar. Never a block:
	// a machine without internet must not be mistaken for a mesh that refuses.
	Unreachable Kind = "UNREACHABLE"
	// InMesh: the sidecar sent the call to another workload of the mesh (an egress
	// gateway), not out of it. Whether it leaves is decided by that workload's proxy;
	// calling it allowed would be a guess.
	InMesh Kind = "IN_MESH"
	// Denied: a proxy on the call's way knew where to send it and refused it all the
	// same, by an AuthorizationPolicy: Envoy's RBAC filter answered 403 "RBAC: access
	// denied". Not Blocked: the registry let the host out, the policy refused who asked
	// or how, and the fix is the policy, not a ServiceEntry.
	Denied Kind = "DENIED"
)

// Reasons a call is blocked or unreachable, and the routes by which it is allowed.
const (
	// ReasonBlockAll: an HTTP listener matched the port, no virtual host matched the host,
	// and Envoy's catch-all virtual host "block_all" answered 502.
	ReasonBlockAll = "block_all"
	// ReasonBlackHole: no listener knew the port; the catch-all listener sent the
	// connection to BlackHoleCluster, which resets it.
	ReasonBlackHole = "BlackHoleCluster"
	// ReasonNoRoute: a virtual host matched but none of its routes did (Envoy's 404 NR).
	ReasonNoRoute = "no_route"
	// ReasonRegistered: routed to the outbound cluster of a registered service.
	ReasonRegistered = "registered service"
	// ReasonPassthrough: routed to PassthroughCluster, which ALLOW_ANY uses for unknown hosts.
	ReasonPassthrough = "PassthroughCluster"
	// ReasonNoCluster: the route names a cluster the proxy does not have (nothing
	// registers its host), so Envoy answers 503 itself (response flag NC).
	ReasonNoCluster = "cluster_not_found"
	// ReasonDynamicDNS: routed to AllowAnyDynamicDNSCluster, the dynamic forward proxy
	// ALLOW_ANY_DYNAMIC_DNS uses for unknown plain-HTTP hosts: the sidecar resolves the
	// Host header itself and connects to what it resolves to.
	ReasonDynamicDNS = "AllowAnyDynamicDNSCluster"
	// ReasonUpstream: the call reached an upstream, which answered.
	ReasonUpstream = "upstream answered"
	// ReasonInMesh: routed to the outbound cluster of a workload in the mesh (the
	// evidence's cluster names it).
	ReasonInMesh = "routed to in-mesh service"
	// ReasonRBAC: an RBAC HTTP filter (an AuthorizationPolicy) denied the request, and
	// Envoy answered 403 itself; its access log says rbac_access_denied_matched_policy[…]
	// with the DENY policy that matched, or none when no ALLOW policy did.
	ReasonRBAC = "rbac_access_denied"
)

// RBACDeniedBody is the body of Envoy's 403 for a request its RBAC filter denied
// (source/extensions/filters/http/rbac/rbac_filter.cc, decodeHeaders: sendLocalReply
// with Http::Code::Forbidden and "RBAC: access denied").
const RBACDeniedBody = "RBAC: access denied"

// Envoy's own cluster names for the two catch-alls.
const (
	BlackHoleCluster   = "BlackHoleCluster"
	PassthroughCluster = "PassthroughCluster"
	// AllowAnyDynamicDNSCluster is ALLOW_ANY_DYNAMIC_DNS's dynamic forward proxy cluster.
	AllowAnyDynamicDNSCluster = "AllowAnyDynamicDNSCluster"
	BlockAllHost              = "block_all"
	AllowAnyHost              = "allow_any"
)

// Verdict is what happened to one call, with the evidence for it.
type Verdict struct {
	Kind Kind `json:"verdict"`
	// Reason says why: one of the Reason constants, or a short phrase for errors.
	Reason   string   `json:"reason,omitempty"`
	Evidence Evidence `json:"evidence"`
}

// Evidence is what a verdict was reached from. A simulated verdict fills the first
// group (what the sidecar's configuration matched); a verdict from a real call fills
// the second (what the client observed).
type Evidence struct {
	// FromConfig: the first group was read from the sidecar's configuration.
	// FromCall: the second group was observed on a real call.
	FromConfig bool `json:"fromConfig,omitempty"`
	FromCall   bool `json:"fromCall,omitempty"`

	Listener    string `json:"listener,omitempty"`
	FilterChain string `json:"filterChain,omitempty"`
	RouteConfig string `json:"routeConfig,omitempty"`
	VirtualHost string `json:"virtualHost,omitempty"`
	Route       string `json:"route,omitempty"`
	Cluster     string `json:"cluster,omitempty"`
	// UpstreamSNI is the SNI of the TLS the cluster originates to its upstream (its TLS
	// transport socket), "" when it sends what the app sent as it is.
	UpstreamSNI string `json:"upstreamSNI,omitempty"`
	// GatewayName and Gateway are the egress gateway the sidecar sent the call to, and
	// what that gateway's proxy matched: the call's second hop, which decided it.
	GatewayName string    `json:"gatewayName,omitempty"`
	Gateway     *Evidence `json:"gateway,omitempty"`
	// Details is why the proxy answered a request itself, as its access log's
	// %RESPONSE_CODE_DETAILS% says it: rbac_access_denied_matched_policy[none] when an
	// RBAC filter denied it (computed from the filter's config, or read from the log).
	Details string `json:"details,omitempty"`

	Status int `json:"status,omitempty"`
	// Server is the response's `server` header: "envoy" when the sidecar answered itself.
	Server string `json:"server,omitempty"`
	// UpstreamServiceTime is `x-envoy-upstream-service-time`: set only when Envoy reached an upstream.
	UpstreamServiceTime string        `json:"upstreamServiceTime,omitempty"`
	ErrorClass          ErrorClass    `json:"errorClass,omitempty"`
	Error               string        `json:"error,omitempty"`
	Duration            time.Duration `json:"-"`
	BodyPrefix          string        `json:"body,omitempty"`
	// ClientAddress is the app's own address and port of the call's connection: the
	// sidecar's access log names the call's line by it (%DOWNSTREAM_REMOTE_ADDRESS%).
	ClientAddress string `json:"clientAddress,omitempty"`
	// RequestID is the x-request-id the client sent: every proxy's line names the call by it.
	RequestID string `json:"requestId,omitempty"`
}

// String is the one-line form: "BLOCKED (block_all)".
func (v Verdict) String() string {
	if v.Reason == "" {
		return string(v.Kind)
	}
	return fmt.Sprintf("%s (%s)", v.Kind, v.Reason)
}

// Fields lists the evidence that is present, as name/value pairs in a stable order,
// so that narration and test failures show the same thing.
func (e Evidence) Fields() [][2]string {
	var out [][2]string
	add := func(name, value string) {
		if value != "" {
			out = append(out, [2]string{name, value})
		}
	}
	add("listener", e.Listener)
	add("filter chain", e.FilterChain)
	add("route config", e.RouteConfig)
	add("virtual host", e.VirtualHost)
	add("route", e.Route)
	add("cluster", e.Cluster)
	add("originates TLS, SNI", e.UpstreamSNI)
	add("response code details", e.Details)
	if g := e.Gateway; g != nil {
		add("then the egress gateway", e.GatewayName)
		for _, f := range g.Fields() {
			out = append(out, [2]string{"  its " + f[0], f[1]})
		}
	}
	if e.Status != 0 {
		add("status", fmt.Sprint(e.Status))
	}
	add("server", e.Server)
	add("x-envoy-upstream-service-time", e.UpstreamServiceTime)
	add("error class", string(e.ErrorClass))
	add("error", e.Error)
	if e.Duration > 0 {
		add("duration", e.Duration.Round(time.Millisecond).String())
	}
	add("body", e.BodyPrefix)
	return out
}

// String renders the evidence as "listener=0.0.0.0_80 cluster=...".
func (e Evidence) String() string {
	var b strings.Builder
	for i, f := range e.Fields() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", strings.ReplaceAll(f[0], " ", "_"), f[1])
	}
	return b.String()
}
