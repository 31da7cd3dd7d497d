package dataplane

import (
	"fmt"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Gateway is an egress gateway a call routed to a Service reaches: the gateway's
// workload, its pod's address, and the port its proxy listens on for that Service port.
type Gateway struct {
	Workload backend.Workload
	Address  string
	Port     int
}

// GatewayBehind finds the gateway pod behind the Service host:port of an in-mesh
// cluster ("name.namespace.svc.cluster.local"), among the services and pods a backend
// holds; ok is false when no gateway serves it (a sidecar's workload, or nothing).
func GatewayBehind(host string, port int, services []*corev1.Service, pods map[backend.Workload]*corev1.Pod) (Gateway, bool) {
	name, namespace, ok := ServiceOf(host)
	if !ok {
		return Gateway{}, false
	}
	for _, svc := range services {
		if svc.Name != name || svc.Namespace != namespace || len(svc.Spec.Selector) == 0 {
			continue
		}
		selects := labels.SelectorFromSet(svc.Spec.Selector)
		for _, sp := range svc.Spec.Ports {
			if int(sp.Port) != port {
				continue
			}
			target := sp.TargetPort.IntValue()
			if target == 0 {
				target = port
			}
			for w, pod := range pods {
				if pod.Namespace == namespace && IsGateway(pod) && selects.Matches(labels.Set(pod.Labels)) {
					return Gateway{Workload: w, Address: pod.Status.PodIP, Port: target}, true
				}
			}
		}
	}
	return Gateway{}, false
}

// FollowToGateway takes a call the client's sidecar sent to an egress gateway (v is
// IN_MESH, its cluster the gateway's Service) one hop further, as the gateway's proxy
// receives it: its listener for the port, matched as a gateway matches (Host header or
// SNI, no capture), judged on the gateway's own config, then by the RBAC filters of the
// HTTP connection manager it matched (Authorize: an AuthorizationPolicy on the
// gateway), which run before the route. The verdict is the gateway's; the evidence is
// the sidecar's, with the gateway's hop in Evidence.Gateway. A call that reaches no
// gateway is returned as it was. caller is the calling workload's Principal, which the
// gateway knows only when the call came in Istio mutual TLS it terminated.
func FollowToGateway(v outcome.Verdict, from *simulation.Simulation, caller string, c backend.Call, find func(host string, port int) (Gateway, bool, error),
	config func(backend.Workload) (*simulation.Simulation, error)) (outcome.Verdict, error) {
	if v.Kind != outcome.InMesh {
		return v, nil
	}
	host, port, ok := OutboundService(v.Evidence.Cluster)
	if !ok {
		return v, nil
	}
	gw, ok, err := find(host, port)
	if err != nil || !ok {
		return v, err
	}
	s, err := config(gw.Workload)
	if err != nil {
		return v, fmt.Errorf("the egress gateway %s's config: %w", gw.Workload, err)
	}
	call := SimCall(c)
	for _, cl := range from.Clusters {
		if cl.GetName() == v.Evidence.Cluster {
			call = sentBy(cl, call, c.Host())
		}
	}
	call.Address, call.Port, call.CallMode = gw.Address, gw.Port, simulation.CallModeGateway
	what := c.String() + " at the egress gateway " + gw.Workload.String()
	r, err := SimulateCall(s, call, what)
	if err != nil {
		return v, err
	}
	at := JudgeIn(s, r, c.Host())
	if NetworkRBAC(s, r) {
		return v, fmt.Errorf("%s: listener %s enforces a network RBAC filter (an AuthorizationPolicy on a TCP chain), which egresslab does not model", what, r.ListenerMatched)
	}
	if h := HTTPConnectionManager(s, r); h != nil && !c.TCP() {
		// The Host the client sends: the URL's host and port as written (curl and Go's
		// client write a port that is not the scheme's default). Its other headers are not
		// part of a call: a rule on one is refused (nil Headers).
		req := AuthzRequest{Method: c.RequestMethod(), Authority: c.URL.Host, Path: c.Path(),
			DestinationPort: gw.Port, DestinationIP: gw.Address}
		if call.TLS == simulation.MTLS && asksForClientCertificate(DownstreamTLS(s, r)) {
			req.Principal = caller
		}
		d, err := Authorize(h, req)
		if err != nil {
			return v, fmt.Errorf("%s: the RBAC filter on listener %s: %w", what, r.ListenerMatched, err)
		}
		if d.Denied {
			at.Evidence.Details = d.Details()
			at = outcome.Verdict{Kind: outcome.Denied, Reason: outcome.ReasonRBAC, Evidence: at.Evidence}
		}
	}
	ev := v.Evidence
	ev.GatewayName, ev.Gateway = gw.Workload.String(), &at.Evidence
	return outcome.Verdict{Kind: at.Kind, Reason: at.Reason, Evidence: ev}, nil
}

// asksForClientCertificate says whether a filter chain's TLS asks the client for a
// certificate: it has a validation context to check one against (a Gateway server's
// ISTIO_MUTUAL or MUTUAL; require_client_certificate only makes it compulsory). Only
// then does the proxy know who called, and an RBAC principal can match. The stand-in
// terminates TLS by the same rule (proxy.serverTLS).
func asksForClientCertificate(d *tlsv3.DownstreamTlsContext) bool {
	c := d.GetCommonTlsContext()
	return c.GetValidationContext() != nil || c.GetValidationContextSdsSecretConfig() != nil || c.GetCombinedValidationContext() != nil
}

// sentBy is the call as the sidecar's cluster sends it on: the app's HTTP inside the
// TLS the cluster originates, if any (Istio mutual TLS where the context presents a
// certificate, as a DestinationRule's ISTIO_MUTUAL makes it: istio.io's egress gateway
// tasks), with the SNI and first ALPN that TLS carries. The gateway's listener matches
// that, not what the app sent.
func sentBy(cl *cluster.Cluster, call simulation.Call, host string) simulation.Call {
	u, _ := UpstreamTLS(cl, nil) // the socket for an endpoint without tlsMode: a gateway pod's
	if u == nil {
		return call
	}
	call.TLS, call.Sni, call.Alpn = simulation.TLS, UpstreamSNI(cl, u, host), ""
	if len(u.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) > 0 {
		call.TLS = simulation.MTLS
	}
	if alpn := u.GetCommonTlsContext().GetAlpnProtocols(); len(alpn) > 0 {
		call.Alpn = alpn[0]
	}
	return call
}

// ServiceOf is the name and namespace of a Kubernetes Service's host,
// "name.namespace.svc.cluster.local"; ok is false for any other host.
func ServiceOf(host string) (name, namespace string, ok bool) {
	rest, ok := strings.CutSuffix(host, serviceDomain)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}

// OutboundService is the service host and port of an outbound cluster,
// "outbound|PORT|SUBSET|HOST".
func OutboundService(cluster string) (string, int, bool) {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[3] == "" {
		return "", 0, false
	}
	port, err := strconv.Atoi(parts[1])
	return parts[3], port, err == nil
}
