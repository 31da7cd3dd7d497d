package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/offline"
	"github.com/egresslab/egresslab/harness/manifest"
)

// Environment variables that configure the Provider the backend registry builds
// (OptionsFromEnv, given the environment by the CLI or TestMain); each has an Option of
// the same meaning.
const (
	EnvKeep         = "EGRESSLAB_KEEP"          // "1": keep the cluster after the run for the next to reuse; "0": delete it (unset: the caller's rule, backend.Keep)
	EnvKubeconfig   = "EGRESSLAB_KUBECONFIG"    // a kubeconfig: use that cluster instead of creating a kind cluster
	EnvRuntime      = "EGRESSLAB_KIND_RUNTIME"  // "podman" to run kind's nodes in Podman
	EnvIstioVersion = "EGRESSLAB_ISTIO_VERSION" // another Istio release than istioinstall.Version
	EnvNodeImage    = "EGRESSLAB_KIND_IMAGE"    // another kind node image than cluster.NodeImage
	EnvDiagnostics  = "EGRESSLAB_DIAGNOSTICS"   // where diagnostics folders go (default: the system's temp dir)
	EnvOffline      = "EGRESSLAB_KIND_OFFLINE"  // the file hack/kind-offline-images.sh writes: its node image, and the stand-ins for Envoy and the internet
	// The far end of the downloads, replaced by mirrors a user names (a company's, or a
	// workshop's bundle): the run takes the same code path, only from there.
	EnvCharts         = "EGRESSLAB_ISTIO_CHARTS"    // a Helm chart repository (URL) holding Istio's charts: a mirror of Istio's own
	EnvRegistryMirror = "EGRESSLAB_REGISTRY_MIRROR" // host:port (or URL) of a mirror of docker.io the nodes pull Istio's images through
	EnvBundle         = "EGRESSLAB_BUNDLE"          // a bundle (egresslab bundle FILE): its charts and images served as the two mirrors above
)

// Provider sets up one cluster for a whole run and opens the same Backend on it for
// every scenario. It implements backend.Lifecycle.
type Provider struct {
	o options

	mu sync.Mutex
	st *state
}

type options struct {
	keep         bool
	keepAsked    bool     // keep was asked for (WithKeep), not only the caller's default
	bad          []string // settings that cannot be read, said by Available and Setup
	kubeconfig   string
	runtime      cluster.Runtime
	istioVersion string
	nodeImage    string
	progress     io.Writer
	diagnostics  string
	callsTo      []string
	offline      string
	chartRepo    string
	mirror       string
	bundle       string
}

// Option configures a Provider, in the manner of kind's cluster.ProviderOption.
type Option func(*options)

// WithKeep keeps the cluster at the end, for the next run to reuse, or (false) deletes
// it. A run reuses the cluster whenever it exists, and starts it from a clean slate
// (clearLeftovers). Of several, the last WithKeep wins.
func WithKeep(keep bool) Option { return func(o *options) { o.keep, o.keepAsked = keep, true } }

// withKeepByDefault is the caller's default, for WithKeep to override.
func withKeepByDefault(keep bool) Option { return func(o *options) { o.keep = keep } }

// WithKubeconfig runs on the cluster this kubeconfig reaches instead of a kind cluster.
func WithKubeconfig(path string) Option { return func(o *options) { o.kubeconfig = path } }

// WithPodman runs kind's nodes in Podman instead of Docker.
func WithPodman() Option { return func(o *options) { o.runtime = cluster.Podman } }

// WithIstioVersion installs another Istio release.
func WithIstioVersion(v string) Option { return func(o *options) { o.istioVersion = v } }

// WithNodeImage runs another kind node image.
func WithNodeImage(img string) Option { return func(o *options) { o.nodeImage = img } }

// WithProgress writes progress (steps, elapsed time) to w (default: stderr).
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// WithCallsTo names the hosts (host:port) the run's calls go to, for the preflight to
// warn about when they do not answer from here.
func WithCallsTo(hostports ...string) Option {
	return func(o *options) { o.callsTo = append(o.callsTo, hostports...) }
}

// WithOffline runs on the node image hack/kind-offline-images.sh built and described in
// the file at path (offline.Images), with the stand-ins for Envoy's process and for the
// internet. Istio's charts and images come as on any run, from the chart repository and
// the registry (offline, a bundle's: WithBundle).
func WithOffline(path string) Option { return func(o *options) { o.offline = path } }

// WithChartRepo downloads Istio's charts from the Helm chart repository at url (a mirror
// of Istio's, such as a company's Artifactory or Nexus proxy) instead of Istio's own.
func WithChartRepo(url string) Option { return func(o *options) { o.chartRepo = url } }

// WithRegistryMirror makes the nodes pull docker.io's images (Istio's) through the
// registry mirror at hostport (host:port, or an http:// or https:// URL), and through
// nothing else.
func WithRegistryMirror(hostport string) Option { return func(o *options) { o.mirror = hostport } }

// WithBundle serves the bundle at path (egresslab bundle) as the chart repository and the
// registry mirror: the run downloads and pulls through the same code as online, from
// servers on this machine, and nothing from the internet.
func WithBundle(path string) Option { return func(o *options) { o.bundle = path } }

// WithDiagnosticsDir puts diagnostics folders under dir.
func WithDiagnosticsDir(dir string) Option { return func(o *options) { o.diagnostics = dir } }

// New returns a Provider; nothing happens until Setup (or Open).
func New(opts ...Option) *Provider {
	o := options{runtime: cluster.Docker, istioVersion: istioinstall.Version, nodeImage: cluster.NodeImage,
		progress: os.Stderr, diagnostics: os.TempDir()}
	for _, opt := range opts {
		opt(&o)
	}
	o.progress = &lockedWriter{w: o.progress}
	return &Provider{o: o}
}

// OptionsFromEnv are the options the EGRESSLAB_* variables above ask for.
func OptionsFromEnv(env backend.Env) []Option {
	var opts []Option
	if v := env(EnvKeep); v != "" {
		keep, err := strconv.ParseBool(v)
		if err != nil {
			bad := fmt.Sprintf("%s=%s: use 1 to keep the cluster, 0 to delete it at the end", EnvKeep, v)
			opts = append(opts, func(o *options) { o.bad = append(o.bad, bad) })
		} else {
			opts = append(opts, WithKeep(keep))
		}
	}
	if p := env(EnvKubeconfig); p != "" {
		opts = append(opts, WithKubeconfig(p))
	}
	if env(EnvRuntime) == string(cluster.Podman) {
		opts = append(opts, WithPodman())
	}
	// The settings that take a value, each to its Option.
	for _, set := range []struct {
		env    string
		option func(string) Option
	}{
		{EnvIstioVersion, WithIstioVersion}, {EnvNodeImage, WithNodeImage}, {EnvDiagnostics, WithDiagnosticsDir},
		{EnvOffline, WithOffline}, {EnvCharts, WithChartRepo}, {EnvRegistryMirror, WithRegistryMirror}, {EnvBundle, WithBundle},
	} {
		if v := env(set.env); v != "" {
			opts = append(opts, set.option(v))
		}
	}
	return opts
}

func init() {
	backend.Register(backend.Registration{
		Name:     "kind",
		Priority: 10, // the real thing, wherever a Docker daemon answers
		Available: func(ctx context.Context, env backend.Env) (bool, string) {
			return New(OptionsFromEnv(env)...).Available(ctx)
		},
		ProviderFor: func(s backend.Settings) (backend.Provider, error) { return providerFor(s), nil },
	})
}

// providerFor is the Provider the settings ask for. Whether the cluster is kept comes
// from, in order of precedence: the command line (s.Keep.Flag), the environment
// (EGRESSLAB_KEEP), the caller's default (s.Keep.ByDefault: the lab and check commands
// keep it, the scenarios do not).
func providerFor(s backend.Settings) *Provider {
	opts := append([]Option{withKeepByDefault(s.Keep.ByDefault)}, OptionsFromEnv(s.Env)...)
	if s.Keep.Flag != nil {
		opts = append(opts, WithKeep(*s.Keep.Flag))
	}
	return New(append(opts, WithProgress(s.Progress), WithCallsTo(s.CallsTo...))...)
}

// Available says quickly whether the backend can run here: the kubeconfig it was given
// exists, or the container runtime's daemon answers.
func (p *Provider) Available(ctx context.Context) (bool, string) {
	if len(p.o.bad) > 0 {
		return false, strings.Join(p.o.bad, "; ")
	}
	if p.o.kubeconfig != "" {
		if _, err := os.Stat(p.o.kubeconfig); err != nil {
			return false, fmt.Sprintf("%s=%s: %v", EnvKubeconfig, p.o.kubeconfig, err)
		}
		return true, "an existing cluster through " + EnvKubeconfig + "=" + p.o.kubeconfig
	}
	return cluster.Available(ctx, p.o.runtime)
}

// Clean deletes the kind cluster earlier runs kept (the lab and check commands keep it;
// the scenarios with EGRESSLAB_KEEP=1), if there is one: all a kind run keeps is in it.
func (p *Provider) Clean(ctx context.Context) (string, error) {
	if ok, why := cluster.Available(ctx, p.o.runtime); !ok {
		return "no kind cluster to delete (" + why + ")", nil
	}
	c := cluster.New(cluster.WithRuntime(p.o.runtime))
	exists, err := c.Exists()
	if err != nil {
		return "", err
	}
	if !exists {
		return "there is no kind cluster " + c.Name(), nil
	}
	if err := c.Delete(); err != nil {
		return "", err
	}
	return "deleted kind cluster " + c.Name(), nil
}

var _ backend.Cleaner = (*Provider)(nil)

func (p *Provider) Name() string { return "kind" }

// Versions are the Istio release a kind run installs and the node image it runs, as
// the settings (EGRESSLAB_ISTIO_VERSION, EGRESSLAB_KIND_IMAGE) leave them.
func (p *Provider) Versions() []string {
	return []string{"Istio release installed: " + p.o.istioVersion, "kind node image: " + p.o.nodeImage}
}

// state is what Setup built.
type state struct {
	cluster  *cluster.Cluster // nil on an existing cluster (WithKubeconfig)
	workDir  string
	backend  *Backend
	kube     kubernetes.Interface
	teardown bool // Finish deletes the cluster
	created  bool // this run created the cluster
	reused   bool // this run found the cluster (kept by an earlier one) and reuses it
	// The bundle's mirrors while the run lasts: their request logs are the evidence
	// that the charts were downloaded and the images pulled through them.
	charts, registry *mirror.Server
}

// stop ends what the run started on this machine (the mirrors) and removes its folder.
func (st *state) stop() {
	mirror.Stop(st.charts, st.registry)
	os.RemoveAll(st.workDir)
}

// Setup builds the cluster and installs Istio, once. The labs' apps come later, when a
// lab applies them (the caller image is built and loaded then). On failure (or Ctrl-C)
// it saves diagnostics and cleans up as the keep setting says.
func (p *Provider) Setup(ctx context.Context) (_ context.Context, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st != nil {
		return ctx, nil
	}
	st, err := p.setup(ctx)
	if err != nil {
		return ctx, err
	}
	p.st = st
	return ctx, nil
}

func (p *Provider) setup(parent context.Context) (st *state, err error) {
	// Ctrl-C stops the waits; what was built is then cleaned up below, as keep says.
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := p.o.progress
	if len(p.o.bad) > 0 {
		return nil, errors.New(strings.Join(p.o.bad, "; "))
	}
	st = &state{}
	st.workDir, err = os.MkdirTemp("", "egresslab-kind-")
	if err != nil {
		return nil, fmt.Errorf("kind backend: work folder: %w", err)
	}
	defer func() {
		if err != nil {
			p.cleanUpFailed(ctx, st, &err)
		}
	}()

	var internetCA struct{ cert, key []byte }
	if p.o.offline != "" {
		images, err := offline.Load(p.o.offline)
		if err != nil {
			return st, err
		}
		if internetCA.cert, internetCA.key, err = images.CA(); err != nil {
			return st, err
		}
		p.o.nodeImage = images.NodeImage
		fmt.Fprintf(w, "▸ offline: node %s (Kubernetes %s) built here; Envoy's process and the internet stood in\n",
			images.NodeImage, images.KubernetesVersion)
	}
	src, err := p.downloads()
	if err != nil {
		return st, err
	}
	var bundle *mirror.Bundle
	if p.o.bundle != "" {
		if bundle, err = p.openBundle(st); err != nil {
			return st, err
		}
		if err := p.loadNodeImage(ctx, bundle); err != nil {
			return st, err
		}
		if st.charts, err = mirror.ServeCharts(bundle, "127.0.0.1:0"); err != nil {
			return st, err
		}
		src.charts, src.bundled = st.charts.URL, true
		fmt.Fprintf(w, "▸ bundle %s: Istio %s's charts served at %s, its images by a registry mirror of docker.io on the kind network\n",
			p.o.bundle, bundle.Istio, st.charts.URL)
	}
	daemon, err := p.preflight(ctx, src)
	if err != nil {
		return st, err
	}
	kubeconfig := p.o.kubeconfig
	if kubeconfig == "" {
		if kubeconfig, err = p.ensureCluster(ctx, st, daemon); err != nil {
			return st, err
		}
	}
	if err := p.pointAtMirror(ctx, st, bundle, src); err != nil {
		return st, err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return st, fmt.Errorf("read kubeconfig %s: %w", kubeconfig, err)
	}
	k, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return st, fmt.Errorf("client for %s: %w", restCfg.Host, err)
	}
	ic, err := istioclient.NewForConfig(restCfg)
	if err != nil {
		return st, fmt.Errorf("Istio client for %s: %w", restCfg.Host, err)
	}
	st.kube = k
	if st.reused {
		sk, sic, err := sweepClients(restCfg)
		if err != nil {
			return st, fmt.Errorf("client for %s: %w", restCfg.Host, err)
		}
		if err := startClean(ctx, w, st.cluster.Name(), sk, sic, p.o.keep); err != nil {
			return st, err
		}
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	ns := istioinstall.Namespace
	flags.Namespace = &ns
	pullsFrom := src.pullsFrom(st.registry)
	inst, err := istioinstall.New(flags, k, istioinstall.WithVersion(p.o.istioVersion), istioinstall.WithProgress(w),
		istioinstall.WithCharts(istioinstall.FromRepo(src.charts, istioinstall.DefaultHelmDir())), istioinstall.WithPullsFrom(pullsFrom))
	if err != nil {
		return st, err
	}
	b := newBackend(k, ic, inst, podExec{cfg: restCfg, kube: k}, w)
	b.version = p.o.istioVersion
	b.pullsFrom = pullsFrom
	b.diagnose = func(ctx context.Context, why string) string { return p.diagnose(ctx, st, why) }
	st.backend = b

	if st.cluster != nil {
		b.loadImage = st.cluster.LoadImage
	}
	b.workDir = st.workDir
	b.typedAt = backend.TypedTarget{Kubeconfig: kubeconfig, ChartRepo: src.charts}
	if p.o.offline != "" {
		b.offline, b.internetCA = true, internetCA
	}
	// The labs' own hosts on every run (its databases: no public server stands behind
	// them); offline, the public hosts too, and the client then trusts the stand-in's CA
	// as it trusts the real sites' roots online.
	switch in, err := b.startInternet(ctx); {
	case err != nil && b.offline:
		return st, err
	case err != nil:
		fmt.Fprintf(w, "  warning: %v: the tcp-egress lab's databases will not answer\n", err)
	case b.offline:
		b.imageOptions = append(b.imageOptions, appimage.WithCABundle(in.caFile))
	}

	values, err := manifest.LoadMeshValues()
	if err != nil {
		return st, err
	}
	if err := b.InstallMesh(ctx, values); err != nil {
		return st, fmt.Errorf("install Istio %s: %w", p.o.istioVersion, err)
	}
	return st, nil
}

func (p *Provider) preflight(ctx context.Context, src downloads) (d *cluster.Daemon, err error) {
	done := step(p.o.progress, "preflight")
	var warnings []string
	// Docker pulls kind's node image unless it was built here or a bundle gave it.
	nodeImagePulled := p.o.offline == "" && p.o.nodeImage == cluster.NodeImage
	needs := src.endpoints(nodeImagePulled)
	if p.o.offline == "" {
		// Offline the calls go to the stand-in internet: none is tried.
		for _, hp := range p.o.callsTo {
			needs = append(needs, cluster.CallEndpoint(hp))
		}
	}
	if p.o.kubeconfig != "" {
		// An existing cluster: no container runtime needed here.
		warnings, err = cluster.CheckReachable(ctx, needs, 5*time.Second, nil)
	} else {
		d, warnings, err = cluster.Preflight(ctx, p.o.runtime, needs)
	}
	done(err)
	for _, w := range warnings {
		fmt.Fprintf(p.o.progress, "  warning: %s\n", w)
	}
	if d != nil && d.CgroupV1() && err == nil {
		fmt.Fprintf(p.o.progress, "  the %s host runs cgroup v1: the node's kubelet is configured with failCgroupV1: false\n", d.Runtime)
	}
	return d, err
}

// ensureCluster creates the kind cluster, or reuses it when it exists, and returns a
// kubeconfig file for it.
func (p *Provider) ensureCluster(ctx context.Context, st *state, d *cluster.Daemon) (string, error) {
	w := p.o.progress
	opts := []cluster.Option{cluster.WithNodeImage(p.o.nodeImage), cluster.WithRuntime(p.o.runtime),
		cluster.WithCgroupV1(d.CgroupV1()), cluster.WithProgress(w), cluster.WithRetain(p.o.keep && p.o.keepAsked)}
	if p.o.offline != "" {
		opts = append(opts, cluster.WithoutDefaultCNI())
	}
	c := cluster.New(opts...)
	st.cluster = c
	exists, err := c.Exists()
	if err != nil {
		return "", err
	}
	st.teardown = !p.o.keep
	// A cluster that exists is reused, kept or not; Setup clears what earlier runs left
	// on it (startClean) once it can reach its API.
	st.reused = exists
	if !exists {
		done := step(w, "create kind cluster "+c.Name()+" ("+p.o.nodeImage+")")
		finished, err := c.Create(ctx)
		done(err)
		st.created = err == nil
		if err != nil {
			if !p.o.keepAsked {
				// A cluster that did not come up is no use to the next run; kept only when
				// asked (EGRESSLAB_KEEP=1, -keep), with kind's node retained to look into.
				st.teardown = true
			}
			if finished != nil && ctx.Err() != nil && st.teardown {
				// kind cannot be interrupted: let it finish, then take away what it made.
				fmt.Fprintf(w, "  waiting for kind to finish, to delete the cluster it is creating\n")
				<-finished
			}
			return "", err
		}
	}
	cfg, err := c.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(st.workDir, "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// cleanUpFailed runs when Setup fails: diagnostics first (while the cluster exists),
// then the cluster goes unless it is kept.
func (p *Provider) cleanUpFailed(ctx context.Context, st *state, err *error) {
	if st.kube != nil {
		if dir := p.diagnose(ctx, st, (*err).Error()); dir != "" {
			*err = fmt.Errorf("%w\n  diagnostics: %s", *err, dir)
		}
	}
	if st.cluster != nil && st.teardown {
		if derr := p.deleteCluster(st); derr != nil {
			*err = errors.Join(*err, derr)
		}
	} else if st.cluster != nil {
		fmt.Fprintf(p.o.progress, "  %s\n", keptMessage(st.cluster.Name()))
	}
	st.stop()
}

func (p *Provider) diagnose(ctx context.Context, st *state, why string) string {
	var extra func(string) error
	if st.cluster != nil {
		extra = st.cluster.CollectLogs
	}
	namespaces := []string{istioinstall.Namespace}
	if st.backend != nil {
		namespaces = append(namespaces, st.backend.namespaces()...)
	}
	dir, err := Diagnose(ctx, st.kube, p.o.diagnostics, why, namespaces, extra)
	if err != nil {
		fmt.Fprintf(p.o.progress, "  could not save diagnostics: %v\n", err)
		return ""
	}
	return dir
}

func (p *Provider) deleteCluster(st *state) error {
	done := step(p.o.progress, "delete kind cluster "+st.cluster.Name())
	err := st.cluster.Delete()
	done(err)
	return err
}

// Finish deletes the cluster unless it is kept (or was not made by kind), and says
// when it is kept and how to delete it.
func (p *Provider) Finish(ctx context.Context) (context.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	if st == nil {
		return ctx, nil
	}
	p.st = nil
	defer st.stop()
	if st.cluster != nil && st.teardown {
		return ctx, p.deleteCluster(st)
	}
	if st.cluster != nil {
		fmt.Fprintf(p.o.progress, "▸ %s\n", keptMessage(st.cluster.Name()))
	}
	return ctx, nil
}

// keptMessage says that the cluster is kept, how to look at it and how to delete it.
func keptMessage(name string) string {
	return fmt.Sprintf("kind cluster %s is kept: the next run reuses it, cleared of what this one left "+
		"(kubectl --context kind-%s get pods -A). Delete it with: egresslab clean. "+
		"Not to keep it: -keep=false, or %s=0", name, name, EnvKeep)
}

// Open gives the shared Backend. Without a Lifecycle caller (the CLI), the first Open
// sets up itself, and its release finishes.
func (p *Provider) Open(ctx context.Context) (backend.Backend, func(), error) {
	p.mu.Lock()
	ready := p.st != nil
	p.mu.Unlock()
	release := func() {}
	if !ready {
		if _, err := p.Setup(ctx); err != nil {
			return nil, nil, err
		}
		// No Lifecycle caller ran Setup (the CLI): this Open owns the cluster's lifetime.
		release = func() {
			if _, err := p.Finish(context.WithoutCancel(ctx)); err != nil {
				fmt.Fprintf(p.o.progress, "kind backend: %v\n", err)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.backend, release, nil
}

var _ backend.Lifecycle = (*Provider)(nil)

// lockedWriter serializes progress written by steps' tickers and the steps themselves.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
