package istioinstall_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	sigsyaml "sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/kube"
	helmfake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/manifest"
)

// istioCharts is the copy of Istio's charts inside the istio.io/istio module the project
// is pinned to: the same chart source as the release istioinstall.Version installs.
func istioCharts(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	require.NoError(t, err, "find the istio.io/istio module")
	return istioinstall.Charts(strings.TrimSpace(string(out)))
}

func values(t *testing.T, mode string) manifest.MeshValues {
	t.Helper()
	v, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	v, err = v.WithOutboundMode(mode)
	require.NoError(t, err)
	return v
}

// render is `helm template istiod istio/istiod -n istio-system -f values.yaml`: a real
// render of the chart by the Helm SDK, no cluster.
func render(t *testing.T, v manifest.MeshValues) string {
	t.Helper()
	ch, err := istioinstall.FromDir(istioCharts(t))(context.Background(), istioinstall.IstiodChart, "")
	require.NoError(t, err)
	in := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil))))
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName, in.Namespace = istioinstall.IstiodRelease, istioinstall.Namespace
	rel, err := in.RunWithContext(context.Background(), ch, v.Values)
	require.NoError(t, err)
	return rel.(*release.Release).Manifest
}

// meshConfigMap finds the rendered ConfigMap istio-system/istio.
func meshConfigMap(t *testing.T, rendered string) *corev1.ConfigMap {
	t.Helper()
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var cm corev1.ConfigMap
		if sigsyaml.Unmarshal([]byte(doc), &cm) != nil || cm.Kind != "ConfigMap" {
			continue
		}
		if cm.Name == istioinstall.MeshConfigMap && cm.Namespace == istioinstall.Namespace {
			return &cm
		}
	}
	t.Fatalf("the rendered chart has no ConfigMap %s/%s", istioinstall.Namespace, istioinstall.MeshConfigMap)
	return nil
}

func TestRenderedChartCarriesTheModeIntoTheMeshConfig(t *testing.T) {
	for _, mode := range []string{manifest.RegistryOnly, manifest.AllowAny} {
		t.Run(mode, func(t *testing.T) {
			cm := meshConfigMap(t, render(t, values(t, mode)))
			assert.Contains(t, cm.Data["mesh"], "mode: "+mode)
			assert.Contains(t, cm.Data["mesh"], "accessLogFile: /dev/stdout", "the rest of meshConfig from values.yaml")

			// The same ConfigMap, read back the way the backend reads it from the cluster.
			k := kubefake.NewClientset(cm)
			got, err := istioinstall.MeshMode(context.Background(), k)
			require.NoError(t, err)
			assert.Equal(t, mode, got)
			assert.NoError(t, istioinstall.CheckMeshMode(context.Background(), k, values(t, mode)))
		})
	}
}

func TestRenderedIstiodUsesTheLabsResources(t *testing.T) {
	rendered := render(t, values(t, manifest.RegistryOnly))
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var d appsv1.Deployment
		if sigsyaml.Unmarshal([]byte(doc), &d) != nil || d.Kind != "Deployment" || d.Name != "istiod" {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		assert.Equal(t, "256Mi", c.Resources.Requests.Memory().String())
		assert.Equal(t, "100m", c.Resources.Requests.Cpu().String())
		return
	}
	t.Fatal("the rendered chart has no Deployment istiod")
}

func meshCM(mode string) *corev1.ConfigMap {
	mesh := "accessLogFile: /dev/stdout\n"
	if mode != "" {
		mesh += "outboundTrafficPolicy:\n  mode: " + mode + "\n"
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data: map[string]string{"mesh": mesh}}
}

func TestMeshModeDefaultsAndErrors(t *testing.T) {
	ctx := context.Background()
	got, err := istioinstall.MeshMode(ctx, kubefake.NewClientset(meshCM("")))
	require.NoError(t, err)
	assert.Equal(t, manifest.AllowAny, got, "a mesh config without a mode means Istio's default, ALLOW_ANY")

	_, err = istioinstall.MeshMode(ctx, kubefake.NewClientset())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read the mesh config (ConfigMap istio-system/istio)")

	err = istioinstall.CheckMeshMode(ctx, kubefake.NewClientset(meshCM(manifest.AllowAny)), values(t, manifest.RegistryOnly))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has outboundTrafficPolicy.mode ALLOW_ANY, but manifests/istio/values.yaml")
	assert.Contains(t, err.Error(), "asks for REGISTRY_ONLY")
}

func istiod(ready bool) *appsv1.Deployment {
	one := int32(1)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Generation: 1},
		Spec: appsv1.DeploymentSpec{Replicas: &one}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1}
	if ready {
		d.Status.AvailableReplicas, d.Status.ReadyReplicas = 1, 1
	}
	return d
}

var injector = &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"}}

// polled is closed once k has been asked n times for a Deployment: WaitIstiod has
// polled and is waiting for the next poll.
func polled(k *kubefake.Clientset, n int32) <-chan struct{} {
	ch := make(chan struct{})
	var gets atomic.Int32
	k.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) == n {
			close(ch)
		}
		return false, nil, nil // the fake's own objects answer
	})
	return ch
}

func TestWaitIstiodPollsUntilReady(t *testing.T) {
	k := kubefake.NewClientset(istiod(false), injector)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	twice := polled(k, 2)
	var ready atomic.Bool
	go func() {
		select {
		case <-twice: // istiod was seen not ready, twice: WaitIstiod polls on
		case <-ctx.Done():
			return
		}
		ready.Store(true)
		_, _ = k.AppsV1().Deployments("istio-system").UpdateStatus(ctx, istiod(true), metav1.UpdateOptions{})
	}()
	require.NoError(t, istioinstall.WaitIstiod(ctx, k, time.Minute, 10*time.Millisecond))
	assert.True(t, ready.Load(), "WaitIstiod returned before istiod was ready")
}

func TestWaitIstiodTimesOutSayingWhatItSaw(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{
		"0 of 1 replicas available":                {istiod(false), injector},
		"no Deployment istiod yet":                 {},
		"istio-sidecar-injector is not registered": {istiod(true)},
	} {
		t.Run(name, func(t *testing.T) {
			k := kubefake.NewClientset(objs...)
			start := time.Now()
			err := istioinstall.WaitIstiod(context.Background(), k, 150*time.Millisecond, 10*time.Millisecond)
			require.Error(t, err)
			// It gives up at its timeout: a generous bound, far below anything that hangs.
			assert.Less(t, time.Since(start), 30*time.Second)
			assert.Contains(t, err.Error(), "wait for istiod in istio-system to be ready: context deadline exceeded")
			assert.Contains(t, err.Error(), name)
		})
	}
}

func TestWaitIstiodStopsWhenCancelled(t *testing.T) {
	k := kubefake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	once := polled(k, 1)
	go func() {
		<-once // Ctrl-C while WaitIstiod waits for istiod
		cancel()
	}()
	// With a minute to wait, only the cancellation ends it this soon, and says so.
	err := istioinstall.WaitIstiod(ctx, k, time.Minute, 10*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "context canceled")
}

// helmWithoutCluster is a Helm configuration whose releases live in memory and whose
// Kubernetes client only prints: Helm's own install and upgrade logic, no cluster.
func helmWithoutCluster() (*action.Configuration, *driver.Memory) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	mem := driver.NewMemory()
	mem.SetNamespace(istioinstall.Namespace)
	cfg.Releases = storage.Init(mem)
	cfg.KubeClient = &helmfake.PrintingKubeClient{Out: io.Discard}
	cfg.Capabilities = common.DefaultCapabilities.Copy()
	return cfg, mem
}

func TestInstallThenLeaveAloneThenUpgrade(t *testing.T) {
	ctx := context.Background()
	cfg, _ := helmWithoutCluster()
	k := kubefake.NewClientset(istiod(true), injector, meshCM(manifest.RegistryOnly))
	var progress bytes.Buffer
	in, err := istioinstall.New(nil, k, istioinstall.WithHelmConfig(cfg), istioinstall.WithCharts(istioinstall.FromDir(istioCharts(t))),
		istioinstall.WithVersion("1.0.0"), // the module's copy of the charts is versioned 1.0.0
		istioinstall.WithProgress(&progress), istioinstall.WithTimeout(time.Second))
	require.NoError(t, err)

	require.NoError(t, in.Install(ctx, values(t, manifest.RegistryOnly)))
	assert.Contains(t, progress.String(), "helm install istio-base istio/base --version 1.0.0 -n istio-system")
	assert.Contains(t, progress.String(), "helm install istiod istio/istiod --version 1.0.0 -n istio-system")
	rel, err := action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Contains(t, rel.(*release.Release).Manifest, "mode: REGISTRY_ONLY")

	progress.Reset()
	require.NoError(t, in.Install(ctx, values(t, manifest.RegistryOnly)))
	assert.Contains(t, progress.String(), "istiod 1.0.0 is installed with these values already")
	assert.NotContains(t, progress.String(), "helm upgrade")

	// ALLOW_ANY upgrades istiod; the (fake) cluster's ConfigMap still says REGISTRY_ONLY,
	// and the check after the upgrade must catch that.
	progress.Reset()
	err = in.Install(ctx, values(t, manifest.AllowAny))
	assert.Contains(t, progress.String(), "helm upgrade istiod istio/istiod --version 1.0.0 -n istio-system")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has outboundTrafficPolicy.mode REGISTRY_ONLY")
	h, err := action.NewHistory(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Len(t, h, 2, "install, then one upgrade")
	rel, err = action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Contains(t, rel.(*release.Release).Manifest, "mode: ALLOW_ANY")
}

func TestInstallSaysWhichChartItCouldNotGet(t *testing.T) {
	cfg, _ := helmWithoutCluster()
	in, err := istioinstall.New(nil, kubefake.NewClientset(), istioinstall.WithHelmConfig(cfg),
		istioinstall.WithCharts(istioinstall.FromDir(map[string]string{})))
	require.NoError(t, err)
	err = in.Install(context.Background(), values(t, manifest.RegistryOnly))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "install Istio "+istioinstall.Version+" chart base as release istio-base: no local directory for chart base")
}

func installer(t *testing.T, cfg *action.Configuration, k *kubefake.Clientset, progress io.Writer) *istioinstall.Installer {
	t.Helper()
	in, err := istioinstall.New(nil, k, istioinstall.WithHelmConfig(cfg), istioinstall.WithCharts(istioinstall.FromDir(istioCharts(t))),
		istioinstall.WithVersion("1.0.0"), istioinstall.WithProgress(progress), istioinstall.WithTimeout(time.Second))
	require.NoError(t, err)
	return in
}

// Ctrl-C during `helm install` leaves the release pending-install, and every later Helm
// operation on it fails with "another operation (install/upgrade/rollback) is in
// progress". The next run clears it and installs.
func TestAPendingInstallLeftByCtrlCIsClearedOnTheNextRun(t *testing.T) {
	cfg, mem := helmWithoutCluster()
	require.NoError(t, mem.Create("sh.helm.release.v1.istiod.v1", &release.Release{Name: istioinstall.IstiodRelease,
		Namespace: istioinstall.Namespace, Version: 1, Info: &release.Info{Status: "pending-install"}}))
	var progress bytes.Buffer
	in := installer(t, cfg, kubefake.NewClientset(istiod(true), injector, meshCM(manifest.RegistryOnly)), &progress)

	require.NoError(t, in.Install(context.Background(), values(t, manifest.RegistryOnly)))
	assert.Contains(t, progress.String(), "release istiod was left pending-install by an interrupted run: uninstalling it")
	rel, err := action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Equal(t, "deployed", rel.(*release.Release).Info.Status.String())
}

func TestAPendingUpgradeIsRolledBackThenUpgraded(t *testing.T) {
	ctx := context.Background()
	cfg, mem := helmWithoutCluster()
	var progress bytes.Buffer
	in := installer(t, cfg, kubefake.NewClientset(istiod(true), injector, meshCM(manifest.RegistryOnly)), &progress)
	require.NoError(t, in.Install(ctx, values(t, manifest.RegistryOnly)))
	// An upgrade interrupted half-way: revision 2 pending, revision 1 superseded.
	rel1, err := action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	pending := *rel1.(*release.Release)
	pending.Version, pending.Info = 2, &release.Info{Status: "pending-upgrade"}
	pending.Config = values(t, manifest.AllowAny).Values
	require.NoError(t, mem.Create("sh.helm.release.v1.istiod.v2", &pending))

	progress.Reset()
	require.NoError(t, in.Install(ctx, values(t, manifest.RegistryOnly)))
	assert.Contains(t, progress.String(), "release istiod was left pending-upgrade by an interrupted run: rolling it back to revision 1")
	rel, err := action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	assert.Equal(t, "deployed", rel.(*release.Release).Info.Status.String())
	assert.Contains(t, rel.(*release.Release).Manifest, "mode: REGISTRY_ONLY")
}

// A failed install keeps its release (and so its pods and events for diagnostics); the
// next run upgrades it rather than failing on "cannot re-use a name that is still in use".
func TestAFailedInstallIsKeptAndTheNextRunUpgradesIt(t *testing.T) {
	ctx := context.Background()
	cfg, _ := helmWithoutCluster()
	failing := &helmfake.FailingKubeClient{PrintingKubeClient: helmfake.PrintingKubeClient{Out: io.Discard},
		WaitError: errors.New("context deadline exceeded")}
	cfg.KubeClient = failing
	notReady := istiod(false)
	notReady.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istiod"}}
	pulling := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-1", Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:1.31.0"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "discovery", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "toomanyrequests: rate limit"}}}}}}
	k := kubefake.NewClientset(notReady, pulling, injector, meshCM(manifest.RegistryOnly))
	in := installer(t, cfg, k, io.Discard)

	// Every Helm wait fails here, so the first chart, base, fails first.
	err := in.Install(ctx, values(t, manifest.RegistryOnly))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "install Istio 1.0.0 chart base as release istio-base: ")
	assert.Contains(t, err.Error(), "istiod: pod istiod-1 container discovery: ErrImagePull (image docker.io/istio/pilot:1.31.0): toomanyrequests")
	rel, err := action.NewGet(cfg).Run(istioinstall.BaseRelease)
	require.NoError(t, err, "the failed release is kept, not uninstalled")
	assert.Equal(t, "failed", rel.(*release.Release).Info.Status.String())

	cfg.KubeClient = &helmfake.PrintingKubeClient{Out: io.Discard}
	_, err = k.AppsV1().Deployments("istio-system").UpdateStatus(ctx, istiod(true), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, in.Install(ctx, values(t, manifest.RegistryOnly)))
	rel, err = action.NewGet(cfg).Run(istioinstall.BaseRelease)
	require.NoError(t, err)
	assert.Equal(t, 2, rel.(*release.Release).Version, "the failed revision upgraded")
	assert.Equal(t, "deployed", rel.(*release.Release).Info.Status.String())
}

// The injector webhook's failurePolicy is Fail: registered is not enough, it must answer,
// or the client's pod is refused. The dry-run probe shows that.
func TestWaitIstiodWaitsForTheInjectorToAnswer(t *testing.T) {
	k := kubefake.NewClientset(istiod(true), injector)
	var answering atomic.Bool
	var dryRuns atomic.Int32
	k.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if len(a.(k8stesting.CreateActionImpl).CreateOptions.DryRun) == 0 {
			t.Error("the probe pod must be created in dry-run mode only")
		}
		dryRuns.Add(1)
		if !answering.Load() {
			return true, nil, apierrors.NewInternalError(errors.New(`failed calling webhook "object.sidecar-injector.istio.io": connection refused`))
		}
		return true, &corev1.Pod{}, nil
	})
	err := istioinstall.WaitIstiod(context.Background(), k, 100*time.Millisecond, 10*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the sidecar injector webhook does not answer yet")
	assert.Contains(t, err.Error(), "failed calling webhook")

	answering.Store(true)
	require.NoError(t, istioinstall.WaitIstiod(context.Background(), k, time.Second, 10*time.Millisecond))
	assert.Greater(t, dryRuns.Load(), int32(1))
}

// chartRepo serves a one-chart Helm repository on loopback.
func chartRepo(t *testing.T) string {
	t.Helper()
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	chartYAML := "apiVersion: v2\nname: base\nversion: 1.0.0\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "base/Chart.yaml", Mode: 0o644, Size: int64(len(chartYAML))}))
	_, err := tw.Write([]byte(chartYAML))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	mux := http.NewServeMux()
	mux.HandleFunc("/index.yaml", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "apiVersion: v1\nentries:\n  base:\n  - apiVersion: v2\n    name: base\n    version: 1.0.0\n    urls: [base-1.0.0.tgz]\n")
	})
	mux.HandleFunc("/base-1.0.0.tgz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(tgz.Bytes()) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// A user's repositories.yaml naming a repository whose index was never downloaded made
// Helm's LocateChart fail ("no cached repo found"); and the download went into the
// user's Helm cache. egresslab's own settings read neither and write only under its dir.
func TestChartsComeThroughHelmSettingsOfItsOwn(t *testing.T) {
	user := t.TempDir()
	repos := filepath.Join(user, "repositories.yaml")
	require.NoError(t, os.WriteFile(repos, []byte("apiVersion: v1\nrepositories:\n- name: stale\n  url: https://charts.example.invalid\n"), 0o644))
	t.Setenv("HELM_REPOSITORY_CONFIG", repos)
	t.Setenv("HELM_REPOSITORY_CACHE", filepath.Join(user, "repository"))
	t.Setenv("HELM_CACHE_HOME", filepath.Join(user, "cache"))
	t.Setenv("HELM_CONTENT_CACHE", filepath.Join(user, "content"))

	own := t.TempDir()
	s := istioinstall.HelmSettings(own)
	for _, p := range []string{s.RepositoryConfig, s.RepositoryCache, s.ContentCache, s.RegistryConfig, s.PluginsDirectory} {
		assert.True(t, strings.HasPrefix(p, own+string(filepath.Separator)), "%s is not under %s", p, own)
	}

	ch, err := istioinstall.FromRepo(chartRepo(t), own)(context.Background(), "base", "1.0.0")
	require.NoError(t, err)
	assert.Equal(t, "base", ch.Metadata.Name)
	entries, err := os.ReadDir(user)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "the user's Helm folders stay as they were: only their repositories.yaml")
	cached, err := os.ReadDir(own)
	require.NoError(t, err)
	assert.NotEmpty(t, cached)
}

// The charts in Istio's source tree, packaged as Istio's release packages them, are what
// a chart repository gives an online run: version 1.31.0, images docker.io/istio/*:1.31.0
// with the default pull policy. Served by a chart repository (as a bundle's is) and
// installed through FromRepo, the release runs those images, with no values but the
// lab's; a second Install leaves it alone.
func TestChartsPackagedAsTheReleaseInstallFromARepositoryWithTheLabsValuesOnly(t *testing.T) {
	dir := t.TempDir()
	for name, src := range istioCharts(t) {
		archive, err := istioinstall.PackageRelease(src, istioinstall.Version, dir)
		require.NoError(t, err, name)
		assert.Equal(t, filepath.Join(dir, name+"-"+istioinstall.Version+".tgz"), archive)
	}
	index, err := repo.IndexDirectory(dir, "")
	require.NoError(t, err)
	require.NoError(t, index.WriteFile(filepath.Join(dir, "index.yaml"), 0o644))
	var fetched []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.URL.Path)
		mu.Unlock()
		http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	ctx := context.Background()
	cfg, _ := helmWithoutCluster()
	k := kubefake.NewClientset(istiod(true), injector, meshCM(manifest.RegistryOnly))
	var progress bytes.Buffer
	in, err := istioinstall.New(nil, k, istioinstall.WithHelmConfig(cfg),
		istioinstall.WithCharts(istioinstall.FromRepo(srv.URL, t.TempDir())),
		istioinstall.WithProgress(&progress), istioinstall.WithTimeout(time.Second))
	require.NoError(t, err)
	v := values(t, manifest.RegistryOnly)
	require.NoError(t, in.Install(ctx, v))
	assert.Equal(t, []string{"/index.yaml", "/base-" + istioinstall.Version + ".tgz", "/index.yaml", "/istiod-" + istioinstall.Version + ".tgz"}, fetched)

	got, err := action.NewGet(cfg).Run(istioinstall.IstiodRelease)
	require.NoError(t, err)
	rel := got.(*release.Release)
	assert.Equal(t, istioinstall.Version, rel.Chart.Metadata.Version)
	assert.Contains(t, rel.Manifest, `image: "docker.io/istio/pilot:`+istioinstall.Version+`"`)
	assert.NotContains(t, rel.Manifest, "imagePullPolicy: Never")
	assert.Contains(t, rel.Manifest, "mode: REGISTRY_ONLY")
	// The values given to Helm are the lab's and nothing else: what an online run gives.
	want, err := sigsyaml.Marshal(v.Values)
	require.NoError(t, err)
	gotValues, err := sigsyaml.Marshal(rel.Config)
	require.NoError(t, err)
	assert.YAMLEq(t, string(want), string(gotValues))

	progress.Reset()
	require.NoError(t, in.Install(ctx, v))
	assert.Contains(t, progress.String(), "istiod "+istioinstall.Version+" is installed with these values already")
	assert.NotContains(t, progress.String(), "helm upgrade")
}

func TestImagesAreWhereIstioPublishesThem(t *testing.T) {
	assert.Equal(t, []string{"docker.io/istio/pilot:1.31.0", "docker.io/istio/proxyv2:1.31.0"}, istioinstall.Images("1.31.0"))
}

// The handouts' by-hand client is Istio's curl sample as the pinned release ships it:
// the image a workshop bundle holds is the one samples/curl/curl.yaml names.
func TestTheCurlSampleImageIsTheOneIstiosSampleNames(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	require.NoError(t, err)
	sample, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "samples", "curl", "curl.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(sample), "image: "+istioinstall.CurlSampleImage+"\n")
	assert.Equal(t, istioinstall.CurlSampleImage, istioinstall.BundleImages("1.31.0")[2])
}

// Helm applies server-side under a field manager named after the running program: the
// lab's release installed by one test binary and upgraded by another (or by the lab)
// conflicted with itself on every field (seen on the offline kind run: the scenarios
// could not switch to ALLOW_ANY a release the cluster check had installed).
func TestEveryProgramAppliesTheReleaseUnderOneFieldManager(t *testing.T) {
	kube.ManagedFieldsManager = ""
	_, err := istioinstall.New(nil, kubefake.NewClientset(), istioinstall.WithHelmConfig(&action.Configuration{}))
	require.NoError(t, err)
	assert.Equal(t, istioinstall.FieldManager, kube.ManagedFieldsManager, "not %s, this test binary's name", filepath.Base(os.Args[0]))
}
