package sim

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// The simulated sidecar must be the client pod's own: istiod ties a proxy to its pod by
// IP, and the pod's IP is what the client Service's endpoints hold.
func TestSidecarIsTheClientPods(t *testing.T) {
	ctx := context.Background()
	values, err := manifest.LoadMeshValues()
	if err != nil {
		t.Fatal(err)
	}
	b := New(WithMesh(values))
	defer b.Close()
	app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, app); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Simulation(apps.Client); err != nil {
		t.Fatal(err)
	}
	proxyPod, err := b.workload(apps.Client)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := b.world.server.KubeClient().Kube().CoreV1().Pods(apps.Client.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("want the client's one pod in the API server, got %d", len(pods.Items))
	}
	if got, want := pods.Items[0].Status.PodIP, proxyPod.Status.PodIP; got != want {
		t.Fatalf("the client pod has IP %s in the API server, but its sidecar presents %s", got, want)
	}
	if got, want := pods.Items[0].Name, proxyPod.Name; got != want {
		t.Fatalf("the client pod is %s in the API server, but its sidecar presents %s", got, want)
	}
}
