// Package kindcluster manages the lab's kind cluster through kind's Go library
// (sigs.k8s.io/kind/pkg/cluster), not the kind CLI: create it or reuse it, load the
// client image into its nodes, export its logs, delete it. kind drives the container
// runtime through its CLI, so `docker` (or `podman`) must be installed and its daemon
// running; Preflight says so before anything starts.
package kindcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

const (
	// Name is the lab's cluster.
	Name = "egresslab"
	// NodeImage is the kind node image (Kubernetes 1.37.0), pinned by digest: kind
	// v0.33.0's default, which that release was tested with.
	NodeImage = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
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
	progress  io.Writer
	provider  *cluster.Provider
}

// Option configures a Cluster.
type Option func(*Cluster)

// WithName names the cluster (default Name).
func WithName(n string) Option { return func(c *Cluster) { c.name = n } }

// WithNodeImage runs another node image (default NodeImage).
func WithNodeImage(img string) Option { return func(c *Cluster) { c.nodeImage = img } }

// WithRuntime picks Docker (default) or Podman.
func WithRuntime(r Runtime) Option { return func(c *Cluster) { c.runtime = r } }

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

// Runtime is the container runtime its nodes run in.
func (c *Cluster) Runtime() Runtime { return c.runtime }

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
			cluster.CreateWithNodeImage(c.nodeImage),
			cluster.CreateWithWaitForReady(3*time.Minute),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false))
	}()
	select {
	case err := <-finished:
		if err != nil {
			return nil, fmt.Errorf("create kind cluster %s (node image %s): %w", c.name, c.nodeImage, err)
		}
		closed := make(chan error)
		close(closed)
		return closed, nil
	case <-ctx.Done():
		return finished, fmt.Errorf("create kind cluster %s: %w", c.name, context.Cause(ctx))
	}
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
