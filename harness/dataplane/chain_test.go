package dataplane

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	pilotmodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"

	"github.com/egresslab/egresslab/harness/manifest"
)

// A Gateway server that passes TLS through is a TCP chain; an AuthorizationPolicy on
// the gateway becomes a network RBAC filter there, which nothing here evaluates: it is
// found, so that sim and the stand-in refuse to judge the chain instead of letting
// through what Envoy might close. The HTTP chain of the same gateway has none.
func TestANetworkRBACFilterOnAGatewaysTCPChainIsFound(t *testing.T) {
	const objects = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: jsonplaceholder, namespace: egresslab}
spec:
  hosts: [jsonplaceholder.typicode.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: passthrough, namespace: egresslab}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [jsonplaceholder.typicode.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: passthrough, namespace: egresslab}
spec:
  hosts: [jsonplaceholder.typicode.com]
  gateways: [passthrough]
  tls:
  - match: [{port: 443, sniHosts: [jsonplaceholder.typicode.com]}]
    route: [{destination: {host: jsonplaceholder.typicode.com, port: {number: 443}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: client-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/egresslab/sa/client"]}}]
`
	lab, err := manifest.Parse("objects", []byte(objects), "egresslab")
	require.NoError(t, err)
	s, gw := egressGateway(t, lab)
	sim := simulation.NewSimulation(t, s, gw)
	r := sim.Run(simulation.Call{Address: FirstPodIP, Port: 443, Protocol: simulation.TCP, TLS: simulation.TLS,
		Sni: "jsonplaceholder.typicode.com", CallMode: simulation.CallModeGateway})
	require.NoError(t, r.Error)
	assert.Equal(t, "outbound|443||jsonplaceholder.typicode.com", r.ClusterMatched)
	assert.True(t, NetworkRBAC(sim, r), "the TLS passthrough chain enforces the policy as network RBAC")
	assert.Nil(t, HTTPConnectionManager(sim, r), "a TCP chain has no HTTP connection manager")
}

// egressGateway is Istio's own config generator holding the lab's egress gateway
// (labs/apps/egress-gateway.yaml, a router) and the objects of sets, and the gateway's
// proxy.
func egressGateway(t *testing.T, sets ...*manifest.Set) (*xds.FakeDiscoveryServer, *pilotmodel.Proxy) {
	t.Helper()
	mesh, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	gateway, err := manifest.LoadFile("../../labs/apps/egress-gateway.yaml", "istio-system")
	require.NoError(t, err)
	var configs []config.Config
	var kube []runtime.Object
	var deploy *appsv1.Deployment
	for _, set := range append([]*manifest.Set{gateway}, sets...) {
		configs = append(configs, set.IstioConfigs()...)
		for _, o := range set.KubeObjects() {
			kube = append(kube, o)
			if d, ok := o.(*appsv1.Deployment); ok && d.Name == "istio-egressgateway" {
				deploy = d
			}
		}
	}
	require.NotNil(t, deploy)
	pod := PodFor(deploy, "istio-egressgateway-sim", FirstPodIP)
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{Configs: configs, KubernetesObjects: append(kube, pod), MeshConfig: mesh.Mesh})
	proxy := s.SetupProxy(ProxyFor(pod))
	require.Equal(t, pilotmodel.Router, proxy.Type)
	return s, proxy
}

// The trust domain a principal names is the mesh config's (manifests/, the one source
// of the mesh config): istiod's CA issues certificates in it, and an AuthorizationPolicy
// matches them.
func TestThePrincipalsTrustDomainIsTheMeshConfigs(t *testing.T) {
	mesh, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	want := mesh.Mesh.GetTrustDomain()
	if want == "" {
		want = "cluster.local" // Istio's default, which the values leave
	}
	assert.Equal(t, want, TrustDomain)
}
