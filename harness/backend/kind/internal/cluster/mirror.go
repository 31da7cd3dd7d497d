package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// The node's containerd reads a hosts.toml per registry from CertsDir: kind's own guide
// to local registries patches this into every node's containerd config, and so does
// every cluster egresslab creates, so that a kept cluster can be pointed at a mirror
// later. The same patch serves containerd 1.6 (the offline node, Debian's containerd)
// and 2.x (kind's node images), which reads version 2 configs as they are.
const (
	CertsDir              = "/etc/containerd/certs.d"
	containerdConfigPatch = `[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "` + CertsDir + `"
`
)

// MirrorURL turns a registry mirror setting (host:port, or a URL) into the URL
// containerd is given: a bare host:port is HTTPS, except on a loopback or private
// address, which is a plain-HTTP mirror on this machine or the local network (as
// Docker and go-containerregistry assume too).
func MirrorURL(setting string) (string, error) {
	s := strings.TrimSpace(setting)
	if s == "" {
		return "", fmt.Errorf("the registry mirror is empty: give host:port or a URL")
	}
	if !strings.Contains(s, "://") {
		scheme := "https"
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsPrivate())) {
			scheme = "http"
		}
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" || strings.HasSuffix(u.Host, ":") || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("registry mirror %q: give host:port, http://host:port or https://host:port (no path)", setting)
	}
	return u.Scheme + "://" + u.Host, nil
}

// HostsTOML is containerd's hosts.toml that sends every pull from one registry to
// mirror, and to nothing else: a company that allows pulls only through its mirror, or a
// workshop's bundle, wants no pull to go past it to the registry itself.
func HostsTOML(mirror string) string {
	return fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror, mirror)
}

// SetMirror makes every node's containerd pull images of registry (docker.io) through
// mirror (a URL, MirrorURL). containerd reads hosts.toml on each pull: no restart.
func (c *Cluster) SetMirror(registry, mirror string) error {
	ns, err := c.nodes()
	if err != nil {
		return err
	}
	for _, n := range ns {
		dir := CertsDir + "/" + registry
		if err := n.Command("mkdir", "-p", dir).Run(); err != nil {
			return fmt.Errorf("point node %s at registry mirror %s: %w", n, mirror, err)
		}
		if err := nodeutils.WriteFile(n, dir+"/hosts.toml", HostsTOML(mirror)); err != nil {
			return fmt.Errorf("point node %s at registry mirror %s: %w", n, mirror, err)
		}
	}
	return nil
}

// Gateway is this machine's address on the network the cluster's nodes run on (Docker's
// network "kind"): a server listening there is reachable from the nodes, and from no
// other machine.
func (c *Cluster) Gateway(ctx context.Context) (string, error) {
	out, err := run(ctx, string(c.runtime), "network", "inspect", "kind", "--format",
		"{{range .IPAM.Config}}{{.Gateway}} {{end}}")
	if err != nil {
		return "", fmt.Errorf("find this machine's address on the kind network (%s network inspect kind): %w", c.runtime, err)
	}
	for _, gw := range strings.Fields(string(out)) {
		if ip := net.ParseIP(gw); ip != nil && ip.To4() != nil {
			return gw, nil
		}
	}
	return "", fmt.Errorf("the kind network has no IPv4 gateway (%s network inspect kind says %q)", c.runtime, strings.TrimSpace(string(out)))
}

// HasImage says whether the container runtime on this machine has image.
func HasImage(ctx context.Context, r Runtime, image string) bool {
	_, err := run(ctx, string(r), "image", "inspect", image)
	return err == nil
}

// LoadArchive gives the container runtime on this machine the images of a `docker save`
// archive read from archive (docker load).
func LoadArchive(ctx context.Context, r Runtime, archive io.Reader) error {
	cmd := exec.CommandContext(ctx, string(r), "load")
	cmd.Stdin = archive
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s load: %w: %s", r, err, strings.TrimSpace(string(out)))
	}
	return nil
}
