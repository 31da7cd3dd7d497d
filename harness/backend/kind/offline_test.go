package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/rollout"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// TestOfflineKindCluster is the offline kind run's own check (make e2e-offline, which
// starts the engine, builds the images and the bundle and sets EGRESSLAB_KIND_OFFLINE and
// EGRESSLAB_BUNDLE), before the scenarios and the lab run on the same cluster: the
// cluster from the built node image through kind's library; Istio installed through the
// online code path, its charts downloaded from the bundle's chart repository and its
// images pulled through the bundle's registry mirror (the servers' own logs, the
// kubelet's Pulled events and the release's values say so), REGISTRY_ONLY read back
// from the cluster; a pull of an image the mirror lacks stopped at once, saying so; the stand-in internet and the offline DNS, the client admitted by
// the real injection webhook with its istio-proxy ready (the real pilot-agent running
// the stand-in for Envoy, which says it is one), and nothing reaching past the machine.
func TestOfflineKindCluster(t *testing.T) {
	p := offlineProvider(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// Ctrl-C anywhere in the run deletes the cluster (unless kept), not only during Setup.
	defer backend.FinishOnSignal(p, cancel, os.Stderr, func() { os.Exit(130) })()
	_, err := p.Setup(ctx)
	require.NoError(t, err)
	clusterName := p.st.cluster.Name()
	t.Cleanup(func() {
		if t.Failed() && p.st != nil {
			// Pod status, events, logs and kind's exported logs, while the cluster exists.
			if dir := p.diagnose(context.Background(), p.st, t.Name()+" failed"); dir != "" {
				t.Logf("diagnostics: %s", dir)
			}
		}
		_, err := p.Finish(context.Background())
		assert.NoError(t, err)
		if !p.o.keep {
			out, err := exec.Command("docker", "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+clusterName).Output()
			assert.NoError(t, err)
			assert.Empty(t, strings.TrimSpace(string(out)), "containers of kind cluster %s left after Finish", clusterName)
		}
	})
	k := p.st.kube

	mode, err := istioinstall.MeshMode(ctx, k)
	require.NoError(t, err)
	require.Equal(t, manifest.RegistryOnly, mode, "the mesh config istiod reads, from the cluster")
	t.Logf("Istio's outboundTrafficPolicy.mode read back from the cluster: %s", mode)

	// The online path ran: Helm downloaded the index and the archives over HTTP from the
	// chart repository, with exactly the values an online run gives (the lab's).
	charts, registry := p.st.charts, p.st.registry
	require.NotNil(t, charts, "the offline run is a bundle run (%s)", EnvBundle)
	require.NotNil(t, registry, "the bundle's registry mirror runs")
	if p.st.created {
		for _, path := range []string{"/index.yaml", "/base-" + p.o.istioVersion + ".tgz", "/istiod-" + p.o.istioVersion + ".tgz"} {
			assert.True(t, charts.Saw("GET", path), "Helm fetched %s from the chart repository: %s", path, charts.Summary())
		}
		t.Logf("evidence: %s", charts.Summary())
	} else {
		t.Logf("a kept cluster, Istio installed already: no chart was downloaded this time")
	}
	installer, ok := p.st.backend.mesh.(*istioinstall.Installer)
	require.True(t, ok)
	meshValues, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	gotValues, err := installer.Values(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Equal(t, yamlOf(t, meshValues.Values), yamlOf(t, gotValues), "the values given to Helm are the lab's, as online")
	t.Logf("evidence: release %s has the values of manifests/istio/values.yaml and nothing else", istioinstall.IstiodRelease)

	client, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, p.st.backend.Apply(ctx, client))
	pod := waitForInjectedPod(ctx, t, k)
	t.Logf("pod %s/%s admitted by the injection webhook (sidecar.istio.io/status set), istio-init completed",
		pod.Namespace, pod.Name)

	s, err := p.st.backend.Sidecar(ctx, apps.Client)
	require.NoError(t, err, "the client's rollout, with istio-proxy ready")
	require.True(t, s.Injected, "%+v", s)
	server, stderr, err := p.st.backend.exec.Exec(ctx, pod.Namespace, pod.Name, "istio-proxy",
		[]string{"pilot-agent", "request", "GET", "server_info"})
	require.NoError(t, err, "pilot-agent request GET server_info: %s", stderr)
	assert.Contains(t, server, "a stand-in for Envoy, not Envoy", "the stand-in says what it is in /server_info")
	assert.Contains(t, server, `"LIVE"`)

	t.Run("the images came through the mirror", func(t *testing.T) {
		if !p.st.created {
			t.Skip("a kept cluster: its nodes pulled Istio's images on an earlier run")
		}
		for _, ref := range istioinstall.Images(p.o.istioVersion) {
			assert.True(t, registry.Pulled(ref), "containerd pulled %s through the mirror: %s", ref, registry.Summary())
			pulled := pulledEvents(ctx, t, k, ref)
			assert.NotEmpty(t, pulled, "a kubelet event says it pulled %s", ref)
			for _, e := range pulled {
				t.Logf("evidence: %s/%s: %s", e.Namespace, e.InvolvedObject.Name, e.Message)
			}
		}
	})

	t.Run("an image the mirror lacks stops the run at once, saying so", func(t *testing.T) {
		ns, image := "egresslab-pull", "docker.io/istio/proxyv2:0.0.0-not-in-the-bundle"
		_, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		require.NoError(t, err)
		defer func() { _ = k.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{}) }()
		one := int32(1)
		labels := map[string]string{"app": "missing"}
		_, err = k.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "missing"},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: image}}}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		start := time.Now()
		_, err = p.st.backend.readyPod(ctx, backend.Workload{Namespace: ns, Name: "missing"})
		took := time.Since(start)
		require.Error(t, err)
		t.Logf("after %s: %v", took.Round(time.Second), err)
		assert.ErrorIs(t, err, errNeverReady, "the wait stops, not at its timeout")
		assert.Less(t, took, p.st.backend.rollout/2, "stopped long before the rollout timeout (%s)", p.st.backend.rollout)
		for _, want := range []string{image, registry.URL, "has no image", "add it there"} {
			assert.Contains(t, err.Error(), want)
		}
	})

	t.Run("nothing leaves the machine", func(t *testing.T) {
		// TEST-NET-3 is a documentation range: nothing answers there anywhere, so a
		// connection refused within a second can only be the engine's firewall (a reset);
		// a dropped packet would show as a timeout.
		obs := callFromPlainPod(ctx, t, k, "http://203.0.113.1/")
		t.Logf("%s from a pod: %s (%s) after %d ms", obs.URL, obs.ErrorClass, obs.Error, obs.DurationMillis)
		assert.Equal(t, outcome.ErrRefused, obs.ErrorClass, "%+v", obs)
		assert.Less(t, obs.DurationMillis, int64(1000), "refused, but not at once: %+v", obs)
		// A name outside the cluster resolves nowhere: CoreDNS forwards nothing to a DNS
		// server outside the machine, so the lookup fails at once.
		obs = callFromPlainPod(ctx, t, k, "http://egresslab-nowhere.example/")
		t.Logf("%s from a pod: %s (%s) after %d ms", obs.URL, obs.ErrorClass, obs.Error, obs.DurationMillis)
		assert.Equal(t, outcome.ErrDNS, obs.ErrorClass, "%+v", obs)
		assert.Less(t, obs.DurationMillis, int64(2000), "CoreDNS answers names it does not know at once: %+v", obs)
		// The lab's host is the stand-in internet, answered in the cluster.
		obs = callFromPlainPod(ctx, t, k, "http://jsonplaceholder.typicode.com/todos/1")
		t.Logf("%s from a pod outside the mesh: %d %s", obs.URL, obs.Status, obs.BodyPrefix)
		assert.Equal(t, 200, obs.Status, "%+v", obs)
		assert.Contains(t, obs.BodyPrefix, "delectus aut autem")
	})

	t.Logf("kind cluster %s (node %s) runs Istio %s with outboundTrafficPolicy %s; the client pod %s runs istio-proxy "+
		"(pilot-agent with the Envoy stand-in), ready", clusterName, p.o.nodeImage, p.o.istioVersion, mode, pod.Name)
}

// pulledEvents are the kubelet's events that it pulled image (not found it present).
func pulledEvents(ctx context.Context, t *testing.T, k kubernetes.Interface, image string) []corev1.Event {
	t.Helper()
	events, err := k.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=Pulled"})
	require.NoError(t, err)
	var out []corev1.Event
	for _, e := range events.Items {
		if strings.Contains(e.Message, `Successfully pulled image "`+image+`"`) {
			out = append(out, e)
		}
	}
	return out
}

func yamlOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := sigsyaml.Marshal(v)
	require.NoError(t, err)
	return string(raw)
}

// offlineProvider is the kind provider on what make e2e-offline prepared (the engine,
// the images, EGRESSLAB_KIND_OFFLINE); without it the test skips, saying how to run it.
func offlineProvider(tb testing.TB) *Provider {
	tb.Helper()
	if os.Getenv(EnvOffline) == "" {
		tb.Skipf("the offline kind run is opt-in and needs root: make e2e-offline (it starts the engine, builds the images and sets %s)", EnvOffline)
	}
	p := New(OptionsFromEnv(os.Getenv)...)
	if ok, why := p.Available(context.Background()); !ok {
		tb.Fatalf("%s is set, but the kind backend cannot run: %s", EnvOffline, why)
	}
	return p
}

// waitForInjectedPod waits for the client's pod to carry the injector's mark, an
// istio-init that exited 0, and an istio-proxy container (a native sidecar among the
// init containers, or a plain one).
func waitForInjectedPod(ctx context.Context, t *testing.T, k kubernetes.Interface) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := k.CoreV1().Pods(apps.Client.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + apps.Client.Name})
		if err != nil || len(pods.Items) == 0 {
			last = fmt.Sprintf("no pod yet (%v)", err)
			return false, nil
		}
		p := &pods.Items[0]
		if _, ok := p.Annotations["sidecar.istio.io/status"]; !ok {
			last = "pod " + p.Name + " was not injected (no sidecar.istio.io/status annotation)"
			return false, nil
		}
		init := containerStatus(p, "istio-init")
		if init == nil || init.State.Terminated == nil {
			last = fmt.Sprintf("istio-init of pod %s has not finished: %+v", p.Name, init)
			return false, nil
		}
		if init.State.Terminated.ExitCode != 0 {
			return false, fmt.Errorf("istio-init of pod %s exited %d: %s", p.Name, init.State.Terminated.ExitCode,
				rollout.LastLogs(ctx, k, *p, "istio-init", false))
		}
		if containerStatus(p, "istio-proxy") == nil {
			last = "pod " + p.Name + " has no istio-proxy status yet"
			return false, nil
		}
		pod = p
		return true, nil
	})
	require.NoError(t, err, "last seen: %s", last)
	return pod
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// callFromPlainPod runs the client image, with no sidecar, in a namespace of its own, to
// make one call; it returns what the client saw.
func callFromPlainPod(ctx context.Context, t *testing.T, k kubernetes.Interface, url string) outcome.Observation {
	t.Helper()
	ns := "egresslab-nettest"
	_, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		require.NoError(t, err)
	}
	name := fmt.Sprintf("call-%d", time.Now().UnixNano()%100000)
	_, err = k.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "call", Image: appimage.Client.Tag, ImagePullPolicy: corev1.PullNever,
			Command: []string{appimage.Client.Entrypoint, "call", "--timeout=10s", url},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	var done *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := k.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		done = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	require.NoError(t, err, "pod %s/%s: %+v", ns, name, done.Status)
	out := rollout.LastLogs(ctx, k, *done, "call", false)
	var obs outcome.Observation
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &obs), "the client's output: %s", out)
	return obs
}
