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
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	istiolog "istio.io/istio/pkg/log"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/kubelet"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// ExternalAddress stands in for the address DNS would give the external host: the
// simulator does not resolve names, and a sidecar matches this kind of call by port
// and Host header, not by address. It is in TEST-NET-3, so it is nobody's real server.
const ExternalAddress = "203.0.113.80"

// Backend is the sim backend. Applying objects records them; the next call builds a
// fresh Istio control plane from everything recorded and simulates the call on it.
type Backend struct {
	mu      sync.Mutex
	mesh    *meshconfig.MeshConfig
	objects []manifest.Object // applied, in order; later applies replace by kind/namespace/name
	world   *world            // built from objects; nil when objects changed since
}

// Option configures a Backend.
type Option func(*Backend)

// WithMesh starts the backend with Istio already installed with these values.
func WithMesh(values manifest.MeshValues) Option {
	return func(b *Backend) { b.mesh = values.Mesh }
}

// New returns an empty sim backend: no mesh installed, no objects. Close it when done.
func New(opts ...Option) *Backend {
	quietIstioLogs()
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
}

// dropWorld stops the control plane built for the previous state; the next call builds
// one for the new state. Callers hold b.mu.
func (b *Backend) dropWorld() {
	if b.world != nil {
		b.world.failer.close()
		b.world = nil
	}
}

// Provider gives each test its own fresh sim backend.
type Provider struct{ Options []Option }

func (Provider) Name() string { return "sim" }

func (p Provider) Open(context.Context) (backend.Backend, func(), error) {
	b := New(p.Options...)
	return b, b.Close, nil
}

func (b *Backend) Name() string { return "sim" }

// Instant: each call is computed from everything applied so far; nothing propagates.
func (b *Backend) Instant() bool { return true }

func (b *Backend) Describe() string {
	return "offline simulator: Istio's real control-plane code (istiod's config generator) builds the client " +
		"sidecar's listeners, routes and clusters from the lab's manifests; Envoy's matching of each call is " +
		"simulated by Istio's own simulator. Nothing leaves this machine: a verdict says where the sidecar " +
		"would send the call, not whether jsonplaceholder answers."
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

func (b *Backend) Apply(_ context.Context, set *manifest.Set) error {
	b.change(set, true)
	return nil
}

func (b *Backend) Delete(_ context.Context, set *manifest.Set) error {
	b.change(set, false)
	return nil
}

// change removes the set's objects from what is applied and, to apply them, adds them
// back at the end: a re-applied object replaces the old one, as `kubectl apply` does.
func (b *Backend) change(set *manifest.Set, apply bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range set.Objects {
		b.objects = slices.DeleteFunc(b.objects, func(have manifest.Object) bool { return sameObject(have, o) })
		if apply {
			b.objects = append(b.objects, o)
		}
	}
	b.dropWorld()
}

func sameObject(a, b manifest.Object) bool {
	return a.Kind == b.Kind && a.Namespace == b.Namespace && a.Name == b.Name
}

func (b *Backend) Sidecar(_ context.Context, w backend.Workload) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, how, err := b.workload(w)
	return how, err
}

func (b *Backend) Call(_ context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	sim, err := b.simulation(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	r, err := run(sim, c)
	if err != nil {
		return outcome.Verdict{}, err
	}
	return Judge(r), nil
}

// run simulates the call; the simulator reports malformed config by failing, which
// becomes an error here.
func run(sim *simulation.Simulation, c backend.Call) (r simulation.Result, err error) {
	defer recoverFailure("simulate call "+c.String(), &err)
	return sim.Run(SimCall(c)), nil
}

// SimCall is the call as the client's sidecar receives it, for Istio's simulator (the
// local backend judges its calls the same way): iptables redirects every
// outbound connection to the sidecar, which then matches port, Host header and SNI.
func SimCall(c backend.Call) simulation.Call {
	call := simulation.Call{
		Address:    ExternalAddress,
		Port:       c.Port(),
		Path:       c.Path(),
		Protocol:   simulation.HTTP,
		HostHeader: c.Host(),
		CallMode:   simulation.CallModeOutbound,
	}
	if c.HTTPS() {
		call.TLS = simulation.TLS
		call.Sni = c.Host()
	}
	return call
}

// Judge turns the simulator's match into a verdict, with the match as evidence.
func Judge(r simulation.Result) outcome.Verdict {
	ev := outcome.Evidence{
		FromConfig:  true,
		Listener:    r.ListenerMatched,
		FilterChain: r.FilterChainMatched,
		RouteConfig: r.RouteConfigMatched,
		VirtualHost: r.VirtualHostMatched,
		Route:       r.RouteMatched,
		Cluster:     r.ClusterMatched,
	}
	blocked := func(reason string) outcome.Verdict {
		return outcome.Verdict{Kind: outcome.Blocked, Reason: reason, Evidence: ev}
	}
	switch {
	case errors.Is(r.Error, simulation.ErrNoRoute):
		ev.Error = r.Error.Error()
		return blocked(outcome.ReasonNoRoute)
	case r.Error != nil:
		ev.Error = r.Error.Error()
		return blocked("the sidecar cannot route it: " + r.Error.Error())
	case r.VirtualHostMatched == outcome.BlockAllHost:
		return blocked(outcome.ReasonBlockAll)
	case r.ClusterMatched == outcome.BlackHoleCluster:
		return blocked(outcome.ReasonBlackHole)
	case r.ClusterMatched == outcome.PassthroughCluster:
		return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Evidence: ev}
	case strings.HasPrefix(r.ClusterMatched, "outbound|"):
		return outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Evidence: ev}
	default:
		return blocked("matched no cluster that leaves the mesh")
	}
}

// world is one state of the cluster: an Istio control plane built from the applied
// objects, and the simulated sidecar of each workload asked about so far.
type world struct {
	failer  *failer // stops this world's control plane when closed
	server  *xds.FakeDiscoveryServer
	proxies map[backend.Workload]*simulation.Simulation
}

func (b *Backend) simulation(w backend.Workload) (_ *simulation.Simulation, err error) {
	defer recoverFailure("generate the sidecar's config for "+w.String(), &err)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mesh == nil {
		return nil, errors.New("no mesh installed: install Istio (InstallMesh) before making calls")
	}
	pod, _, err := b.workload(w)
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
	proxy := b.world.server.SetupProxy(proxyFor(pod))
	listeners := b.world.server.Listeners(proxy)
	s := &simulation.Simulation{
		Listeners: listeners,
		Clusters:  b.world.server.Clusters(proxy),
		Routes:    b.world.server.RoutesFromListeners(proxy, listeners),
	}
	b.world.proxies[w] = s
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
	var configs []config.Config
	var kube []runtime.Object
	for _, o := range b.objects {
		switch {
		case o.Istio != nil:
			configs = append(configs, *o.Istio)
		case o.Kube != nil:
			kube = append(kube, o.Kube.DeepCopyObject())
		}
	}
	for _, pod := range b.pods() {
		kube = append(kube, pod)
	}
	s := xds.NewFakeDiscoveryServer(f, xds.FakeOptions{
		Configs:           configs,
		KubernetesObjects: kube,
		MeshConfig:        b.mesh,
	})
	return &world{failer: f, server: s, proxies: map[backend.Workload]*simulation.Simulation{}}, nil
}

// workload finds the Deployment w, checks it would get a sidecar and returns its pod.
func (b *Backend) workload(w backend.Workload) (*corev1.Pod, string, error) {
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
		return nil, "", fmt.Errorf("workload %s: no Deployment %s in namespace %s has been applied (manifests/apps/)", w, w.Name, w.Namespace)
	}
	if ns == nil {
		return nil, "", fmt.Errorf("workload %s: namespace %s has not been applied", w, w.Namespace)
	}
	how, injected := SidecarInjected(ns, deploy)
	if !injected {
		return nil, "", fmt.Errorf("workload %s would run without an istio-proxy sidecar: %s", w, how)
	}
	return b.pods()[w], how, nil
}

// SidecarInjected applies the selectors of Istio's default injection webhook
// (istio-sidecar-injector, no revision): the namespace label istio-injection=enabled,
// or the pod label sidecar.istio.io/inject=true, with "false"/"disabled" opting out.
func SidecarInjected(ns *corev1.Namespace, d *appsv1.Deployment) (string, bool) {
	podLabel := d.Spec.Template.Labels["sidecar.istio.io/inject"]
	nsLabel := ns.Labels["istio-injection"]
	switch {
	case podLabel == "false":
		return "the pod template is labelled sidecar.istio.io/inject=false", false
	case nsLabel == "disabled":
		return "namespace " + ns.Name + " is labelled istio-injection=disabled", false
	case nsLabel == "enabled":
		return "namespace " + ns.Name + " is labelled istio-injection=enabled, so the injector adds istio-proxy", true
	case podLabel == "true":
		return "the pod template is labelled sidecar.istio.io/inject=true, so the injector adds istio-proxy", true
	}
	return "namespace " + ns.Name + " is not labelled istio-injection=enabled; label it and restart the pods", false
}

// FirstPodIP is the address of the first Deployment's pod, in kind's default pod range;
// later Deployments' pods take the next ones, in the order they were applied.
const FirstPodIP = "10.244.0.10"

// pods are the pods the applied Deployments would run, one each. The API server and the
// sidecar's identity both take them from here, so a sidecar is always its pod's own.
// Callers hold b.mu.
func (b *Backend) pods() map[backend.Workload]*corev1.Pod {
	out := map[backend.Workload]*corev1.Pod{}
	ip := netip.MustParseAddr(FirstPodIP)
	for _, o := range b.objects {
		if d, ok := o.Kube.(*appsv1.Deployment); ok {
			out[backend.Workload{Namespace: d.Namespace, Name: d.Name}] = kubelet.Pod(d, d.Name+"-sim", ip.String())
			ip = ip.Next()
		}
	}
	return out
}

// proxyFor is the identity the pod's sidecar presents to istiod.
func proxyFor(pod *corev1.Pod) *model.Proxy {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return &model.Proxy{
		ID:              pod.Name + "." + pod.Namespace,
		IPAddresses:     []string{pod.Status.PodIP},
		ConfigNamespace: pod.Namespace,
		Labels:          pod.Labels,
		Metadata: &model.NodeMetadata{
			Namespace:      pod.Namespace,
			Labels:         pod.Labels,
			ServiceAccount: sa,
			ClusterID:      "Kubernetes",
		},
	}
}

var quietOnce sync.Once

// quietIstioLogs keeps istiod's own logging out of the lab's narration. Set
// EGRESSLAB_ISTIO_LOG to a level (debug, info, warn, error) to see it on stderr.
func quietIstioLogs() {
	quietOnce.Do(func() {
		level := istiolog.NoneLevel
		if l := os.Getenv("EGRESSLAB_ISTIO_LOG"); l != "" {
			level = istiolog.StringToLevel(l)
		}
		o := istiolog.DefaultOptions()
		o.SetDefaultOutputLevel(istiolog.OverrideScopeName, level)
		_ = istiolog.Configure(o)
	})
}
