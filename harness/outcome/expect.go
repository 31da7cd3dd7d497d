package outcome

import "fmt"

// Expect is what a scenario expects of a call, in the style of Istio's simulation
// tests: the verdict, and the listener, route and cluster it expects to be matched.
// An empty field is not checked. Config fields are checked against evidence read from
// the sidecar's configuration, Status against evidence from a real call, so the same
// expectation serves the simulator and a cluster.
type Expect struct {
	Kind        Kind
	Reason      string
	Listener    string
	RouteConfig string
	VirtualHost string
	Cluster     string
	// UpstreamSNI: the cluster originates TLS with this SNI.
	UpstreamSNI string
	// Gateway is what the egress gateway's proxy must match, when the call goes through one.
	Gateway *Hop
	Status  int
}

// Check lists every way v differs from the expectation; none means it matched.
func (e Expect) Check(v Verdict) []string {
	var out []string
	diff := func(what string, want, got any) {
		out = append(out, fmt.Sprintf("%s: want %v, got %v", what, want, got))
	}
	if v.Kind != e.Kind {
		diff("verdict", e.Kind, v.Kind)
	}
	// The reasons that name the matched cluster are read from config: a real call that
	// went out says "upstream answered" whichever cluster it left through.
	configReason := e.Reason == ReasonRegistered || e.Reason == ReasonPassthrough || e.Reason == ReasonDynamicDNS
	if e.Reason != "" && v.Reason != e.Reason && (v.Evidence.FromConfig || !configReason) {
		diff("reason", e.Reason, v.Reason)
	}
	if !v.Evidence.FromConfig && !v.Evidence.FromCall {
		out = append(out, "the verdict carries no evidence")
	}
	if v.Evidence.FromConfig {
		own := Hop{Listener: e.Listener, RouteConfig: e.RouteConfig, VirtualHost: e.VirtualHost, Cluster: e.Cluster}
		out = append(out, own.check("", v.Evidence)...)
		if e.UpstreamSNI != "" && e.UpstreamSNI != v.Evidence.UpstreamSNI {
			diff("originated TLS's SNI", fmt.Sprintf("%q", e.UpstreamSNI), fmt.Sprintf("%q", v.Evidence.UpstreamSNI))
		}
		switch g := v.Evidence.Gateway; {
		case e.Gateway != nil && g == nil:
			out = append(out, "gateway: the call did not reach an egress gateway")
		case e.Gateway != nil:
			out = append(out, e.Gateway.check("gateway ", *g)...)
		}
	}
	if v.Evidence.FromCall && e.Status != 0 && v.Evidence.Status != e.Status {
		diff("status", e.Status, v.Evidence.Status)
	}
	return out
}

// ExpectOf is what a verdict reached on the proxies' config (Istio's simulator, the
// ground truth) expects of the same call on another backend: its kind and reason, and
// the listener, route and cluster matched, at the egress gateway too.
func ExpectOf(v Verdict) Expect {
	ev := v.Evidence
	e := Expect{Kind: v.Kind, Reason: v.Reason, Listener: ev.Listener, RouteConfig: ev.RouteConfig,
		VirtualHost: ev.VirtualHost, Cluster: ev.Cluster, UpstreamSNI: ev.UpstreamSNI}
	if g := ev.Gateway; g != nil {
		e.Gateway = &Hop{Listener: g.Listener, RouteConfig: g.RouteConfig, VirtualHost: g.VirtualHost, Cluster: g.Cluster}
	}
	return e
}

// Hop is what a second proxy on the call's way (an egress gateway) must match.
type Hop struct {
	Listener    string
	RouteConfig string
	VirtualHost string
	Cluster     string
}

// check lists every way what a proxy matched (ev) differs from h, each named with
// prefix: the same four comparisons for the sidecar and for a gateway.
func (h Hop) check(prefix string, ev Evidence) []string {
	var out []string
	for _, f := range []struct{ name, want, got string }{
		{"listener", h.Listener, ev.Listener},
		{"route config", h.RouteConfig, ev.RouteConfig},
		{"virtual host", h.VirtualHost, ev.VirtualHost},
		{"cluster", h.Cluster, ev.Cluster},
	} {
		if f.want != "" && f.want != f.got {
			out = append(out, fmt.Sprintf("%s%s: want %q, got %q", prefix, f.name, f.want, f.got))
		}
	}
	return out
}
