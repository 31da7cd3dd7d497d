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
		for _, f := range []struct{ name, want, got string }{
			{"listener", e.Listener, v.Evidence.Listener},
			{"route config", e.RouteConfig, v.Evidence.RouteConfig},
			{"virtual host", e.VirtualHost, v.Evidence.VirtualHost},
			{"cluster", e.Cluster, v.Evidence.Cluster},
			{"originated TLS's SNI", e.UpstreamSNI, v.Evidence.UpstreamSNI},
		} {
			if f.want != "" && f.want != f.got {
				diff(f.name, fmt.Sprintf("%q", f.want), fmt.Sprintf("%q", f.got))
			}
		}
	}
	if v.Evidence.FromConfig && e.Gateway != nil {
		g := v.Evidence.Gateway
		if g == nil {
			out = append(out, "gateway: the call did not reach an egress gateway")
		} else {
			for _, f := range []struct{ name, want, got string }{
				{"gateway listener", e.Gateway.Listener, g.Listener},
				{"gateway route config", e.Gateway.RouteConfig, g.RouteConfig},
				{"gateway virtual host", e.Gateway.VirtualHost, g.VirtualHost},
				{"gateway cluster", e.Gateway.Cluster, g.Cluster},
			} {
				if f.want != "" && f.want != f.got {
					diff(f.name, fmt.Sprintf("%q", f.want), fmt.Sprintf("%q", f.got))
				}
			}
		}
	}
	if v.Evidence.FromCall && e.Status != 0 && v.Evidence.Status != e.Status {
		diff("status", e.Status, v.Evidence.Status)
	}
	return out
}

// Hop is what a second proxy on the call's way (an egress gateway) must match.
type Hop struct {
	Listener    string
	RouteConfig string
	VirtualHost string
	Cluster     string
}
