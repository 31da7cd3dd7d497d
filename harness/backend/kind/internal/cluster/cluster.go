// Package cluster manages the lab's kind cluster through kind's Go library
// (sigs.k8s.io/kind/pkg/cluster), not the kind CLI: create it or reuse it, load the
// client image into its nodes, export its logs, delete it. kind drives the container
// runtime through its CLI, so `docker` (or `podman`) must be installed and its daemon
// running; Preflight says so before anything starts.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

const (
	// Name is the lab's cluster.
	Name = "egresslab"
	// NodeImage is the kind node image, pinned by digest from kind v0.33.0's release
	// notes (an image built for that release). Its Kubernetes minor, 1.35, is the newest
	// Istio 1.31 is tested with: the pinned Istio's own kind setup
	// (common/scripts/kind_provisioner.sh, prow/integ-suite-kind.sh) runs v1.35.0. kind
	// v0.33.0's default, v1.37.0, is newer than any Istio 1.31 was tested on. Its
	// version is the one tools/kubernetes pins (a test checks it), which the offline node
	// image and the local backend's kube-apiserver are built from.
	NodeImage = "kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0"
)

// Runtime is the container runtime kind runs its nodes in.
type Runtime string

const (
	Docker Runtime = "docker"
	Podman Runtime = "podman"
)

// Cluster is one kind cluster, existing or not yet.
type Cluster struct {
	name      string
	nodeImage string
	runtime   Runtime
	cgroupV1  bool
	ownCNI    bool
	retain    bool
	progress  io.Writer
	provider  *cluster.Provider
}

// Option configures a Cluster.
type Option func(*Cluster)

// WithNodeImage runs another node image (default NodeImage).
func WithNodeImage(img string) Option { return func(c *Cluster) { c.nodeImage = img } }

// WithRuntime picks Docker (default) or Podman.
func WithRuntime(r Runtime) Option { return func(c *Cluster) { c.runtime = r } }

// WithCgroupV1 says the container runtime's host runs cgroup v1 (Daemon.CgroupV1), so
// the node's kubelet must be told to accept it.
func WithCgroupV1(v1 bool) Option { return func(c *Cluster) { c.cgroupV1 = v1 } }

// WithoutDefaultCNI creates the cluster without kind's own CNI (kindnetd, an image from a
// registry): the node image brings its own network configuration (the offline node's
// bridge conflist).
func WithoutDefaultCNI() Option { return func(c *Cluster) { c.ownCNI = true } }

// WithRetain keeps the node of a cluster whose creation failed, to look into
// (docker exec egresslab-control-plane journalctl -u kubelet); kind deletes it otherwise.
func WithRetain(retain bool) Option { return func(c *Cluster) { c.retain = retain } }

// WithProgress writes kind's own progress messages to w.
func WithProgress(w io.Writer) Option { return func(c *Cluster) { c.progress = w } }

// New returns the cluster; nothing is created until Create.
func New(opts ...Option) *Cluster {
	c := &Cluster{name: Name, nodeImage: NodeImage, runtime: Docker, progress: io.Discard}
	for _, o := range opts {
		o(c)
	}
	runtime := cluster.ProviderWithDocker()
	if c.runtime == Podman {
		runtime = cluster.ProviderWithPodman()
	}
	c.provider = cluster.NewProvider(runtime, cluster.ProviderWithLogger(logger{w: c.progress}))
	return c
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Exists reports whether a kind cluster of this name exists.
func (c *Cluster) Exists() (bool, error) {
	names, err := c.provider.List()
	if err != nil {
		return false, fmt.Errorf("list kind clusters (%s): %w", c.runtime, err)
	}
	return slices.Contains(names, c.name), nil
}

// Create creates the cluster with one node and waits for its control plane. kind's
// library cannot be interrupted: when ctx ends first, Create returns at once with the
// context's error and done is closed when kind has finished, so that the caller can
// delete what it made.
func (c *Cluster) Create(ctx context.Context) (done <-chan error, err error) {
	finished := make(chan error, 1)
	go func() {
		finished <- c.provider.Create(c.name,
			cluster.CreateWithV1Alpha4Config(c.Config()),
			cluster.CreateWithNodeImage(c.nodeImage),
			cluster.CreateWithWaitForReady(3*time.Minute),
			cluster.CreateWithRetain(c.retain),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false))
	}()
	select {
	case err := <-finished:
		if err != nil {
			return nil, fmt.Errorf("create kind cluster %s (node image %s): %w%s", c.name, c.nodeImage, err, commandOutput(err))
		}
		closed := make(chan error)
		close(closed)
		return closed, nil
	case <-ctx.Done():
		return finished, fmt.Errorf("create kind cluster %s: %w", c.name, context.Cause(ctx))
	}
}

// cgroupV1Patch lets a kubelet of Kubernetes 1.35 or later start on a cgroup v1 host,
// which it otherwise refuses (KubeletConfiguration.failCgroupV1 defaults to true since
// 1.35). kubeadm's SystemVerification preflight would refuse such a host too, but kind
// already skips kubeadm's whole preflight phase (skipPhases: [preflight] in the kubeadm
// config it writes), so the kubelet is the one thing to tell.
const cgroupV1Patch = `kind: KubeletConfiguration
failCgroupV1: false
`

// Config is the kind cluster configuration Create uses: one control-plane node whose
// containerd reads per-registry mirrors (SetMirror), and on a cgroup v1 host the kubelet
// patch that lets it start there.
func (c *Cluster) Config() *v1alpha4.Cluster {
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.name,
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: c.nodeImage}},
	}
	cfg.Networking.DisableDefaultCNI = c.ownCNI
	cfg.ContainerdConfigPatches = []string{containerdConfigPatch}
	if c.cgroupV1 {
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, cgroupV1Patch)
	}
	return cfg
}

// Delete deletes the cluster (and its entry in the kubeconfig kind wrote).
func (c *Cluster) Delete() error {
	if err := c.provider.Delete(c.name, ""); err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", c.name, err)
	}
	return nil
}

// KubeConfig is a kubeconfig that reaches the cluster from this machine.
func (c *Cluster) KubeConfig() (string, error) {
	cfg, err := c.provider.KubeConfig(c.name, false)
	if err != nil {
		return "", fmt.Errorf("kubeconfig of kind cluster %s: %w", c.name, err)
	}
	return cfg, nil
}

func (c *Cluster) nodes() ([]nodes.Node, error) {
	ns, err := c.provider.ListInternalNodes(c.name)
	if err != nil {
		return nil, fmt.Errorf("list nodes of kind cluster %s: %w", c.name, err)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("kind cluster %s has no nodes: delete it (kind delete cluster --name %s) and run again", c.name, c.name)
	}
	return ns, nil
}

// LoadImage imports an image tarball into containerd on every node, as `kind load
// image-archive` does.
func (c *Cluster) LoadImage(tarball string) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for _, n := range ns {
		f, err := os.Open(tarball)
		if err != nil {
			return fmt.Errorf("load image %s: %w", tarball, err)
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("load image %s into node %s: %w", tarball, n.String(), err)
		}
	}
	return nil
}

// CollectLogs exports kind's logs (each node's journal, containerd, kubelet, pods) into dir.
func (c *Cluster) CollectLogs(dir string) error {
	if err := c.provider.CollectLogs(c.name, dir); err != nil {
		return fmt.Errorf("export kind logs of %s to %s: %w", c.name, dir, err)
	}
	return nil
}

// logger adapts kind's logger to a progress writer: warnings, errors and kind's own
// step messages (its V(0) info), indented under the lab's step.
type logger struct{ w io.Writer }

func (l logger) Warn(m string)                     { fmt.Fprintf(l.w, "  kind: warning: %s\n", m) }
func (l logger) Warnf(f string, a ...interface{})  { l.Warn(fmt.Sprintf(f, a...)) }
func (l logger) Error(m string)                    { fmt.Fprintf(l.w, "  kind: error: %s\n", m) }
func (l logger) Errorf(f string, a ...interface{}) { l.Error(fmt.Sprintf(f, a...)) }
func (l logger) V(v kindlog.Level) kindlog.InfoLogger {
	return info{w: l.w, on: v <= 0}
}

type info struct {
	w  io.Writer
	on bool
}

func (i info) Info(m string) {
	if i.on {
		fmt.Fprintf(i.w, "  kind: %s\n", strings.TrimSpace(m))
	}
}
func (i info) Infof(f string, a ...interface{}) { i.Info(fmt.Sprintf(f, a...)) }
func (i info) Enabled() bool                    { return i.on }

// commandOutput is the end of what the node command behind a kind error printed (kind's
// errors name the command, kubeadm init say, but not what it said).
func commandOutput(err error) string {
	var runErr *kindexec.RunError
	if !errors.As(err, &runErr) || len(runErr.Output) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(runErr.Output)), "\n")
	// kubeadm ends with a Go stack trace after its error line: the error is what helps.
	for i := len(lines) - 1; i > 0; i-- {
		if strings.HasPrefix(lines[i], "error") {
			lines = lines[:i+1]
			break
		}
	}
	if len(lines) > outputLines {
		lines = lines[len(lines)-outputLines:]
	}
	return "\n  its last output lines:\n    " + strings.Join(lines, "\n    ")
}

// outputLines is how much of a failed node command's output an error carries.
const outputLines = 25
