package dataplane

import (
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"

	pilotmodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/model"
)

// ClusterID is the cluster every stand-in sidecar says it is in: istiod's default.
const ClusterID = "Kubernetes"

// serviceAccount is the pod's service account, "default" when the spec names none.
func serviceAccount(pod *corev1.Pod) string {
	if sa := pod.Spec.ServiceAccountName; sa != "" {
		return sa
	}
	return "default"
}

// TrustDomain is the mesh's trust domain: meshConfig.trustDomain, which egresslab's
// Helm values leave at Istio's default.
const TrustDomain = "cluster.local"

// Principal is the identity the pod's sidecar proves with the certificate pilot-agent
// gets for it from istiod (its URI SAN): spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT.
// An AuthorizationPolicy names it without the scheme (source.principals).
func Principal(pod *corev1.Pod) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", TrustDomain, pod.Namespace, serviceAccount(pod))
}

// workloadName is what istio-agent calls the pod's workload: its app label, else its name.
func workloadName(pod *corev1.Pod) string {
	if app := pod.Labels["app"]; app != "" {
		return app
	}
	return pod.Name
}

// ProxyFor is the identity a pod's sidecar presents to istiod, as istiod's own config
// generator takes it in process (sim).
func ProxyFor(pod *corev1.Pod) *pilotmodel.Proxy {
	return &pilotmodel.Proxy{
		Type:            proxyType(pod),
		ID:              pod.Name + "." + pod.Namespace,
		IPAddresses:     []string{pod.Status.PodIP},
		ConfigNamespace: pod.Namespace,
		Labels:          pod.Labels,
		Metadata: &pilotmodel.NodeMetadata{
			Namespace:      pod.Namespace,
			Labels:         pod.Labels,
			ServiceAccount: serviceAccount(pod),
			ClusterID:      ClusterID,
			DNSCapture:     model.StringBool(CapturesDNS(pod)),
		},
	}
}

// NodeFor is the node a pod's istio-proxy presents to istiod over xDS (local, and the
// stand-in for Envoy): the ID istio-agent builds (type~IP~pod.namespace~namespace.svc.domain)
// and its metadata. The same pod gives ProxyFor's identity once istiod parses it.
func NodeFor(pod *corev1.Pod) *core.Node {
	meta := model.NodeMetadata{
		IstioVersion:     IstioProxyVersion,
		Labels:           pod.Labels,
		Annotations:      pod.Annotations,
		InstanceIPs:      []string{pod.Status.PodIP},
		Namespace:        pod.Namespace,
		NodeName:         pod.Spec.NodeName,
		WorkloadName:     workloadName(pod),
		InterceptionMode: "REDIRECT",
		ServiceAccount:   serviceAccount(pod),
		ClusterID:        ClusterID,
		MeshID:           "cluster.local",
		DNSCapture:       model.StringBool(CapturesDNS(pod)),
	}
	return &core.Node{
		Id:       fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", proxyType(pod), pod.Status.PodIP, pod.Name, pod.Namespace, pod.Namespace),
		Cluster:  workloadName(pod) + "." + pod.Namespace,
		Metadata: meta.ToStruct(),
	}
}

// IsGateway reports whether the pod's istio-proxy is a gateway (Istio's gateway chart
// asks the injector for its gateway template): a proxy that serves the listeners of
// the Gateways selecting it, not a sidecar that captures its pod's traffic.
func IsGateway(pod *corev1.Pod) bool {
	return pod.Annotations["inject.istio.io/templates"] == "gateway"
}

// proxyType is the proxy type istio-agent reports for the pod: "router" for a gateway.
func proxyType(pod *corev1.Pod) pilotmodel.NodeType {
	if IsGateway(pod) {
		return pilotmodel.Router
	}
	return pilotmodel.SidecarProxy
}
