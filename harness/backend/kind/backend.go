// Package kind is the lab on a real cluster: a kind cluster (or one a kubeconfig
// names), Istio installed with Helm in the lab's mode, and the client app with its
// istio-proxy sidecar. Each call is a real HTTP request made inside the client's pod;
// the verdict is read from what the client saw.
//
// The Provider implements backend.Lifecycle: Setup builds the cluster, Istio, the
// client image and the app once; every scenario then opens the same Backend; Finish
// deletes the cluster unless asked to keep it.
package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/kube"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Backend is the lab on one cluster.
type Backend struct {
	kube     kubernetes.Interface
	applier  *kube.Applier
	mesh     MeshInstaller
	exec     Execer
	progress io.Writer
	// imageDigest is the caller image loaded into the nodes, once a Deployment that runs
	// it was applied; Apply puts it on that pod template so that a new image rolls the
	// pods and the same one does not.
	imageDigest string
	// loadImage loads an image tarball into the cluster's nodes; nil on an existing
	// cluster, where the user loads it.
	loadImage func(tarball string) error
	workDir   string
	// typedAt is how a person's kubectl and helm reach this cluster (backend.Typed).
	typedAt backend.TypedTarget
	// applied are the namespaces objects were applied in, for diagnostics.
	applied map[string]bool
	// CallTimeout bounds one call made by the client (its --timeout).
	callTimeout time.Duration
	// rollout bounds the wait for a Deployment to be ready.
	rollout, poll time.Duration
	// diagnose collects what explains a failure into a folder and returns its path.
	diagnose func(ctx context.Context, why string) string
	version  string
	// imageOptions are for the caller image (offline: trust the stand-in internet's CA).
	imageOptions []appimage.Option
	// offline: the Envoy process in istio-proxy is egresslab's stand-in, and the
	// internet is the stand-in internet.
	offline bool
	// pullsFrom names where the nodes pull docker.io's images from, for a failed pull.
	pullsFrom string
	// internetCA signs the stand-in internet's certificate (offline: the CA the proxy
	// image trusts; nil makes a new one).
	internetCA struct{ cert, key []byte }
}

// MeshInstaller installs Istio with values and checks the mesh config it produced.
type MeshInstaller interface {
	Install(ctx context.Context, values manifest.MeshValues) error
}

// Execer runs a command in a container and returns its output, as `kubectl exec` does.
type Execer interface {
	Exec(ctx context.Context, namespace, pod, container string, cmd []string) (stdout, stderr string, err error)
}

func newBackend(k kubernetes.Interface, i istioclient.Interface, mesh MeshInstaller, ex Execer, progress io.Writer) *Backend {
	return &Backend{kube: k, applier: kube.NewApplier(k, i), mesh: mesh, exec: ex, progress: progress,
		callTimeout: 10 * time.Second, rollout: 3 * time.Minute, poll: 2 * time.Second,
		diagnose: func(context.Context, string) string { return "" }}
}

func (b *Backend) Name() string { return "kind" }

// TypedAt is the cluster's kubeconfig and the chart repository the run installs Istio
// from: what the handouts' commands, typed by hand, need (backend.Typed).
func (b *Backend) TypedAt() backend.TypedTarget { return b.typedAt }

func (b *Backend) Describe() string {
	if b.offline {
		return "an offline kind cluster: Istio " + b.version + "'s istiod configures the client's istio-proxy, where the real " +
			"pilot-agent runs a stand-in for the Envoy process (egresslab's harness/dataplane/proxy: it decides each " +
			"connection with Istio's simulator on the config istiod pushed, then answers, resets or relays as Envoy would; " +
			"it is not Envoy). Each call is a real request (or TCP connection) made inside the client's pod, and " +
			"jsonplaceholder.typicode.com is the stand-in internet in the cluster: nothing leaves this machine. The verdict " +
			"is read from what the client saw, as on a cluster with Envoy."
	}
	return "a real Kubernetes cluster: Istio " + b.version + "'s istiod configures the client's real Envoy sidecar, and each " +
		"call is a real request (or TCP connection) made inside the client's pod; the labs' own hosts (their databases " +
		"and company proxy) are served by egresslab in the cluster. The verdict is read from what the client saw: the " +
		"status, the server header, whether Envoy reached an upstream (x-envoy-upstream-service-time) or how the " +
		"connection failed. It needs the internet: DNS failures and timeouts are reported as UNREACHABLE, never BLOCKED."
}

// InstallMesh installs or upgrades Istio to values, waits for istiod and checks that the
// cluster's mesh config has the mode values ask for.
func (b *Backend) InstallMesh(ctx context.Context, values manifest.MeshValues) (err error) {
	done := step(b.progress, "Istio, outboundTrafficPolicy "+values.OutboundMode())
	defer func() { done(err) }()
	return b.mesh.Install(ctx, values)
}

// Apply applies the set. A Deployment that runs the caller image (apps/client, which
// every call is made through) gets it built and loaded into the nodes first, once.
func (b *Backend) Apply(ctx context.Context, set *manifest.Set) error {
	for _, o := range set.Objects {
		if d, ok := o.Kube.(*appsv1.Deployment); ok && runsClientImage(d) && b.imageDigest == "" {
			if err := b.buildCallerImage(ctx); err != nil {
				return err
			}
		}
		if b.applied == nil {
			b.applied = map[string]bool{}
		}
		if o.Namespace != "" {
			b.applied[o.Namespace] = true
		}
	}
	return b.applier.Apply(ctx, b.withImageDigest(set))
}

// namespaces are those objects were applied in, sorted.
func (b *Backend) namespaces() []string {
	out := make([]string, 0, len(b.applied))
	for ns := range b.applied {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// buildCallerImage builds the caller image for the nodes' architecture and loads it.
func (b *Backend) buildCallerImage(ctx context.Context) (err error) {
	done := step(b.progress, "build and load the caller image "+appimage.Client.Tag)
	defer func() { done(err) }()
	built, err := b.buildAndLoad(ctx, appimage.Client, b.imageOptions...)
	if err != nil {
		return err
	}
	if built.CABundle == "" {
		fmt.Fprintf(b.progress, "  no CA bundle found on this machine: https calls the mesh lets out will fail TLS verification\n")
	}
	b.imageDigest = built.Digest.String()
	return nil
}

// buildAndLoad builds an app's image for the nodes' architecture and loads it into
// the nodes; on an existing cluster, where the user loads it, it says how.
func (b *Backend) buildAndLoad(ctx context.Context, app appimage.App, opts ...appimage.Option) (*appimage.Built, error) {
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		return nil, fmt.Errorf("read the nodes' architecture: %v (nodes: %d)", err, len(nodes.Items))
	}
	built, err := appimage.Build(ctx, app, nodes.Items[0].Status.NodeInfo.Architecture, b.workDir, opts...)
	if err != nil {
		return nil, fmt.Errorf("build the %s image: %w", app.Name, err)
	}
	if b.loadImage == nil {
		fmt.Fprintf(b.progress, "  an existing cluster: load %s into its nodes yourself (it is %s, imagePullPolicy Never)\n",
			built.Tarball, app.Tag)
	} else if err := b.loadImage(built.Tarball); err != nil {
		return nil, err
	}
	return built, nil
}

func (b *Backend) Delete(ctx context.Context, set *manifest.Set) error {
	return b.applier.Delete(ctx, set)
}

// withImageDigest returns the set with the loaded image's digest on the pod template of
// every Deployment that runs the client image; the manifest itself stays as written.
func (b *Backend) withImageDigest(set *manifest.Set) *manifest.Set {
	if b.imageDigest == "" {
		return set
	}
	out := &manifest.Set{Source: set.Source, Objects: make([]manifest.Object, len(set.Objects))}
	copy(out.Objects, set.Objects)
	for i, o := range out.Objects {
		d, ok := o.Kube.(*appsv1.Deployment)
		if !ok || !runsClientImage(d) {
			continue
		}
		d = d.DeepCopy()
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[appimage.DigestAnnotation] = b.imageDigest
		out.Objects[i].Kube = d
	}
	return out
}

func runsClientImage(d *appsv1.Deployment) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Image == appimage.Client.Tag {
			return true
		}
	}
	return false
}

// Sidecar waits for the workload's rollout and checks its pod runs istio-proxy.
func (b *Backend) Sidecar(ctx context.Context, w backend.Workload) (backend.SidecarStatus, error) {
	pod, err := b.readyPod(ctx, w)
	if err != nil {
		return backend.SidecarStatus{}, b.explained(ctx, err)
	}
	s, err := b.sidecarOf(ctx, pod)
	if err != nil {
		return s, b.explained(ctx, err)
	}
	if !s.Injected {
		// A pod without its sidecar is the lab's to judge; what explains it is saved now,
		// while the pod is there to look at.
		if dir := b.diagnose(ctx, "pod "+s.Pod+" runs without an istio-proxy sidecar: "+s.Rule); dir != "" {
			s.Rule += " (diagnostics: " + dir + ")"
		}
	}
	return s, nil
}

// explained adds where the diagnostics were saved to an error.
func (b *Backend) explained(ctx context.Context, err error) error {
	if dir := b.diagnose(ctx, err.Error()); dir != "" {
		return fmt.Errorf("%w\n  diagnostics (pod status, events, client and istio-proxy logs, kind logs): %s", err, dir)
	}
	return err
}

// Call makes the call from inside the workload's client container and classifies what
// the client saw. It is one exec: cheap enough for backend.Await to poll, and it stops
// when ctx does.
func (b *Backend) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	pod, err := b.currentPod(ctx, w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	cmd := append([]string{appimage.Client.Entrypoint, "call", "--timeout=" + b.callTimeout.String()}, c.ClientArgs()...)
	sent := time.Now()
	stdout, stderr, err := b.exec.Exec(ctx, w.Namespace, pod.Name, w.Name, cmd)
	if err != nil {
		return outcome.Verdict{}, fmt.Errorf("call %s from pod %s/%s (container %s): %w%s",
			c, w.Namespace, pod.Name, w.Name, err, stderrSuffix(stderr))
	}
	obs, err := ParseObservation(stdout)
	if err != nil {
		return outcome.Verdict{}, fmt.Errorf("call %s from pod %s/%s: %w%s", c, w.Namespace, pod.Name, err, stderrSuffix(stderr))
	}
	v := outcome.Classify(obs)
	if outcome.NextHopDecides(v) {
		if e, err := b.AccessLogEntry(ctx, w, c, obs.ClientAddress, sent); err == nil && e.Gateway != nil {
			v = outcome.AtGateway(v, e.Logged(), e.GatewayName, e.Gateway.Logged())
		}
	}
	return v, nil
}

func stderrSuffix(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return "; stderr: " + s
}

// ParseObservation reads the one JSON line `client call` prints.
func ParseObservation(stdout string) (outcome.Observation, error) {
	var lines []string
	for _, l := range strings.Split(stdout, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		return outcome.Observation{}, fmt.Errorf("the client printed %d lines, want exactly one JSON observation: %q", len(lines), stdout)
	}
	var o outcome.Observation
	dec := json.NewDecoder(bytes.NewReader([]byte(lines[0])))
	if err := dec.Decode(&o); err != nil {
		return outcome.Observation{}, fmt.Errorf("read the client's observation %q: %w", lines[0], err)
	}
	if o.URL == "" {
		return outcome.Observation{}, fmt.Errorf("the client's observation names no URL: %q", lines[0])
	}
	return o, nil
}

// SidecarConfig is the part of the sidecar's own configuration (Envoy's config_dump,
// read through pilot-agent in the istio-proxy container) that decides this call.
func (b *Backend) SidecarConfig(ctx context.Context, w backend.Workload, c backend.Call) (string, error) {
	pod, err := b.currentPod(ctx, w)
	if err != nil {
		return "", err
	}
	stdout, stderr, err := b.exec.Exec(ctx, w.Namespace, pod.Name, "istio-proxy",
		[]string{"pilot-agent", "request", "GET", "config_dump"})
	if err != nil {
		return "", fmt.Errorf("read the config of pod %s/%s's sidecar: %w%s", w.Namespace, pod.Name, err, stderrSuffix(stderr))
	}
	out, err := FilterConfigDump([]byte(stdout), c.Host(), c.Port())
	if err != nil {
		return "", fmt.Errorf("read the config of pod %s/%s's sidecar: %w", w.Namespace, pod.Name, err)
	}
	return out, nil
}

var errNoPod = errors.New("no ready pod")
