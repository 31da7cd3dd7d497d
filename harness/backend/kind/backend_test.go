package kind

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// fakeExec answers exec calls like the client container would, and records them.
type fakeExec struct {
	stdout, stderr string
	err            error
	calls          [][]string
	where          []string
}

func (f *fakeExec) Exec(ctx context.Context, ns, pod, container string, cmd []string) (string, string, error) {
	f.calls = append(f.calls, cmd)
	f.where = append(f.where, ns+"/"+pod+"/"+container)
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	return f.stdout, f.stderr, f.err
}

type fakeMesh struct{ got []string }

func (m *fakeMesh) Install(_ context.Context, v manifest.MeshValues) error {
	m.got = append(m.got, v.OutboundMode())
	return nil
}

var one = int32(1)

func deployment(rolledOut bool) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "egresslab", Generation: 2},
		Spec: appsv1.DeploymentSpec{Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "client"}}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1},
	}
	if rolledOut {
		d.Status.AvailableReplicas, d.Status.ReadyReplicas = 1, 1
	}
	return d
}

func pod(name string, sidecar string, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "egresslab", Labels: map[string]string{"app": "client"},
			CreationTimestamp: metav1.Now()},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "client", Image: appimage.Client.Tag}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	always := corev1.ContainerRestartPolicyAlways
	switch sidecar {
	case "container":
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.31.0"})
	case "native":
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-init"},
			{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.31.0", RestartPolicy: &always}}
	case "init-only":
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy"}} // runs once, then exits: no sidecar
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	return p
}

func namespace(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "egresslab", Labels: labels}}
}

var injector = &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"}}

func istiod() *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system"},
		Spec:   appsv1.DeploymentSpec{Replicas: &one},
		Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}}
}

func newTestBackend(ex *fakeExec, objs ...runtime.Object) (*Backend, *kubefake.Clientset, *bytes.Buffer) {
	k := kubefake.NewClientset(objs...)
	var progress bytes.Buffer
	b := newBackend(k, istiofake.NewSimpleClientset(), &fakeMesh{}, ex, &lockedWriter{w: &progress})
	b.rollout, b.poll = 300*time.Millisecond, 10*time.Millisecond
	return b, k, &progress
}

// The observations recorded from the real client binary (apps/client's tests run it
// against local servers standing in for Envoy's block_all 502, a reset, DNS, a hang).
func TestCallClassifiesTheClientsRecordedOutput(t *testing.T) {
	cases := map[string]struct {
		kind   outcome.Kind
		reason string
	}{
		"envoy-502-block-all.json":       {outcome.Blocked, outcome.ReasonBlockAll},
		"envoy-200-upstream.json":        {outcome.Allowed, outcome.ReasonUpstream},
		"reset.json":                     {outcome.Blocked, outcome.ReasonBlackHole},
		"reset-in-tls-handshake.json":    {outcome.Blocked, outcome.ReasonBlackHole},
		"eof-in-tls-handshake.json":      {outcome.Blocked, outcome.ReasonBlackHole},
		"dns.json":                       {outcome.Unreachable, "dns"},
		"timeout.json":                   {outcome.Unreachable, "timeout"},
		"refused.json":                   {outcome.Unreachable, "refused"},
		"tls-untrusted-certificate.json": {outcome.Unreachable, "tls"},
	}
	files, err := filepath.Glob("../../../apps/client/testdata/observations/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(cases), "every recorded observation has an expected verdict here")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := cases[filepath.Base(f)]
			require.True(t, ok)
			line, err := os.ReadFile(f)
			require.NoError(t, err)
			ex := &fakeExec{stdout: string(line)}
			b, _, _ := newTestBackend(ex, deployment(true), pod("client-old", "container", true))
			v, err := b.Call(context.Background(), apps.Client, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1"))
			require.NoError(t, err)
			assert.Equal(t, want.kind, v.Kind)
			assert.Equal(t, want.reason, v.Reason)
			assert.True(t, v.Evidence.FromCall)
			assert.Equal(t, []string{"/client", "call", "--timeout=10s", "http://jsonplaceholder.typicode.com/todos/1"}, ex.calls[0])
			assert.Equal(t, "egresslab/client-old/client", ex.where[0])
		})
	}
}

func TestCallPicksTheNewestReadyPod(t *testing.T) {
	ex := &fakeExec{stdout: `{"url":"http://x/","status":200,"durationMs":3}`}
	older := pod("client-a", "container", true)
	older.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	notReady := pod("client-c", "container", false)
	b, _, _ := newTestBackend(ex, deployment(true), older, pod("client-b", "container", true), notReady)
	_, err := b.Call(context.Background(), apps.Client, backend.MustCall("http://x/"))
	require.NoError(t, err)
	assert.Equal(t, "egresslab/client-b/client", ex.where[0])
}

func TestCallErrors(t *testing.T) {
	ctx := context.Background()
	c := backend.MustCall("http://jsonplaceholder.typicode.com/")

	b, _, _ := newTestBackend(&fakeExec{}, deployment(true))
	_, err := b.Call(ctx, apps.Client, c)
	assert.ErrorContains(t, err, "find the pod of egresslab/client: no ready pod")

	b, _, _ = newTestBackend(&fakeExec{err: errors.New("container not found"), stderr: "oops"}, deployment(true), pod("p", "container", true))
	_, err = b.Call(ctx, apps.Client, c)
	assert.ErrorContains(t, err, "call http://jsonplaceholder.typicode.com/ from pod egresslab/p (container client): container not found; stderr: oops")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	b, _, _ = newTestBackend(&fakeExec{}, deployment(true), pod("p", "container", true))
	_, err = b.Call(cancelled, apps.Client, c)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestParseObservation(t *testing.T) {
	o, err := ParseObservation("\n" + `{"url":"http://x/","status":502,"server":"envoy","durationMs":4}` + "\n")
	require.NoError(t, err)
	assert.Equal(t, outcome.Observation{URL: "http://x/", Status: 502, Server: "envoy", DurationMillis: 4}, o)

	for in, msg := range map[string]string{
		"":                                 "printed 0 lines",
		"{\"url\":\"a\"}\n{\"url\":\"b\"}": "printed 2 lines",
		"exec: client: not found":          "read the client's observation",
		`{"status":200}`:                   "names no URL",
	} {
		_, err := ParseObservation(in)
		assert.ErrorContains(t, err, msg, "input %q", in)
	}
}

func TestSidecarFound(t *testing.T) {
	for kind, want := range map[string]string{
		"container": "the istio-proxy sidecar container (image docker.io/istio/proxyv2:1.31.0)",
		"native":    "istio-proxy as a native sidecar (init container with restartPolicy Always",
	} {
		t.Run(kind, func(t *testing.T) {
			b, _, progress := newTestBackend(&fakeExec{}, deployment(true), pod("client-x", kind, true),
				namespace(map[string]string{"istio-injection": "enabled"}))
			sc, err := b.Sidecar(context.Background(), apps.Client)
			require.NoError(t, err)
			assert.True(t, sc.Injected)
			assert.Equal(t, "egresslab/client-x", sc.Pod)
			assert.Contains(t, sc.Proxy, want)
			assert.Contains(t, sc.Rule, "istio-injection=enabled")
			assert.Contains(t, progress.String(), "✓ rollout of egresslab/client")
		})
	}
}

func TestSidecarMissingNamesTheCause(t *testing.T) {
	cases := map[string]struct {
		objs []runtime.Object
		want string
	}{
		"namespace not labelled": {
			[]runtime.Object{namespace(nil), injector, istiod()},
			"namespace egresslab is not labelled for injection; label it (kubectl label namespace egresslab istio-injection=enabled)"},
		"namespace opted out": {
			[]runtime.Object{namespace(map[string]string{"istio-injection": "disabled"}), injector, istiod()},
			"labelled istio-injection=disabled"},
		"injector not registered": {
			[]runtime.Object{namespace(map[string]string{"istio-injection": "enabled"}), istiod()},
			"the sidecar injector webhook istio-sidecar-injector is not registered (is istiod installed?)"},
		"istiod missing": {
			[]runtime.Object{namespace(map[string]string{"istio-injection": "enabled"}), injector},
			"istiod is not running in istio-system"},
		// The webhook fails closed, so "created before the injector" cannot be the cause.
		"admitted past a ready injector": {
			[]runtime.Object{namespace(map[string]string{"istio-injection": "enabled"}), injector, istiod()},
			"the injector is ready now, yet the pod was admitted without a sidecar: check the webhook's selectors"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			objs := append([]runtime.Object{deployment(true), pod("client-x", "init-only", true)}, tc.objs...)
			b, _, _ := newTestBackend(&fakeExec{}, objs...)
			var diagnosed string
			b.diagnose = func(_ context.Context, why string) string { diagnosed = why; return "/tmp/diag-here" }
			sc, err := b.Sidecar(context.Background(), apps.Client)
			require.NoError(t, err, "no sidecar is an answer, not an error")
			assert.False(t, sc.Injected)
			assert.Contains(t, sc.Rule, tc.want)
			assert.Contains(t, sc.Rule, "(diagnostics: /tmp/diag-here)")
			assert.Contains(t, diagnosed, "pod egresslab/client-x runs without an istio-proxy sidecar: ")
			assert.Contains(t, diagnosed, tc.want)
			_, err = narrate.SidecarSentence(sc)
			require.Error(t, err, "the lab's words for it")
			assert.Contains(t, err.Error(), "pod egresslab/client-x runs without an istio-proxy sidecar, so it proves nothing about the mesh: ")
		})
	}
}

func TestSidecarWaitsForTheRollout(t *testing.T) {
	b, k, _ := newTestBackend(&fakeExec{}, deployment(false), pod("client-x", "container", false), namespace(map[string]string{"istio-injection": "enabled"}))
	b.rollout = time.Minute
	polledTwice := make(chan struct{})
	var gets atomic.Int32
	k.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) == 2 {
			close(polledTwice)
		}
		return false, nil, nil // the fake's own objects answer
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rolledOut atomic.Bool
	go func() {
		select {
		case <-polledTwice: // the rollout was seen under way, twice: Sidecar waits on
		case <-ctx.Done():
			return
		}
		rolledOut.Store(true)
		_, _ = k.AppsV1().Deployments("egresslab").UpdateStatus(ctx, deployment(true), metav1.UpdateOptions{})
		_, _ = k.CoreV1().Pods("egresslab").UpdateStatus(ctx, pod("client-x", "container", true), metav1.UpdateOptions{})
	}()
	_, err := b.Sidecar(ctx, apps.Client)
	require.NoError(t, err)
	assert.True(t, rolledOut.Load(), "Sidecar answered before the rollout ended")
}

func TestRolloutTimeoutSaysWhatHoldsItUp(t *testing.T) {
	stuck := pod("client-x", "container", false)
	stuck.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "client",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "toomanyrequests"}}}}
	b, _, progress := newTestBackend(&fakeExec{}, deployment(false), stuck)
	start := time.Now()
	_, err := b.Sidecar(context.Background(), apps.Client)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Contains(t, err.Error(), "wait for Deployment egresslab/client to be ready: context deadline exceeded; last seen: 0 of 1 replicas available")
	assert.Contains(t, err.Error(), "pod client-x container client: ImagePullBackOff (image egresslab/client:dev): toomanyrequests")
	assert.Contains(t, progress.String(), "✗ rollout of egresslab/client: failed after")
}

// An image with pull policy Never that is not on the node stays missing however long one
// waits: the wait stops at the first sight of it, not at its timeout.
func TestRolloutThatCannotEndStopsAtOnce(t *testing.T) {
	stuck := pod("client-x", "container", false)
	stuck.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "client",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}
	b, _, progress := newTestBackend(&fakeExec{}, deployment(false), stuck)
	b.rollout = time.Minute
	start := time.Now()
	_, err := b.Sidecar(context.Background(), apps.Client)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "stopped at the first sight of it, not after the 1-minute timeout")
	assert.Contains(t, err.Error(), "wait for Deployment egresslab/client to be ready: it cannot become ready, so the wait stops now: 0 of 1 replicas available")
	assert.Contains(t, err.Error(), "pod client-x container client: ErrImageNeverPull (image egresslab/client:dev is not on the node")
	assert.Contains(t, progress.String(), "✗ rollout of egresslab/client: failed after")
}

func TestApplyStampsTheImageDigestOnTheClientOnly(t *testing.T) {
	b, k, _ := newTestBackend(&fakeExec{})
	b.imageDigest = "sha256:abc"
	app, err := labs.Manifest(labs.ClientApp, "egresslab")
	require.NoError(t, err)
	require.NoError(t, b.Apply(context.Background(), app))

	d, err := k.AppsV1().Deployments("egresslab").Get(context.Background(), "client", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "sha256:abc", d.Spec.Template.Annotations[appimage.DigestAnnotation])
	for _, o := range app.Objects {
		if dep, ok := o.Kube.(*appsv1.Deployment); ok {
			assert.NotContains(t, dep.Spec.Template.Annotations, appimage.DigestAnnotation, "the loaded manifest must stay as written")
		}
	}
	require.NoError(t, b.Delete(context.Background(), app))
	_, err = k.AppsV1().Deployments("egresslab").Get(context.Background(), "client", metav1.GetOptions{})
	assert.Error(t, err)
}

func TestInstallMeshShowsProgress(t *testing.T) {
	b, _, progress := newTestBackend(&fakeExec{})
	mesh := &fakeMesh{}
	b.mesh = mesh
	v, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	require.NoError(t, b.InstallMesh(context.Background(), v))
	assert.Equal(t, []string{"REGISTRY_ONLY"}, mesh.got)
	assert.Regexp(t, `▸ Istio, outboundTrafficPolicy REGISTRY_ONLY\n✓ Istio, outboundTrafficPolicy REGISTRY_ONLY \(\d`, progress.String())
}

// The fixture is written in the layout of Envoy's /config_dump (envoy.admin.v3), cut
// down to a few entries of each kind; it was not taken from a running sidecar.
func TestFilterConfigDumpKeepsWhatDecidesTheCall(t *testing.T) {
	dump, err := os.ReadFile("testdata/config_dump.json")
	require.NoError(t, err)
	out, err := FilterConfigDump(dump, "jsonplaceholder.typicode.com", 80)
	require.NoError(t, err)
	for _, want := range []string{"name: virtualOutbound", "name: 0.0.0.0_80", "name: \"80\"",
		"name: jsonplaceholder.typicode.com:80", "name: block_all", "outbound|80||jsonplaceholder.typicode.com",
		"name: BlackHoleCluster", "name: PassthroughCluster"} {
		assert.Contains(t, out, want)
	}
	for _, not := range []string{"0.0.0.0_15090", "10.96.0.1_443", "15010", "client.egresslab.svc.cluster.local:80",
		"prometheus_stats", "kubernetes.default", "istiod"} {
		assert.NotContains(t, out, not)
	}

	https, err := FilterConfigDump(dump, "jsonplaceholder.typicode.com", 443)
	require.NoError(t, err)
	assert.Contains(t, https, "10.96.0.1_443")
	assert.NotContains(t, https, "outbound|80||jsonplaceholder")
	assert.Contains(t, https, "routeConfigs: []")

	_, err = FilterConfigDump([]byte("not json"), "h", 80)
	assert.ErrorContains(t, err, "read Envoy's config_dump")
}

func TestSidecarConfigExecsPilotAgent(t *testing.T) {
	dump, err := os.ReadFile("testdata/config_dump.json")
	require.NoError(t, err)
	ex := &fakeExec{stdout: string(dump)}
	b, _, _ := newTestBackend(ex, deployment(true), pod("client-x", "container", true))
	out, err := b.SidecarConfig(context.Background(), apps.Client, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1"))
	require.NoError(t, err)
	assert.Contains(t, out, "outbound|80||jsonplaceholder.typicode.com")
	assert.Equal(t, []string{"pilot-agent", "request", "GET", "config_dump"}, ex.calls[0])
	assert.Equal(t, "egresslab/client-x/istio-proxy", ex.where[0])
}

func TestDiagnoseWritesStatusEventsAndLogs(t *testing.T) {
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "egresslab"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "client-x"}, Type: "Warning", Reason: "Failed",
		Message: "Container image \"egresslab/client:dev\" is not present with pull policy of Never"}
	k := kubefake.NewClientset(pod("client-x", "container", false), ev)
	base := t.TempDir()
	extraCalled := ""
	dir, err := Diagnose(context.Background(), k, base, "rollout timed out", []string{"egresslab", "istio-system"},
		func(d string) error { extraCalled = d; return errors.New("kind logs: no cluster") })
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(dir, base))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		return string(b)
	}
	assert.Equal(t, "rollout timed out\n", read("why.txt"))
	assert.Contains(t, read("egresslab.pods.yaml"), "pod: client-x")
	assert.Contains(t, read("egresslab.events.txt"), "Warning Pod/client-x Failed: Container image")
	assert.Equal(t, "fake logs", read("egresslab.client-x.client.log"))
	assert.Equal(t, "fake logs", read("egresslab.client-x.istio-proxy.log"))
	assert.Equal(t, filepath.Join(dir, "kind"), extraCalled)
	assert.Contains(t, read("not-collected.txt"), "kind logs: no cluster")
}

func TestStepReportsElapsedAndTicks(t *testing.T) {
	defer func(d time.Duration) { tick = d }(tick)
	tick = 20 * time.Millisecond
	var buf bytes.Buffer
	w := &lockedWriter{w: &buf}
	done := step(w, "create kind cluster egresslab")
	ticked := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return strings.Contains(buf.String(), "  … create kind cluster egresslab (")
	}
	require.Eventually(t, ticked, 10*time.Second, 5*time.Millisecond, "a long step says every tick that it is still going")
	done(nil)
	out := buf.String()
	assert.True(t, strings.HasPrefix(out, "▸ create kind cluster egresslab\n"), out)
	// The elapsed time, however long the machine took: "0s", "40ms", "1.2s".
	assert.Regexp(t, `✓ create kind cluster egresslab \([0-9.]+(ms|s)\)\n$`, out)
}

// The cluster's setup deploys no app: the caller image is built and loaded when a lab
// first applies a Deployment that runs it, and only then.
func TestTheCallerImageIsBuiltAndLoadedWhenAnAppNeedsIt(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "egresslab-control-plane"},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{Architecture: goruntime.GOARCH}}}
	b, k, progress := newTestBackend(&fakeExec{}, node, namespace(nil))
	b.workDir = t.TempDir()
	var loaded []string
	b.loadImage = func(tarball string) error { loaded = append(loaded, tarball); return nil }

	entry, err := labs.Manifest(labs.SeedServiceEntry, "egresslab")
	require.NoError(t, err)
	require.NoError(t, b.Apply(context.Background(), entry))
	assert.Empty(t, loaded, "no app, no image")

	app, err := labs.Manifest(labs.ClientApp, "egresslab")
	require.NoError(t, err)
	require.NoError(t, b.Apply(context.Background(), app))
	require.Len(t, loaded, 1)
	assert.FileExists(t, loaded[0])
	assert.Contains(t, progress.String(), "✓ build and load the caller image egresslab/client:dev")
	d, err := k.AppsV1().Deployments("egresslab").Get(context.Background(), "client", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Regexp(t, "^sha256:[0-9a-f]{64}$", d.Spec.Template.Annotations[appimage.DigestAnnotation])

	require.NoError(t, b.Apply(context.Background(), app))
	assert.Len(t, loaded, 1, "built and loaded once")
	assert.Equal(t, []string{"egresslab"}, b.namespaces())
}
