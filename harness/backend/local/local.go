// Package local is the local backend: a real kube-apiserver, etcd and istiod run as
// processes on this machine (internal/controlplane), so everything that faces the cluster
// runs for real: manifests and CRDs are applied to the API server, istiod reads them
// with the mesh config from manifests/istio/values.yaml and generates the client
// sidecar's configuration. Only the data plane is stood in: the client pod is created
// as a kubelet would leave it (Running, Ready, with an IP; no container runs), and a
// stand-in sidecar with that pod's identity connects to istiod over xDS (ADS) and
// keeps the listeners, routes and clusters istiod pushes. Istio's simulator judges
// each call on exactly that configuration, as on sim.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/local/internal/controlplane"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/kube"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Name is the backend's name on the command line.
const Name = "local"

// applier applies manifest sets to the API server: harness/kube's Applier.
type applier interface {
	Apply(ctx context.Context, set *manifest.Set) error
	Delete(ctx context.Context, set *manifest.Set) error
}

// Config is the local backend's configuration.
type Config struct {
	// BinDir holds the control plane's binaries (default: .cache/bin of the checkout).
	BinDir string
	// LogsDir, when set, keeps a copy of every program's log when the control plane stops.
	LogsDir string
}

// ConfigFromEnv reads EGRESSLAB_BIN and EGRESSLAB_LOCALCP_LOGS.
func ConfigFromEnv(env backend.Env) Config {
	return Config{BinDir: env(controlplane.BinDirEnv), LogsDir: env(controlplane.LogsEnv)}
}

func init() {
	backend.Register(backend.Registration{
		Name: Name,
		// Below sim: "auto" picks a real cluster when Docker answers and sim otherwise, so
		// the lab stays sub-second offline; local runs when asked for (-backend=local).
		Priority:  -1,
		Available: func(_ context.Context, env backend.Env) (bool, string) { return Available(ConfigFromEnv(env)) },
		Provider: func(env backend.Env, progress io.Writer, _ []string) (backend.Provider, error) {
			return New(ConfigFromEnv(env), progress), nil
		},
	})
}

// Available says whether the binaries are built, and if not, how to build them.
func Available(cfg Config) (bool, string) {
	if _, err := controlplane.FindBinaries(cfg.BinDir); err != nil {
		return false, err.Error()
	}
	return true, "etcd, kube-apiserver " + controlplane.KubeVersion + " and istiod are built (" + controlplane.BuildCommand + ")"
}

// Provider starts the local control plane. Under the scenarios, Setup starts it once
// and Finish stops it, and every Open shares it; without Setup, each Open starts its
// own and its release stops it.
type Provider struct {
	cfg Config
	// progress receives the control plane's progress lines; nil discards them.
	progress io.Writer

	mu     sync.Mutex
	shared *env // started by Setup
}

// New returns a provider that reports progress to w.
func New(cfg Config, w io.Writer) *Provider { return &Provider{cfg: cfg, progress: w} }

func (p *Provider) Name() string { return Name }

// Versions is the kube-apiserver the local control plane runs (istiod is built from
// the Istio library the binary links).
func (p *Provider) Versions() []string {
	return []string{"kube-apiserver: " + controlplane.KubeVersion}
}

// Setup starts the control plane the scenarios share.
func (p *Provider) Setup(ctx context.Context) (context.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shared != nil {
		return ctx, nil
	}
	e, err := start(ctx, p.cfg, p.progress, true)
	if err != nil {
		return ctx, err
	}
	p.shared = e
	return ctx, nil
}

// Finish stops the shared control plane and removes its folder.
func (p *Provider) Finish(ctx context.Context) (context.Context, error) {
	p.mu.Lock()
	e := p.shared
	p.shared = nil
	p.mu.Unlock()
	if e == nil {
		return ctx, nil
	}
	return ctx, e.stop()
}

func (p *Provider) Open(ctx context.Context) (backend.Backend, func(), error) {
	p.mu.Lock()
	e := p.shared
	p.mu.Unlock()
	if e != nil {
		return &Backend{env: e}, func() {}, nil
	}
	e, err := start(ctx, p.cfg, p.progress, false)
	if err != nil {
		return nil, nil, err
	}
	return &Backend{env: e}, func() { _ = e.stop() }, nil
}

// env is one running control plane and what the backend keeps about it.
type env struct {
	cp      *controlplane.ControlPlane
	applier applier

	mu       sync.Mutex
	mesh     manifest.MeshValues
	sidecars map[backend.Workload]*dataplane.Sidecar
	// accessLogs are the lines each workload's sidecar would have written so far.
	accessLogs dataplane.AccessLogs
}

func start(ctx context.Context, cfg Config, progress io.Writer, stopOnSignal bool) (*env, error) {
	mv, err := manifest.LoadMeshValues()
	if err != nil {
		return nil, err
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Mesh: mv, Progress: progress, StopOnSignal: stopOnSignal,
		BinDir: cfg.BinDir, LogsDir: cfg.LogsDir})
	if err != nil {
		return nil, err
	}
	return &env{cp: cp, applier: kube.NewApplier(cp.Kube, cp.Istio), mesh: mv, sidecars: map[backend.Workload]*dataplane.Sidecar{}}, nil
}

func (e *env) stop() error {
	e.mu.Lock()
	for w, s := range e.sidecars {
		s.Close()
		delete(e.sidecars, w)
	}
	e.mu.Unlock()
	return e.cp.Stop()
}

// Backend is the local backend, open on one control plane.
type Backend struct{ env *env }

// ControlPlane is the running control plane, for tests and tools.
func (b *Backend) ControlPlane() *controlplane.ControlPlane { return b.env.cp }

func (b *Backend) Name() string { return Name }

func (b *Backend) Describe() string {
	return "local control plane: a real kube-apiserver " + controlplane.KubeVersion + ", etcd and istiod run as processes on this " +
		"machine; the lab's manifests are applied to the API server and istiod generates the client sidecar's config from " +
		"them, as in a cluster. A stand-in sidecar with the client pod's identity receives that config over xDS, and " +
		"Istio's simulator matches each call against it: a verdict says where the sidecar would send the call " +
		"and how long istiod took to tell it, not whether the host at the other end answers (no Envoy runs, nothing leaves this machine)."
}

func (b *Backend) InstallMesh(ctx context.Context, values manifest.MeshValues) error {
	if values.Mesh == nil {
		return errors.New("install mesh: values carry no mesh config")
	}
	e := b.env
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.cp.SetMesh(ctx, values); err != nil {
		return fmt.Errorf("install mesh: %w", err)
	}
	e.mesh = values
	return nil
}

// Apply applies the set to the API server; for each Deployment it also creates the
// pod its ReplicaSet, the scheduler and the kubelet would have produced.
func (b *Backend) Apply(ctx context.Context, set *manifest.Set) error {
	if err := b.env.applier.Apply(ctx, set); err != nil {
		return err
	}
	for _, o := range set.Objects {
		if d, ok := o.Kube.(*appsv1.Deployment); ok {
			if err := b.env.runPod(ctx, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete deletes the set; a Deployment's pod goes with it, and a namespace is
// finalized as the namespace controller (not running here) would.
func (b *Backend) Delete(ctx context.Context, set *manifest.Set) error {
	for _, o := range set.Objects {
		if d, ok := o.Kube.(*appsv1.Deployment); ok {
			if err := b.env.deletePod(ctx, d.Namespace, d.Name); err != nil {
				return err
			}
		}
	}
	if err := b.env.applier.Delete(ctx, set); err != nil {
		return err
	}
	for _, o := range set.Objects {
		if ns, ok := o.Kube.(*corev1.Namespace); ok {
			if err := b.env.finalizeNamespace(ctx, ns.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *Backend) Sidecar(ctx context.Context, w backend.Workload) (backend.SidecarStatus, error) {
	injected, rule, err := b.env.injection(ctx, w)
	if err != nil {
		return backend.SidecarStatus{}, err
	}
	if !injected {
		return backend.SidecarStatus{Pod: w.Namespace + "/" + podName(w.Name), Rule: rule}, nil
	}
	s, pod, err := b.env.sidecar(ctx, w)
	if err != nil {
		return backend.SidecarStatus{}, err
	}
	return backend.SidecarStatus{Pod: pod.Namespace + "/" + pod.Name, Injected: true, Rule: rule,
		Proxy: fmt.Sprintf("a stand-in (no Envoy runs; the pod is Running with IP %s as a kubelet would report it) connected "+
			"to istiod as %s, holding %s", pod.Status.PodIP, s.ID(), s.Summary())}, nil
}

func (b *Backend) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	s, dialled, r, pod, err := b.simulate(ctx, w, c)
	if err != nil {
		return outcome.Verdict{}, err
	}
	now := time.Now()
	b.env.accessLogs.Add(w, now, dataplane.AccessLogLines(s, dialled, r, now))
	return dataplane.FollowToGateway(dataplane.JudgeIn(s, r, c.Host()), s, dataplane.Principal(pod), c,
		func(host string, port int) (dataplane.Gateway, bool, error) {
			return b.env.gatewayBehind(ctx, host, port)
		},
		func(gw backend.Workload) (*simulation.Simulation, error) {
			sc, _, err := b.env.sidecar(ctx, gw)
			if err != nil {
				return nil, err
			}
			s, _, err := sc.Simulation()
			return s, err
		})
}

// SidecarAccessLog is what w's sidecar would have written to its access log for the
// calls made from it so far, on the config istiod pushed it, as far as that config
// decides each line (dataplane.AccessLogLines): no proxy runs here.
func (b *Backend) SidecarAccessLog(ctx context.Context, w backend.Workload, since time.Time) (string, error) {
	if _, _, err := b.env.sidecar(ctx, w); err != nil {
		return "", err
	}
	return b.env.accessLogs.Since(w, since), nil
}

// gatewayBehind finds the egress gateway pod behind an in-mesh Service, as the API
// server holds them.
func (e *env) gatewayBehind(ctx context.Context, host string, port int) (dataplane.Gateway, bool, error) {
	svcs, err := e.cp.Kube.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return dataplane.Gateway{}, false, fmt.Errorf("list services: %w", err)
	}
	pods, err := e.cp.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return dataplane.Gateway{}, false, fmt.Errorf("list pods: %w", err)
	}
	var services []*corev1.Service
	for i := range svcs.Items {
		services = append(services, &svcs.Items[i])
	}
	byWorkload := map[backend.Workload]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if deployment, ok := deploymentOf(p.Name); ok {
			byWorkload[backend.Workload{Namespace: p.Namespace, Name: deployment}] = p
		}
	}
	gw, ok := dataplane.GatewayBehind(host, port, services, byWorkload)
	return gw, ok, nil
}

func (b *Backend) SidecarConfig(ctx context.Context, w backend.Workload, c backend.Call) (string, error) {
	s, _, r, _, err := b.simulate(ctx, w, c)
	if err != nil {
		return "", err
	}
	return dataplane.Dump(s, r)
}

// simulate matches the call against the configuration the workload's stand-in
// sidecar holds right now (the latest istiod pushed), and the workload's pod.
func (b *Backend) simulate(ctx context.Context, w backend.Workload, c backend.Call) (*simulation.Simulation, backend.Call, simulation.Result, *corev1.Pod, error) {
	sc, pod, err := b.env.sidecar(ctx, w)
	if err != nil {
		return nil, c, simulation.Result{}, nil, err
	}
	s, _, err := sc.Simulation()
	if err != nil {
		return nil, c, simulation.Result{}, nil, err
	}
	// The app dials through its sidecar's DNS proxy, when it captures DNS.
	c = sc.Names().Dial(c)
	r, err := dataplane.Simulate(s, c)
	return s, c, r, pod, err
}

// injection reads the workload's Deployment and namespace from the API server and says
// whether Istio's injector would give its pods a sidecar, and by which rule.
func (e *env) injection(ctx context.Context, w backend.Workload) (bool, string, error) {
	ns, err := e.cp.Kube.CoreV1().Namespaces().Get(ctx, w.Namespace, metav1.GetOptions{})
	if err != nil {
		return false, "", fmt.Errorf("workload %s: namespace %s: %w", w, w.Namespace, err)
	}
	d, err := e.cp.Kube.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if err != nil {
		return false, "", fmt.Errorf("workload %s: no Deployment %s in namespace %s on the API server: %w", w, w.Name, w.Namespace, err)
	}
	injected, rule := dataplane.Injection(ns, d.Spec.Template.Labels)
	return injected, rule, nil
}

// sidecar returns the workload's connected stand-in sidecar, connecting it first when
// needed, once its pod runs and Istio would inject it.
func (e *env) sidecar(ctx context.Context, w backend.Workload) (*dataplane.Sidecar, *corev1.Pod, error) {
	pod, err := e.cp.Kube.CoreV1().Pods(w.Namespace).Get(ctx, podName(w.Name), metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("workload %s has no pod: apply its Deployment (labs/apps/) first", w)
		}
		return nil, nil, fmt.Errorf("workload %s: %w", w, err)
	}
	e.mu.Lock()
	s := e.sidecars[w]
	if s != nil && s.Ended() {
		// istiod closed the stream (restarted, or closed an old connection as it does
		// every 30 minutes): reconnect, as Envoy would.
		s.Close()
		delete(e.sidecars, w)
		s = nil
	}
	e.mu.Unlock()
	if s != nil {
		return s, pod, nil
	}
	if injected, rule, err := e.injection(ctx, w); err != nil {
		return nil, nil, err
	} else if !injected {
		return nil, nil, fmt.Errorf("workload %s would run without an istio-proxy sidecar: %s", w, rule)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.sidecars[w]; s != nil {
		return s, pod, nil
	}
	s, err = dataplane.ConnectAgent(e.cp.XDSAddress, dataplane.NodeFor(pod))
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.WaitConfig(wctx); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("workload %s: %w", w, err)
	}
	if err := s.WaitSettled(wctx, settle); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("workload %s: %w", w, err)
	}
	e.sidecars[w] = s
	return s, pod, nil
}

// settle is how long a newly connected sidecar's config must go without a push before
// the pod counts as started.
const settle = time.Second

func podName(deployment string) string { return deployment + "-local" }

// deploymentOf is the Deployment whose pod podName named pod, if it named it.
func deploymentOf(pod string) (string, bool) { return strings.CutSuffix(pod, podName("")) }

// runPod creates the Deployment's pod as the ReplicaSet controller, the scheduler and
// the kubelet would leave it: the template's labels and spec, status Running and Ready
// with a pod IP. An existing pod whose labels differ is replaced, and its sidecar
// reconnects with the new identity.
func (e *env) runPod(ctx context.Context, d *appsv1.Deployment) error {
	// The server's copy: its template as applied, and its UID for the owner reference.
	applied, err := e.cp.Kube.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	d = applied
	pods := e.cp.Kube.CoreV1().Pods(d.Namespace)
	want := podFor(d)
	have, err := pods.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case err == nil && sameLabels(have.Labels, want.Labels) && have.Status.Phase == corev1.PodRunning:
		return nil
	case err == nil:
		if err := e.deletePod(ctx, d.Namespace, d.Name); err != nil {
			return err
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("pod %s/%s: %w", want.Namespace, want.Name, err)
	}
	ip, err := e.freePodIP(ctx)
	if err != nil {
		return err
	}
	want.Status.PodIP, want.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	status := want.Status
	created, err := pods.Create(ctx, want, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s for Deployment %s: %w", want.Namespace, want.Name, d.Name, err)
	}
	created.Status = status
	now := metav1.Now()
	created.Status.StartTime = &now
	for i := range created.Status.Conditions {
		created.Status.Conditions[i].LastTransitionTime = now
	}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark pod %s/%s running: %w", want.Namespace, want.Name, err)
	}
	return nil
}

func (e *env) deletePod(ctx context.Context, namespace, deployment string) error {
	w := backend.Workload{Namespace: namespace, Name: deployment}
	e.mu.Lock()
	if s := e.sidecars[w]; s != nil {
		s.Close()
		delete(e.sidecars, w)
	}
	e.mu.Unlock()
	zero := int64(0)
	err := e.cp.Kube.CoreV1().Pods(namespace).Delete(ctx, podName(deployment), metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, podName(deployment), err)
	}
	return nil
}

// finalizeNamespace removes a deleted namespace's "kubernetes" finalizer, which the
// namespace controller of kube-controller-manager would remove after emptying it.
func (e *env) finalizeNamespace(ctx context.Context, name string) error {
	ns, err := e.cp.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp == nil {
		return nil
	}
	ns.Spec.Finalizers = nil
	if _, err := e.cp.Kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	return nil
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// freePodIP is the first free address from dataplane.FirstPodIP on, as a node's IPAM
// would hand out: istiod tells sidecars apart by their pod's IP.
func (e *env) freePodIP(ctx context.Context) (string, error) {
	pods, err := e.cp.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list pods: %w", err)
	}
	used := map[string]bool{}
	for _, p := range pods.Items {
		used[p.Status.PodIP] = true
	}
	return dataplane.NextPodIP(func(ip string) bool { return used[ip] }), nil
}

// podFor is d's pod as a kubelet would report it, before freePodIP gives it its address.
func podFor(d *appsv1.Deployment) *corev1.Pod {
	return dataplane.PodFor(d, podName(d.Name), dataplane.FirstPodIP)
}
