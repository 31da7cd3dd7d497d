// Package istioinstall installs Istio into a cluster the way its documentation does
// with Helm: the `base` and `istiod` charts from Istio's official chart repository, at
// one pinned release, with the lab's values (manifests/istio/values.yaml), through the
// Helm Go SDK. Then it does what `helm install --wait` does not: it waits for istiod to
// serve and reads the mesh config back from the cluster, so that a lab never runs on a
// mesh whose outbound policy is not the one it asked for.
package istioinstall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/downloader"
	"helm.sh/helm/v4/pkg/getter"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/registry"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"helm.sh/helm/v4/pkg/storage/driver"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/rollout"
	"github.com/egresslab/egresslab/harness/manifest"
)

const (
	// Version is the Istio release installed. It is the release the project's Go module
	// istio.io/istio is pinned to (1.31.0 is commit eed52eb), so that sim generates the
	// same sidecar config as the cluster's istiod. 1.31.1 is out, but the module proxy
	// serves no istio.io/istio commit of it, so sim could not follow: a cluster on
	// 1.31.1 would be judged by 1.31.0's config generator. Override with WithVersion
	// (EGRESSLAB_ISTIO_VERSION=1.31.1), knowing that.
	Version = "1.31.0"
	// ChartRepo is Istio's official Helm chart repository for Version (ChartRepoFor).
	ChartRepo = "https://blob.istio.io/istio-release/charts"
	// Namespace is where istiod runs, and where Istio reads its mesh config from.
	Namespace = "istio-system"

	// Releases and charts, named as Istio's install guide names them.
	BaseRelease   = "istio-base"
	BaseChart     = "base"
	IstiodRelease = "istiod"
	IstiodChart   = "istiod"

	// MeshConfigMap holds the mesh config istiod reads, under key "mesh".
	MeshConfigMap = "istio"
)

// DefaultHelmDir is where Helm's settings and downloads for egresslab live: a folder of
// its own under the user's cache folder (~/.cache/egresslab/helm on Linux).
func DefaultHelmDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "egresslab", "helm")
}

// Installer installs and upgrades Istio with Helm.
type Installer struct {
	helm    *action.Configuration
	kube    kubernetes.Interface
	version string
	charts  ChartSource
	// pullsFrom names where the nodes pull images from, for a failed pull's message.
	pullsFrom string
	progress  io.Writer
	timeout   time.Duration
	poll      time.Duration
}

// ChartSource finds a chart by name and version.
type ChartSource func(ctx context.Context, name, version string) (*chart.Chart, error)

// Option configures an Installer.
type Option func(*Installer)

// WithVersion installs another Istio release than Version.
func WithVersion(v string) Option { return func(i *Installer) { i.version = v } }

// WithCharts takes the charts from src instead of Istio's chart repository.
func WithCharts(src ChartSource) Option { return func(i *Installer) { i.charts = src } }

// WithPullsFrom names where the nodes pull Istio's images from (docker.io, a mirror),
// for the message of a pull that failed.
func WithPullsFrom(where string) Option { return func(i *Installer) { i.pullsFrom = where } }

// WithProgress writes what the installer is doing to w.
func WithProgress(w io.Writer) Option { return func(i *Installer) { i.progress = w } }

// WithTimeout bounds each chart's install and istiod's start (default 5 minutes).
func WithTimeout(d time.Duration) Option { return func(i *Installer) { i.timeout = d } }

// WithHelmConfig uses a ready Helm configuration (tests give one with an in-memory
// release store and a fake Kubernetes client).
func WithHelmConfig(cfg *action.Configuration) Option { return func(i *Installer) { i.helm = cfg } }

// FieldManager owns the fields the lab's Helm releases apply, whichever program (the
// lab, the check command, a test binary) applies them.
const FieldManager = "egresslab"

// New returns an Installer for the cluster that getter and k reach.
func New(getter genericclioptions.RESTClientGetter, k kubernetes.Interface, opts ...Option) (*Installer, error) {
	// Helm applies server-side under a field manager named after the running program
	// by default: a release installed by the lab (egresslab) or one test binary and
	// upgraded by another (scenarios.test) then conflicts with itself on every field.
	// One name for every program that installs the lab's mesh.
	kube.ManagedFieldsManager = FieldManager
	i := &Installer{kube: k, version: Version, charts: FromRepo(ChartRepo, DefaultHelmDir()), progress: io.Discard,
		timeout: 5 * time.Minute, poll: 2 * time.Second}
	for _, o := range opts {
		o(i)
	}
	if i.helm == nil {
		// Helm logs at debug level what the lab's progress already says.
		cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
		if err := cfg.Init(getter, Namespace, "secret"); err != nil {
			return nil, fmt.Errorf("set up Helm for namespace %s: %w", Namespace, err)
		}
		i.helm = cfg
	}
	return i, nil
}

// FromRepo finds charts in a Helm chart repository, as `helm install --repo URL` does,
// with Helm settings private to egresslab (HelmSettings): the repository's index and the
// charts are cached under cacheDir, and the user's own Helm repositories and caches are
// neither read nor touched.
func FromRepo(repoURL, cacheDir string) ChartSource {
	return func(ctx context.Context, name, version string) (*chart.Chart, error) {
		path, err := Download(ctx, repoURL, cacheDir, name, version)
		if err != nil {
			return nil, err
		}
		return loadChart(path)
	}
}

// Download fetches chart name at version from the Helm chart repository at repoURL (its
// index.yaml, then the archive the index names) into Helm's cache under cacheDir, and
// returns the archive's path. (Helm's LocateChart with a repo URL writes a temporary
// index into the user's default cache even with private settings, so the steps are
// spelt out.)
func Download(_ context.Context, repoURL, cacheDir, name, version string) (string, error) {
	what := fmt.Sprintf("download chart %s %s from %s (cached in %s)", name, version, repoURL, cacheDir)
	settings := HelmSettings(cacheDir)
	if registry.IsOCI(repoURL) {
		return downloadOCI(repoURL, settings, name, version, what)
	}
	getters := getter.All(settings)
	r, err := repo.NewChartRepository(&repo.Entry{Name: "egresslab-istio", URL: repoURL}, getters)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	r.CachePath = settings.RepositoryCache
	index, err := r.DownloadIndexFile()
	if err != nil {
		return "", fmt.Errorf("%s: read the repository's index: %w%s", what, err, movedHint(repoURL))
	}
	idx, err := repo.LoadIndexFile(index)
	if err != nil {
		return "", fmt.Errorf("%s: read the repository's index: %w", what, err)
	}
	cv, err := idx.Get(name, version)
	if err != nil {
		return "", fmt.Errorf("%s: %w%s", what, err, movedHint(repoURL))
	}
	if len(cv.URLs) == 0 {
		return "", fmt.Errorf("%s: the repository's index gives no download URL for it", what)
	}
	ref, err := repo.ResolveReferenceURL(repoURL, cv.URLs[0])
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	dl := downloader.ChartDownloader{Out: io.Discard, Getters: getters,
		RepositoryConfig: settings.RepositoryConfig, RepositoryCache: settings.RepositoryCache, ContentCache: settings.ContentCache}
	path, _, err := dl.DownloadToCache(ref, version)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return path, nil
}

// downloadOCI pulls chart name at version from an OCI location (oci://host/path, where
// the chart is host/path/name:version), as `helm pull oci://…` does. A registry on a
// loopback address is spoken to in plain HTTP, as Helm's --plain-http would.
func downloadOCI(location string, settings *cli.EnvSettings, name, version, what string) (string, error) {
	u, err := url.Parse(location)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	plain := false
	if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
		plain = true
	}
	opts := []registry.ClientOption{registry.ClientOptCredentialsFile(settings.RegistryConfig), registry.ClientOptWriter(io.Discard)}
	if plain {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	rc, err := registry.NewClient(opts...)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	dl := downloader.ChartDownloader{Out: io.Discard, RegistryClient: rc,
		Getters:          getter.All(settings, getter.WithRegistryClient(rc), getter.WithPlainHTTP(plain)),
		RepositoryConfig: settings.RepositoryConfig, RepositoryCache: settings.RepositoryCache, ContentCache: settings.ContentCache}
	path, _, err := dl.DownloadToCache(strings.TrimSuffix(location, "/")+"/"+name, version)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return path, nil
}

// HelmSettings are Helm's settings with every file and folder Helm reads or writes under
// dir. With a user's own settings, `helm install --repo URL` walks every repository of
// their repositories.yaml and fails on the first whose index was never downloaded
// ("no cached repo found"), and it writes into their caches.
func HelmSettings(dir string) *cli.EnvSettings {
	s := cli.New()
	s.RepositoryConfig = filepath.Join(dir, "repositories.yaml")
	s.RepositoryCache = filepath.Join(dir, "repository")
	s.ContentCache = filepath.Join(dir, "content")
	s.RegistryConfig = filepath.Join(dir, "registry", "config.json")
	s.PluginsDirectory = filepath.Join(dir, "plugins")
	return s
}

// FromDir loads chart name from dir/<name>: a local checkout or copy of Istio's charts.
// Istio's source tree keeps `istiod` under istio-control/istio-discovery; dirs maps a
// chart name to its directory.
func FromDir(dirs map[string]string) ChartSource {
	return func(_ context.Context, name, _ string) (*chart.Chart, error) {
		dir, ok := dirs[name]
		if !ok {
			return nil, fmt.Errorf("no local directory for chart %s", name)
		}
		return loadChart(dir)
	}
}

func loadChart(path string) (*chart.Chart, error) {
	c, err := loader.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", path, err)
	}
	ch, ok := c.(*chart.Chart)
	if !ok {
		return nil, fmt.Errorf("load chart %s: a %T, not a v2 chart", path, c)
	}
	return ch, nil
}

// Install installs Istio (base, then istiod with values), or upgrades it to values, then
// waits for istiod and checks the mode of the mesh config the cluster really holds.
func (i *Installer) Install(ctx context.Context, values manifest.MeshValues) error {
	if err := i.release(ctx, BaseRelease, BaseChart, map[string]any{}); err != nil {
		return err
	}
	if err := i.release(ctx, IstiodRelease, IstiodChart, values.Values); err != nil {
		return err
	}
	if err := WaitIstiod(ctx, i.kube, i.timeout, i.poll); err != nil {
		return err
	}
	return CheckMeshMode(ctx, i.kube, values)
}

// release installs the chart as name, upgrades it when it is there with other values or
// another version, and leaves it alone when it is already exactly so: each scenario asks
// for the mesh, and an idle upgrade would cost a rollout wait.
func (i *Installer) release(ctx context.Context, name, chartName string, values map[string]any) (err error) {
	what := fmt.Sprintf("install Istio %s chart %s as release %s", i.version, chartName, name)
	current, err := i.deployed(name)
	if err != nil {
		return fmt.Errorf("%s: read the release's history: %w", what, err)
	}
	if current != nil && current.Info != nil && current.Info.Status.IsPending() {
		if current, err = i.recoverPending(current); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if current != nil && current.Info != nil && current.Info.Status == rcommon.StatusDeployed &&
		current.Chart != nil && current.Chart.Metadata != nil &&
		current.Chart.Metadata.Version == i.version && sameValues(current.Config, values) {
		fmt.Fprintf(i.progress, "  %s %s is installed with these values already\n", chartName, i.version)
		return nil
	}
	ch, err := i.charts(ctx, chartName, i.version)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if current == nil {
		fmt.Fprintf(i.progress, "  helm install %s istio/%s --version %s -n %s\n", name, chartName, i.version, Namespace)
		in := action.NewInstall(i.helm)
		in.ReleaseName, in.Namespace, in.CreateNamespace = name, Namespace, true
		in.WaitStrategy, in.Timeout = kube.StatusWatcherStrategy, i.timeout
		// A failed install stays, marked failed: uninstalling it would take its pods and
		// events, the evidence diagnostics save, with it. The next run upgrades it.
		in.RollbackOnFailure = false
		if _, err := in.RunWithContext(ctx, ch, values); err != nil {
			return fmt.Errorf("%s: %w%s", what, err, i.whyNotReady(ctx))
		}
		return nil
	}
	fmt.Fprintf(i.progress, "  helm upgrade %s istio/%s --version %s -n %s\n", name, chartName, i.version, Namespace)
	up := action.NewUpgrade(i.helm)
	up.Namespace = Namespace
	up.WaitStrategy, up.Timeout = kube.StatusWatcherStrategy, i.timeout
	// The values given are the whole truth, as `helm upgrade -f values.yaml` without --reuse-values.
	up.ResetValues = true
	// The release is the lab's: its fields may still be owned by another field manager
	// (a cluster kept from before FieldManager, where each program applied under its
	// own name). The upgrade takes them over instead of failing on the conflict.
	up.ForceConflicts = true
	if _, err := up.RunWithContext(ctx, name, ch, values); err != nil {
		return fmt.Errorf("upgrade Istio release %s to chart %s %s: %w%s", name, chartName, i.version, err, i.whyNotReady(ctx))
	}
	return nil
}

// Values are the values the release name was installed with (`helm get values`): the
// values this installer gave Helm, for a run to compare with what it meant to give.
func (i *Installer) Values(name string) (map[string]any, error) {
	v, err := action.NewGetValues(i.helm).Run(name)
	if err != nil {
		return nil, fmt.Errorf("read the values of release %s: %w", name, err)
	}
	return v, nil
}

// recoverPending clears a release that an interrupted run left pending (Ctrl-C during
// `helm install` or `helm upgrade`): Helm refuses every later operation on it with
// "another operation (install/upgrade/rollback) is in progress". A pending install is
// uninstalled; a pending upgrade or rollback is rolled back to the revision before it.
// It returns the release's latest revision afterwards (nil when none is left).
func (i *Installer) recoverPending(rel *release.Release) (*release.Release, error) {
	fmt.Fprintf(i.progress, "  release %s was left %s by an interrupted run: ", rel.Name, rel.Info.Status)
	if rel.Info.Status == rcommon.StatusPendingInstall || rel.Version <= 1 {
		fmt.Fprintf(i.progress, "uninstalling it\n")
		un := action.NewUninstall(i.helm)
		un.WaitStrategy, un.Timeout = kube.HookOnlyStrategy, i.timeout
		if _, err := un.Run(rel.Name); err != nil {
			return nil, fmt.Errorf("uninstall release %s, left %s by an interrupted run: %w "+
				"(by hand: helm uninstall %s -n %s)", rel.Name, rel.Info.Status, err, rel.Name, Namespace)
		}
		return i.deployed(rel.Name)
	}
	fmt.Fprintf(i.progress, "rolling it back to revision %d\n", rel.Version-1)
	rb := action.NewRollback(i.helm)
	rb.WaitStrategy, rb.Timeout = kube.HookOnlyStrategy, i.timeout
	if err := rb.Run(rel.Name); err != nil {
		return nil, fmt.Errorf("roll back release %s, left %s by an interrupted run: %w "+
			"(by hand: helm rollback %s -n %s)", rel.Name, rel.Info.Status, err, rel.Name, Namespace)
	}
	return i.deployed(rel.Name)
}

// whyNotReady says, after a failed Helm wait, what keeps istiod's pods from running
// (an image that cannot be pulled, a crash loop, pods refused at admission).
func (i *Installer) whyNotReady(ctx context.Context) string {
	ctx = context.WithoutCancel(ctx)
	d, err := i.kube.AppsV1().Deployments(Namespace).Get(ctx, "istiod", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	if ok, _ := rollout.Status(d); ok {
		return ""
	}
	if trouble := rollout.Trouble(ctx, i.kube, d, i.pullsFrom); trouble != "" {
		return "; istiod: " + trouble
	}
	return ""
}

// deployed is the release's latest revision (deployed or failed), nil when it was never installed.
func (i *Installer) deployed(name string) (*release.Release, error) {
	h, err := action.NewHistory(i.helm).Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) || (err == nil && len(h) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var last *release.Release
	for _, r := range h {
		rel, ok := r.(*release.Release)
		if !ok {
			return nil, fmt.Errorf("release %s: unexpected release type %T", name, r)
		}
		if last == nil || rel.Version > last.Version {
			last = rel
		}
	}
	return last, nil
}

// sameValues compares Helm values by their YAML meaning (numbers read back from a
// release are float64 where the file had int).
func sameValues(a, b map[string]any) bool {
	norm := func(m map[string]any) any {
		if m == nil {
			m = map[string]any{}
		}
		raw, err := yaml.Marshal(m)
		if err != nil {
			return nil
		}
		var out any
		if yaml.Unmarshal(raw, &out) != nil {
			return nil
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
