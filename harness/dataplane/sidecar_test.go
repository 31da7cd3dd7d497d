package dataplane

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pilotmodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/wellknown"
)

// istiod reads the stand-in's node as the client pod's proxy: the ID and metadata it
// parses are the pod's.
func TestNodeIsThePodsProxy(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "egresslab"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "client", "version": "v1"}},
			Spec:       corev1.PodSpec{ServiceAccountName: "client", Containers: []corev1.Container{{Name: "client"}}},
		}},
	}
	node := NodeFor(PodFor(d, "client-local", FirstPodIP))
	meta, err := pilotmodel.ParseMetadata(node.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := pilotmodel.ParseServiceNodeWithMetadata(node.Id, meta)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.ID != "client-local.egresslab" || proxy.Type != pilotmodel.SidecarProxy ||
		!slices.Equal(proxy.IPAddresses, []string{FirstPodIP}) {
		t.Errorf("proxy: id %q type %q ips %v", proxy.ID, proxy.Type, proxy.IPAddresses)
	}
	if meta.Namespace != "egresslab" || meta.ServiceAccount != "client" || meta.ClusterID != "Kubernetes" ||
		meta.Labels["app"] != "client" || meta.IstioVersion != IstioProxyVersion {
		t.Errorf("metadata: namespace %q service account %q cluster %q labels %v version %q",
			meta.Namespace, meta.ServiceAccount, meta.ClusterID, meta.Labels, meta.IstioVersion)
	}
}

func TestRouteNamesIncludeDefaultChain(t *testing.T) {
	rds := func(name string) *listener.Filter {
		cfg, err := anypb.New(&hcm.HttpConnectionManager{RouteSpecifier: &hcm.HttpConnectionManager_Rds{
			Rds: &hcm.Rds{RouteConfigName: name}}})
		if err != nil {
			t.Fatal(err)
		}
		return &listener.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: cfg}}
	}
	ls := []*listener.Listener{
		{Name: "0.0.0.0_80", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{rds("80")}}}},
		{Name: "virtualOutbound", DefaultFilterChain: &listener.FilterChain{Filters: []*listener.Filter{rds("9080")}}},
		{Name: "dup", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{rds("80")}}}},
	}
	if got := routeNames(ls); !slices.Equal(got, []string{"80", "9080"}) {
		t.Errorf("route names: %v", got)
	}
}

// The push that completes the config may arrive between WaitConfig's look at the
// config and its wait for the next push. WaitConfig took the channel to wait on after
// that look, so it waited on a new one, for a push that never came: on the offline
// kind cluster a stand-in pod stayed PRE_INITIALIZING until its rollout timed out.
func TestWaitConfigSeesAPushThatArrivesWhileItLooks(t *testing.T) {
	s := &Sidecar{routes: map[string]*route.RouteConfiguration{}, received: map[string]int{}, changed: make(chan struct{})}
	var once sync.Once
	configLookedAt = func() {
		once.Do(func() { // the last push arrives: the config is complete now
			s.mu.Lock()
			s.received[listenerType], s.received[clusterType] = 1, 1
			s.notify()
			s.mu.Unlock()
		})
	}
	t.Cleanup(func() { configLookedAt = func() {} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.WaitConfig(ctx))
}
