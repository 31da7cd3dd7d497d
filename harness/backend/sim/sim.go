// Package sim is the offline backend: Istio's own control-plane code generates the
// client sidecar's configuration from the objects the lab applies, and Istio's
// Envoy-matching simulator decides where a call would go. Nothing leaves the machine.
//
// What it can tell you: which listener, filter chain, route, virtual host and cluster
// the sidecar would pick, exactly as istiod would configure it. What it cannot: whether
// the upstream answers, DNS, real Envoy behaviour beyond matching, or timing.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	meshconfig "istio.io/api/mesh/v1alpha1"
	apiv1 "istio.io/api/networking/v1"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube/krt"
	istiolog "istio.io/istio/pkg/log"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Backend is the sim backend. Applying objects records them; the next call builds a
// fresh Istio control plane from everything recorded and simulates the call on it.
type Backend struct {
	mu      sync.Mutex
	mesh    *meshconfig.MeshConfig
	objects []manifest.Object // applied, in order; later applies replace by kind/namespace/name
	world   *world            // built from objects; nil when objects changed since
	// lastCreated is the creation time given to the object applied last.
	lastCreated time.Time
	// addresses are the ones istiod's IP auto-allocation gives the ServiceEntries.
	addresses addressBook
	// accessLogs are the lines each workload's sidecar would have written so far.
	accessLogs dataplane.AccessLogs
}

// Option configures a Backend.
type Option func(*Backend)

// WithMesh starts the backend with Istio already installed with these values.
func WithMesh(values manifest.MeshValues) Option {
	return func(b *Backend) { b.mesh = values.Mesh }
}

// New returns an empty sim backend: no mesh installed, no objects. Close it when done.
// Istio's own logging stays off (Config.IstioLog turns it on).
func New(opts ...Option) *Backend {
	b := &Backend{}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Close stops the control plane the backend started, if any.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropWorld()
	b.addresses.close()
}

// dropWorld stops the control plane built for the previous state; the next call builds
// one for the new state. Callers hold b.mu.
func (b *Backend) dropWorld() {
	if b.world != nil {
		b.world.failer.close()
		b.world = nil
	}
}

// Config is the sim backend's configuration.
type Config struct {
	// IstioLog is the level of istiod's own logging on stderr (debug, info, warn, error);
	// "" keeps it out of the lab's narration.
	IstioLog string
}

// EnvIstioLog sets Config.IstioLog.
const EnvIstioLog = "EGRESSLAB_ISTIO_LOG"

func init() {
	backend.Register(backend.Registration{
		Name:      "sim",
		Priority:  0, // the fallback: it runs anywhere Go does
		Available: func(context.Context, backend.Env) (bool, string) { return true, "needs nothing but Go" },
		Provider: func(env backend.Env, _ io.Writer, _ []string) (backend.Provider, error) {
			return NewProvider(Config{IstioLog: env(EnvIstioLog)}), nil
		},
	})
}

// Provider gives each test its own fresh sim backend.
type Provider struct{}

// NewProvider configures Istio's logging for the process and returns the provider.
func NewProvider(cfg Config) Provider {
	setIstioLogs(cfg.IstioLog)
	return Provider{}
}

func (Provider) Name() string { return "sim" }

func (Provider) Open(context.Context) (backend.Backend, func(), error) {
	b := New()
	return b, b.Close, nil
}

func (b *Backend) Name() string { return "sim" }

// Instant: each call is computed from everything applied so far; nothing propagates.
func (b *Backend) Instant() bool { return true }

func (b *Backend) Describe() string {
	return "offline simulator: Istio's real control-plane code (istiod's config generator) builds the client " +
		"sidecar's listeners, routes and clusters from the lab's manifests; Envoy's matching of each call is " +
		"simulated by Istio's own simulator. Nothing leaves this machine: a verdict says where the sidecar " +
		"would send the call, not whether the host at the other end answers."
}

func (b *Backend) InstallMesh(_ context.Context, values manifest.MeshValues) error {
	if values.Mesh == nil {
		return errors.New("install mesh: values carry no mesh config")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mesh = values.Mesh
	b.dropWorld()
	return nil
}

// Apply records the set. As an API server would, it refuses objects in a namespace that
// does not exist, with the words every backend uses (manifest.Set.CheckNamespaces).
func (b *Backend) Apply(_ context.Context, set *manifest.Set) error {
	b.mu.Lock()
	err := set.CheckNamespaces(func(ns string) (bool, error) {
		if slices.Contains(manifest.SystemNamespaces, ns) {
			return true, nil
		}
		return slices.ContainsFunc(b.objects, func(o manifest.Object) bool { return o.Kind == "Namespace" && o.Name == ns }), nil
	})
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.change(set, true)
	return nil
}

func (b *Backend) Delete(_ context.Context, set *manifest.Set) error {
	b.change(set, false)
	return nil
}

// change removes the set's objects from what is applied and, to apply them, adds them
// back at the end: a re-applied object replaces the old one, as `kubectl apply` does.
//
// Each Istio object keeps the time it was first applied as its creation time, as an API
// server stamps it: istiod orders services by it where two conflict (of two TCP entries
// on one port without addresses, the older one's filter chain wins), so the world
// rebuilt after every change must not make them all as old as each other.
func (b *Backend) change(set *manifest.Set, apply bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range set.Objects {
		created := b.now()
		if i := slices.IndexFunc(b.objects, func(have manifest.Object) bool { return sameObject(have, o) }); i >= 0 {
			if old := b.objects[i].Istio; old != nil {
				created = old.CreationTimestamp
			}
			b.objects = slices.Delete(b.objects, i, i+1)
		}
		if apply {
			if o.Istio != nil && o.Istio.CreationTimestamp.IsZero() {
				c := *o.Istio // the set is the caller's: stamp a copy
				c.CreationTimestamp = created
				o.Istio = &c
			}
			b.objects = append(b.objects, o)
		}
		if o.Istio != nil {
			b.addresses.record(*o.Istio, !apply)
		}
	}
	b.dropWorld()
}

// now is the creation time of an object applied now: strictly after every earlier one's,
// however quickly sim applies them.
func (b *Backend) now() time.Time {
	t := time.Now()
	if !t.After(b.lastCreated) {
		t = b.lastCreated.Add(time.Nanosecond)
	}
	b.lastCreated = t
	return t
}

func sameObject(a, b manifest.Object) bool {
	return a.Kind == b.Kind && a.Namespace == b.Namespace && a.Name == b.Name
}

func (b *Backend) Sidecar(_ context.Context, w backend.Workload) (backend.SidecarStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pod, ns, err := b.workloadPod(w)
	if err != nil {
		return backend.SidecarStatus{}, err
	}
	injected, rule := dataplane.Injection(ns, pod.Labels)
	s := backend.SidecarStatus{Pod: pod.Namespace + "/" + pod.Name, Injected: injected, Rule: rule}
	if injected {
		s.Proxy = "simulated: istiod's config generator builds its configuration in process"
	}
	return s, nil
}

func (b *Backend) Call(_ context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	sim, err := b.Simulation(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	c = b.Dialled(w, c)
	r, err := dataplane.Simulate(sim, c)
	if err != nil {
		return outcome.Verdict{}, err
	}
	now := time.Now()
	b.accessLogs.Add(w, now, dataplane.AccessLogLines(sim, c, r, now))
	caller, err := b.Principal(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	return dataplane.FollowToGateway(dataplane.JudgeIn(sim, r, c.Host()), sim, caller, c, b.GatewayBehind, b.Simulation)
}

// SidecarAccessLog is what w's sidecar would have written to its access log for the
// calls made from it so far, as far as its config decides each line
// (dataplane.AccessLogLines): no proxy runs here.
func (b *Backend) SidecarAccessLog(_ context.Context, w backend.Workload, since time.Time) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.workload(w); err != nil {
		return "", err
	}
	return b.accessLogs.Since(w, since), nil
}

// Principal is the identity the workload's sidecar proves with its certificate
// (dataplane.Principal of the pod its Deployment runs).
func (b *Backend) Principal(w backend.Workload) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pod, _, err := b.workloadPod(w)
	if err != nil {
		return "", err
	}
	return dataplane.Principal(pod), nil
}

// GatewayBehind finds the egress gateway pod behind an in-mesh Service, among what is
// applied.
func (b *Backend) GatewayBehind(host string, port int) (dataplane.Gateway, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var services []*corev1.Service
	for _, o := range b.objects {
		if s, ok := o.Kube.(*corev1.Service); ok {
			services = append(services, s)
		}
	}
	gw, ok := dataplane.GatewayBehind(host, port, services, b.pods())
	return gw, ok, nil
}

// SidecarConfig is the part of the sidecar's configuration that decided the call.
func (b *Backend) SidecarConfig(_ context.Context, w backend.Workload, c backend.Call) (string, error) {
	sim, err := b.Simulation(w)
	if err != nil {
		return "", err
	}
	r, err := dataplane.Simulate(sim, b.Dialled(w, c))
	if err != nil {
		return "", err
	}
	return dataplane.Dump(sim, r)
}

// Dialled is the call as w's app makes it: through its sidecar's DNS proxy, when it
// captures DNS (dataplane.Names.Dial). Simulation(w) has built the world.
func (b *Backend) Dialled(w backend.Workload, c backend.Call) backend.Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.world == nil {
		return c
	}
	return b.world.names[w].Dial(c)
}

// world is one state of the cluster: an Istio control plane built from the applied
// objects, and the simulated sidecar of each workload asked about so far.
type world struct {
	failer  *failer // stops this world's control plane when closed
	server  *xds.FakeDiscoveryServer
	proxies map[backend.Workload]*simulation.Simulation
	// names is the DNS name table of each of those sidecars that captures DNS.
	names map[backend.Workload]*dataplane.Names
}

// Simulation is the config istiod would push to the workload's sidecar, for Istio's simulator.
func (b *Backend) Simulation(w backend.Workload) (_ *simulation.Simulation, err error) {
	defer recoverFailure("generate the sidecar's config for "+w.String(), &err)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mesh == nil {
		return nil, errors.New("no mesh installed: install Istio (InstallMesh) before making calls")
	}
	pod, err := b.workload(w)
	if err != nil {
		return nil, err
	}
	if b.world == nil {
		if b.world, err = b.build(); err != nil {
			return nil, err
		}
	}
	if s, ok := b.world.proxies[w]; ok {
		return s, nil
	}
	// As simulation.NewSimulation does, minus its *testing.T: the config istiod would
	// push to this pod's sidecar.
	proxy := b.world.server.SetupProxy(dataplane.ProxyFor(pod))
	listeners := b.world.server.Listeners(proxy)
	s := &simulation.Simulation{
		Listeners: listeners,
		Clusters:  b.world.server.Clusters(proxy),
		Routes:    b.world.server.RoutesFromListeners(proxy, listeners),
	}
	b.world.proxies[w] = s
	if proxy.Metadata.DNSCapture {
		// What istiod's NDS would send this sidecar's agent (pilot/pkg/xds/nds.go).
		b.world.names[w] = dataplane.NewNames(b.world.server.ConfigGen.BuildNameTable(proxy, b.world.server.PushContext()))
	}
	return s, nil
}

// build starts Istio's config generator on everything applied: Istio objects as
// istiod's config store would hold them, Kubernetes objects (and the pods a
// Deployment would have) as its Kubernetes registry would see them.
func (b *Backend) build() (_ *world, err error) {
	f := &failer{}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	defer recoverFailure("start Istio's control plane", &err)
	// A ServiceEntry's status holds the addresses istiod allocated for it, which only a
	// sidecar that captures DNS uses.
	pods := b.pods()
	var statuses map[string]*apiv1.ServiceEntryStatus
	if slices.ContainsFunc(slices.Collect(maps.Values(pods)), dataplane.CapturesDNS) {
		if statuses, err = b.addresses.statuses(); err != nil {
			return nil, err
		}
	}
	var configs []config.Config
	var kube []runtime.Object
	for _, o := range b.objects {
		switch {
		case o.Istio != nil:
			c := *o.Istio
			if st, ok := statuses[c.Namespace+"/"+c.Name]; ok && c.GroupVersionKind == gvk.ServiceEntry {
				c.Status = st
			}
			configs = append(configs, c)
		case o.Kube != nil:
			kube = append(kube, o.Kube.DeepCopyObject())
		}
	}
	for _, pod := range pods {
		kube = append(kube, pod)
	}
	s := xds.NewFakeDiscoveryServer(f, xds.FakeOptions{
		Configs:           configs,
		KubernetesObjects: kube,
		MeshConfig:        b.mesh,
	})
	return &world{failer: f, server: s, proxies: map[backend.Workload]*simulation.Simulation{},
		names: map[backend.Workload]*dataplane.Names{}}, nil
}

// workloadPod finds the Deployment w and its namespace, and returns the pod it would run.
func (b *Backend) workloadPod(w backend.Workload) (*corev1.Pod, *corev1.Namespace, error) {
	var deploy *appsv1.Deployment
	var ns *corev1.Namespace
	for _, o := range b.objects {
		switch k := o.Kube.(type) {
		case *appsv1.Deployment:
			if k.Namespace == w.Namespace && k.Name == w.Name {
				deploy = k
			}
		case *corev1.Namespace:
			if k.Name == w.Namespace {
				ns = k
			}
		}
	}
	if deploy == nil {
		return nil, nil, fmt.Errorf("workload %s: no Deployment %s in namespace %s has been applied", w, w.Name, w.Namespace)
	}
	if ns == nil && slices.Contains(manifest.SystemNamespaces, w.Namespace) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}} // unlabelled, as installed
	}
	if ns == nil {
		return nil, nil, fmt.Errorf("workload %s: namespace %s has not been applied", w, w.Namespace)
	}
	return b.pods()[w], ns, nil
}

// workload is w's pod, which must have a sidecar for a call from it to mean anything.
func (b *Backend) workload(w backend.Workload) (*corev1.Pod, error) {
	pod, ns, err := b.workloadPod(w)
	if err != nil {
		return nil, err
	}
	if injected, rule := dataplane.Injection(ns, pod.Labels); !injected {
		return nil, fmt.Errorf("workload %s would run without an istio-proxy sidecar: %s", w, rule)
	}
	return pod, nil
}

// pods are the pods the applied Deployments would run, one each, with addresses from
// dataplane.FirstPodIP on in the order they were applied. The API server and the
// sidecar's identity both take them from here, so a sidecar is always its pod's own.
// Callers hold b.mu.
func (b *Backend) pods() map[backend.Workload]*corev1.Pod {
	out := map[backend.Workload]*corev1.Pod{}
	used := map[string]bool{}
	for _, o := range b.objects {
		if d, ok := o.Kube.(*appsv1.Deployment); ok {
			ip := dataplane.NextPodIP(func(ip string) bool { return used[ip] })
			used[ip] = true
			out[backend.Workload{Namespace: d.Namespace, Name: d.Name}] = dataplane.PodFor(d, d.Name+"-sim", ip)
		}
	}
	return out
}

// setIstioLogs sets the level of istiod's own logging, which is global to the process:
// off ("") keeps it out of the lab's narration.
func setIstioLogs(level string) {
	l := istiolog.NoneLevel
	if level != "" {
		l = istiolog.StringToLevel(level)
	}
	o := istiolog.DefaultOptions()
	o.SetDefaultOutputLevel(istiolog.OverrideScopeName, l)
	_ = istiolog.Configure(o)
}

func init() {
	setIstioLogs("")
	forgetKrtCollections()
}

// forgetKrtCollections stops Istio's krt collections from registering in its global
// debug handler (istiod's /debug/krtz), which only ever appends: Istio's fake control
// plane registers every collection it builds there, so each world the backend built
// and closed stayed reachable from that global, informers, caches and all, about 2 MB
// an apply or delete (issue 24). Nothing in the process serves that page; nil is the
// value Istio's own controllers take for "no debugging". It is set once, before any
// goroutine could read it.
func forgetKrtCollections() { krt.GlobalDebugHandler = nil }
