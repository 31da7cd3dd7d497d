package dataplane_test

import (
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pkg/wellknown"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/outcome"
)

// A configuration the simulator cannot read makes it call t.Fatalf on the *testing.T a
// Simulation built outside a test does not have: a nil-pointer panic, which the old
// recovery (it caught only its own failer's panics) passed on and crashed the CLI with.
func TestAConfigTheSimulatorCannotReadIsAnErrorNotACrash(t *testing.T) {
	hcmConfig, err := anypb.New(&hcm.HttpConnectionManager{RouteSpecifier: &hcm.HttpConnectionManager_Rds{
		Rds: &hcm.Rds{RouteConfigName: "80"}}})
	require.NoError(t, err)
	sim := &simulation.Simulation{
		Listeners: []*listener.Listener{{
			Name: "0.0.0.0_80",
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: "0.0.0.0", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 80}}}},
			FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: wellknown.HTTPConnectionManager,
				ConfigType: &listener.Filter_TypedConfig{TypedConfig: hcmConfig}}}}},
		}},
		Routes: []*route.RouteConfiguration{{Name: "80", VirtualHosts: []*route.VirtualHost{{
			Name: "everything", Domains: []string{"*"},
			Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{
				SafeRegex: &matcher.RegexMatcher{Regex: "(unclosed"}}}}},
		}}}},
	}
	_, err = dataplane.Simulate(sim, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "simulate call http://jsonplaceholder.typicode.com/todos/1: Istio's simulator cannot read the sidecar's configuration")
}

// A call the sidecar routes to an egress gateway has not left the mesh: the gateway
// decides. It used to be ALLOWED like any outbound cluster.
func TestACallToAnInMeshServiceIsNotAllowedOut(t *testing.T) {
	v := dataplane.Judge(simulation.Result{ListenerMatched: "0.0.0.0_80", VirtualHostMatched: "jsonplaceholder.typicode.com:80",
		ClusterMatched: "outbound|80||istio-egressgateway.istio-system.svc.cluster.local"})
	assert.Equal(t, outcome.InMesh, v.Kind)
	// The reason is the bare one a lab file can name (and its explanation is keyed by);
	// the service is in the evidence.
	assert.Equal(t, outcome.ReasonInMesh, v.Reason)
	assert.Equal(t, "outbound|80||istio-egressgateway.istio-system.svc.cluster.local", v.Evidence.Cluster)

	v = dataplane.Judge(simulation.Result{ClusterMatched: "outbound|80||jsonplaceholder.typicode.com"})
	assert.Equal(t, outcome.Allowed, v.Kind)
	assert.Equal(t, outcome.ReasonRegistered, v.Reason)
	v = dataplane.Judge(simulation.Result{ClusterMatched: "outbound|80|v1|jsonplaceholder.typicode.com"})
	assert.Equal(t, outcome.Allowed, v.Kind, "a subset's cluster leaves the mesh too")
}

func ns(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: labels}}
}

// One set of injection rules for sim, local and kind. sim's copy did not know
// istio.io/rev: a revision-labelled namespace got "no sidecar" on sim, a sidecar on kind.
func TestInjectionRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ns, pod   map[string]string
		injected  bool
		whyPrefix string
	}{
		{"namespace enabled", map[string]string{"istio-injection": "enabled"}, nil, true, "namespace apps is labelled istio-injection=enabled"},
		{"namespace revision", map[string]string{"istio.io/rev": "canary"}, nil, true, "namespace apps is labelled istio.io/rev=canary"},
		{"pod opts in", nil, map[string]string{"sidecar.istio.io/inject": "true"}, true, "the pod is labelled sidecar.istio.io/inject=true"},
		{"pod revision", nil, map[string]string{"istio.io/rev": "canary"}, true, "the pod is labelled istio.io/rev=canary"},
		{"pod opts out", map[string]string{"istio-injection": "enabled"}, map[string]string{"sidecar.istio.io/inject": "false"}, false, "the pod is labelled sidecar.istio.io/inject=false"},
		{"namespace disabled", map[string]string{"istio-injection": "disabled"}, map[string]string{"sidecar.istio.io/inject": "true"}, false, "namespace apps is labelled istio-injection=disabled"},
		{"nothing", nil, nil, false, "namespace apps is not labelled for injection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			injected, why := dataplane.Injection(ns(tc.ns), tc.pod)
			assert.Equal(t, tc.injected, injected, why)
			assert.True(t, strings.HasPrefix(why, tc.whyPrefix), why)
		})
	}
}

// A route to a cluster the proxy does not have is Envoy's own 503 (NC): the call does
// not leave. It used to be judged ALLOWED, as a registered service.
func TestARouteToAClusterTheProxyLacksIsBlocked(t *testing.T) {
	r := simulation.Result{ListenerMatched: "0.0.0.0_80", VirtualHostMatched: "jsonplaceholder.typicode.com:80",
		ClusterMatched: "outbound|80||jsonplaceholder.typicode.com"}
	v := dataplane.JudgeIn(&simulation.Simulation{}, r, "jsonplaceholder.typicode.com")
	assert.Equal(t, outcome.Blocked, v.Kind)
	assert.Equal(t, outcome.ReasonNoCluster, v.Reason)
	assert.Equal(t, "outbound|80||jsonplaceholder.typicode.com", v.Evidence.Cluster)
}
