package kind

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
)

// downloads are where a run gets what it downloads and pulls: Istio's charts from a Helm
// chart repository, Istio's images from docker.io or a mirror of it. Online and offline
// runs differ only in these two settings (offline, both are a bundle's servers).
type downloads struct {
	// charts is the Helm chart repository's URL.
	charts string
	// mirror is the registry mirror's URL for docker.io ("" when the nodes pull from
	// docker.io itself, or from a bundle's registry).
	mirror string
	// bundled: a bundle gives the charts and the images.
	bundled bool
}

// downloads reads the settings: a bundle (whose servers are started later), or a chart
// repository and a registry mirror the user named, or Istio's own.
func (p *Provider) downloads() (downloads, error) {
	var d downloads
	repo, err := istioinstall.ChartRepoFor(p.o.istioVersion)
	if err != nil {
		return d, fmt.Errorf("%s=%s: %w", EnvIstioVersion, p.o.istioVersion, err)
	}
	d.charts = repo
	if p.o.bundle != "" && (p.o.chartRepo != "" || p.o.mirror != "") {
		return d, fmt.Errorf("%s is set with %s or %s: a bundle is both mirrors; unset one or the other", EnvBundle, EnvCharts, EnvRegistryMirror)
	}
	if p.o.chartRepo != "" {
		u, err := url.Parse(p.o.chartRepo)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "oci") {
			return d, fmt.Errorf("%s=%s: give the URL of a Helm chart repository (https://host/path, where index.yaml is) "+
				"or an OCI location (oci://host/path, where path/base:VERSION is)", EnvCharts, p.o.chartRepo)
		}
		if why := istioinstall.Retired(p.o.chartRepo, p.o.istioVersion); why != "" {
			return d, fmt.Errorf("%s=%s: %s", EnvCharts, p.o.chartRepo, why)
		}
		d.charts = p.o.chartRepo
	}
	if p.o.mirror != "" {
		m, err := cluster.MirrorURL(p.o.mirror)
		if err != nil {
			return d, fmt.Errorf("%s=%s: %w", EnvRegistryMirror, p.o.mirror, err)
		}
		d.mirror = m
	}
	return d, nil
}

// endpoints are what the preflight checks can be reached from here: the chart repository
// and what the images are pulled from (docker.io itself, which also gives kind's node
// image unless it was built here or a bundle gave it, or the mirror). A bundle's servers
// are not tried: they are on this machine.
func (d downloads) endpoints(nodeImagePulled bool) []cluster.Endpoint {
	var eps []cluster.Endpoint
	if u, err := url.Parse(d.charts); err == nil && u.Hostname() != "" && !isLoopback(u.Hostname()) {
		eps = append(eps, cluster.Endpoint{Addr: hostPort(u), Why: "download Istio's Helm charts (" + d.charts + ")", Proxied: true})
	}
	if nodeImagePulled || (d.mirror == "" && !d.bundled) {
		eps = append(eps, cluster.Endpoint{Addr: cluster.DockerHub, Why: "pull the kind node image and Istio's images (docker.io)", Proxied: true})
	}
	if u, err := url.Parse(d.mirror); d.mirror != "" && err == nil && !isLoopback(u.Hostname()) {
		eps = append(eps, cluster.Endpoint{Addr: hostPort(u), Why: "pull Istio's images through the registry mirror " + d.mirror})
	}
	return eps
}

// pullsFrom names where the nodes pull docker.io's images from, for a failed pull's message.
func (d downloads) pullsFrom(registry *mirror.Server) string {
	switch {
	case registry != nil:
		return "the registry mirror of docker.io at " + registry.URL + " (serving " + registry.What + ")"
	case d.mirror != "":
		return "the registry mirror of docker.io at " + d.mirror + " (" + EnvRegistryMirror + ")"
	}
	return "docker.io"
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// openBundle unpacks the bundle into the run's folder and checks it holds the release
// the run installs.
func (p *Provider) openBundle(st *state) (*mirror.Bundle, error) {
	done := step(p.o.progress, "open bundle "+p.o.bundle)
	b, err := mirror.Open(p.o.bundle, filepath.Join(st.workDir, "bundle"))
	if err == nil && b.Istio != p.o.istioVersion {
		err = fmt.Errorf("bundle %s holds Istio %s, and this run installs Istio %s: write a bundle of %s (egresslab bundle), "+
			"or set %s=%s", p.o.bundle, b.Istio, p.o.istioVersion, p.o.istioVersion, EnvIstioVersion, b.Istio)
	}
	done(err)
	return b, err
}

// pointAtMirror makes the nodes pull docker.io's images through the mirror: the bundle's
// registry (started here, on this machine's address on the kind network) or the user's.
func (p *Provider) pointAtMirror(ctx context.Context, st *state, b *mirror.Bundle, d downloads) error {
	if b == nil && d.mirror == "" {
		return nil
	}
	if st.cluster == nil {
		fmt.Fprintf(p.o.progress, "  warning: an existing cluster (%s): point its nodes' containerd at the registry mirror yourself\n", EnvKubeconfig)
		return nil
	}
	mirrorURL := d.mirror
	if b != nil {
		gw, err := st.cluster.Gateway(ctx)
		if err != nil {
			return err
		}
		if st.registry, err = mirror.ServeRegistry(b, net.JoinHostPort(gw, "0")); err != nil {
			return fmt.Errorf("%w (the nodes reach this machine at %s, the kind network's gateway: on Docker Desktop "+
				"it is a VM's address, where a bundle cannot be served yet)", err, gw)
		}
		mirrorURL = st.registry.URL
	}
	done := step(p.o.progress, "the nodes pull docker.io through "+mirrorURL)
	err := st.cluster.SetMirror("docker.io", mirrorURL)
	done(err)
	return err
}
