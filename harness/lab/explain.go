package lab

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"istio.io/istio/pilot/pkg/features"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Explain says in a sentence why the sidecar did what it did with call c, keyed by the
// verdict's reason. It is the one place these explanations are written: every lab's
// narration and every handout use it.
func Explain(v outcome.Verdict, c backend.Call) string {
	if g := v.Evidence.Gateway; g != nil {
		// The gateway's proxy decided: say where the sidecar sent the call, then what
		// the gateway did, in the same words as for a sidecar.
		there := Explain(outcome.Verdict{Kind: v.Kind, Reason: v.Reason, Evidence: *g}, c)
		there = strings.Replace(there, "The sidecar", "The gateway's proxy", 1)
		return fmt.Sprintf("The sidecar sends the call to the egress gateway %s (cluster %s). There, %s%s", v.Evidence.GatewayName,
			v.Evidence.Cluster, strings.ToLower(there[:1]), there[1:])
	}
	switch v.Reason {
	case outcome.ReasonNoCluster:
		cluster := "the cluster " + v.Evidence.Cluster
		if v.Evidence.Cluster == "" || v.Evidence.Cluster == "-" {
			cluster = "a cluster" // read from a real proxy's NC line, which names none
		}
		return fmt.Sprintf("The route sends the call to %s, which the proxy does not have (no entry registers "+
			"the host), so Envoy answers 503 itself (NC, cluster not found): the call never leaves.", cluster)
	case outcome.ReasonBlockAll:
		return fmt.Sprintf("Port %d has an HTTP listener (a Service in the mesh uses that port), but no virtual host on it "+
			"matches %s, so Envoy's catch-all virtual host block_all answers 502 itself: the call never leaves the pod.", c.Port(), c.Host())
	case outcome.ReasonBlackHole:
		switch {
		case c.Proxy != nil:
			host, port := c.Dialed()
			return fmt.Sprintf("The app connects to the proxy %s on port %d, which no listener knows, so the catch-all "+
				"listener sends the connection to BlackHoleCluster, which resets it: the CONNECT never reaches the proxy.", host, port)
		case c.TCP() && c.Address != "":
			return fmt.Sprintf("No listener takes connections to %s:%d, so the catch-all listener sends the connection to "+
				"BlackHoleCluster, which resets it: the client sees a reset.", c.Address, c.Port())
		}
		handshake := " (for HTTPS, during the TLS handshake)"
		if c.TCP() {
			handshake = "" // a TCP call has no handshake of its own
		}
		return fmt.Sprintf("No listener knows port %d, so the catch-all listener sends the connection to BlackHoleCluster, "+
			"which resets it: the client sees a reset%s.", c.Port(), handshake)
	case outcome.ReasonNoRoute:
		return fmt.Sprintf("A virtual host matches %s, but none of its routes matches the request, so Envoy answers 404 itself (NR).", c.Host())
	case outcome.ReasonRegistered:
		if c.Proxy != nil {
			host, port := c.Dialed()
			return fmt.Sprintf("The app connects to the proxy %s:%d, not to %s: the sidecar's listener %s sends the connection "+
				"to the cluster %s, and the CONNECT for %s, then the TLS inside the tunnel, pass through it unread. Which host "+
				"the tunnel leads to is the proxy's decision.", host, port, c.Host(), v.Evidence.Listener, v.Evidence.Cluster, c.HostPort())
		}
		if c.TCP() {
			return explainTCP(c, v.Evidence)
		}
		if v.Evidence.VirtualHost == "" {
			return fmt.Sprintf("The sidecar's listener for port %d matches %s (for HTTPS, by the TLS SNI, without decrypting) and "+
				"sends the connection to the cluster %s, which leads out of the mesh.", c.Port(), c.Host(), v.Evidence.Cluster)
		}
		if v.Evidence.UpstreamSNI != "" {
			return fmt.Sprintf("The sidecar has a virtual host for %s and routes the call to the cluster %s, which opens "+
				"a TLS session to the host itself (SNI %s): the app spoke plain HTTP, what leaves the pod is HTTPS.",
				c.Host(), v.Evidence.Cluster, v.Evidence.UpstreamSNI)
		}
		return fmt.Sprintf("The sidecar has a virtual host for %s and routes the call to the cluster %s, which leads out of the mesh.",
			c.Host(), v.Evidence.Cluster)
	case outcome.ReasonRBAC:
		policy := ""
		if d := v.Evidence.Details; strings.HasPrefix(d, outcome.RBACDetailsPrefix) {
			policy = strings.TrimSuffix(strings.TrimPrefix(d, outcome.RBACDetailsPrefix), "]")
		}
		why := "an authorization policy denies it"
		switch {
		case policy == "none":
			why = "ALLOW policies select this proxy and none of them matches the request (who asks, with which method and path)"
		case policy != "":
			why = "the DENY policy " + policy + " matches it"
		}
		return fmt.Sprintf("The sidecar knows where %s %s goes, but its RBAC filter runs first: %s, so Envoy answers 403 "+
			"\"%s\" itself: the route's cluster is never reached.", c.RequestMethod(), c.Host(), why, outcome.RBACDeniedBody)
	case outcome.ReasonPassthrough:
		return "The host is unknown, but the mesh allows any: PassthroughCluster sends the call on to its original destination."
	case outcome.ReasonDynamicDNS:
		return fmt.Sprintf("The host is unknown; under ALLOW_ANY_DYNAMIC_DNS the HTTP catch-all sends the call to "+
			"AllowAnyDynamicDNSCluster, a dynamic forward proxy: the sidecar resolves %s from the Host header itself and "+
			"connects to the address it gets, not to the one the app dialed.", c.Host())
	case outcome.ReasonInMesh:
		return fmt.Sprintf("The sidecar sends the call to %s, a workload of the mesh: whether it leaves the mesh is that "+
			"workload's proxy's decision.", v.Evidence.Cluster)
	case outcome.ReasonUpstream:
		if v.Evidence.Status != 0 {
			return fmt.Sprintf("%s answered %d through the sidecar.", c.Host(), v.Evidence.Status)
		}
		return fmt.Sprintf("%s answered through the sidecar.", c.Host())
	}
	if v.Kind == outcome.Unreachable {
		return "The mesh let the call out, but it failed beyond the sidecar (" + v.Reason + "): check DNS and internet access."
	}
	return v.String()
}

// explainTCP says how a sidecar's TCP listener sent a plain TCP connection out: by its
// address and port only. A listener on an address istiod allocated (the ServiceEntry
// had none) is one the app reached because the sidecar's DNS proxy answered its query
// with that address. A listener the lab does not name (its address is not known in
// advance) is described without one.
func explainTCP(c backend.Call, ev outcome.Evidence) string {
	l := ev.Listener
	if l == "" {
		return fmt.Sprintf("A TCP listener of the sidecar takes the connection by its address and port (a TCP proxy reads "+
			"no name) and sends it to the cluster %s, which leads out of the mesh.", ev.Cluster)
	}
	takes := fmt.Sprintf("every connection to port %d", c.Port())
	if !strings.HasPrefix(l, "0.0.0.0_") {
		addr, _, _ := strings.Cut(l, "_")
		takes = "every connection to " + addr + ":" + strconv.Itoa(c.Port())
		if ip, err := netip.ParseAddr(addr); err == nil && autoAllocated.Contains(ip) {
			takes += fmt.Sprintf(", the address istiod allocated for %s, which the sidecar's DNS proxy gave the app", c.Host())
		}
	}
	return fmt.Sprintf("The sidecar's TCP listener %s takes %s, whatever host the app meant (a TCP proxy reads "+
		"no name), and sends it to the cluster %s, which leads out of the mesh.", l, takes, ev.Cluster)
}

// autoAllocated is the range istiod allocates ServiceEntry addresses from
// (PILOT_IP_AUTOALLOCATE_IPV4_PREFIX, pilot/pkg/features/pilot.go).
var autoAllocated = netip.MustParsePrefix(features.IPAutoallocateIPv4Prefix)
