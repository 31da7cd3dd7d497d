package kindcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// MinMemory is what the container runtime must have for one kind node with istiod, the
// client and its sidecar: the node alone takes about 1 GiB, istiod asks for 256 MiB and
// pulling and unpacking images needs headroom.
const MinMemory = 4 << 30

// DefaultDockerHost is where the Docker daemon listens unless DOCKER_HOST says otherwise.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// Endpoints are what a real run reaches on the internet, and why.
var Endpoints = []Endpoint{
	{"registry-1.docker.io:443", "pull the kind node image and Istio's images (docker.io)"},
	{"istio-release.storage.googleapis.com:443", "download Istio's Helm charts"},
	{"jsonplaceholder.typicode.com:80", "the lab's own call, once the ServiceEntry lets it out"},
}

// Endpoint is a host:port the run needs to reach.
type Endpoint struct {
	Addr string
	Why  string
}

// DockerHost is the daemon address kind's docker CLI will use.
func DockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return DefaultDockerHost
}

// Daemon is what the Docker Engine API says about itself.
type Daemon struct {
	Host     string
	MemTotal int64  `json:"MemTotal"`
	NCPU     int    `json:"NCPU"`
	Arch     string `json:"Architecture"`
	Version  string `json:"ServerVersion"`
}

// Ping asks the Docker daemon at host (unix:// or tcp://) for /_ping and /info, through
// the Engine API directly: quick, and it needs no Docker client library.
func Ping(ctx context.Context, host string) (*Daemon, error) {
	client, base, err := engineClient(host)
	if err != nil {
		return nil, err
	}
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
		}
		return body, nil
	}
	if _, err := get("/_ping"); err != nil {
		return nil, fmt.Errorf("no Docker daemon answers at %s: %w", host, err)
	}
	raw, err := get("/info")
	if err != nil {
		return nil, fmt.Errorf("Docker daemon at %s: %w", host, err)
	}
	d := &Daemon{Host: host}
	if err := json.Unmarshal(raw, d); err != nil {
		return nil, fmt.Errorf("Docker daemon at %s: read /info: %w", host, err)
	}
	return d, nil
}

func engineClient(host string) (*http.Client, string, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}
		return &http.Client{Transport: tr}, "http://docker", nil
	case "tcp", "http":
		return &http.Client{Transport: &http.Transport{Proxy: nil}}, "http://" + u.Host, nil
	}
	return nil, "", fmt.Errorf("DOCKER_HOST %q: egresslab's preflight speaks to unix:// and tcp:// daemons only "+
		"(for ssh:// or TLS daemons, skip it by running against an existing cluster: EGRESSLAB_KUBECONFIG)", host)
}

// Available is the quick check behind backend selection (well under 2 s): the runtime's
// CLI is installed and its daemon answers.
func Available(ctx context.Context, r Runtime) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if err := runtimeAnswers(ctx, r); err != nil {
		return false, err.Error()
	}
	return true, fmt.Sprintf("a %s daemon answers", r)
}

func runtimeAnswers(ctx context.Context, r Runtime) error {
	if r == Podman {
		if _, err := exec.LookPath("podman"); err != nil {
			return errors.New("podman is not installed (kind runs its nodes through the podman CLI): install it, or use Docker")
		}
		out, err := exec.CommandContext(ctx, "podman", "info", "--format", "{{.Host.MemTotal}}").CombinedOutput()
		if err != nil {
			return fmt.Errorf("podman does not answer: %v: %s; start it (podman machine start)", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	host := DockerHost()
	if _, err := Ping(ctx, host); err != nil {
		return fmt.Errorf("%w; start Docker (Docker Desktop, or `sudo systemctl start docker`), or point DOCKER_HOST at a running daemon", err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("a Docker daemon answers at %s, but the docker CLI is not on PATH: kind drives its nodes through it; install the Docker CLI", host)
	}
	return nil
}

// Preflight checks everything a real run needs before it starts, and names the fix for
// each problem: the runtime answers, it has MinMemory, and (when internet is true) the
// endpoints of Endpoints are reachable.
func Preflight(ctx context.Context, r Runtime, internet bool) error {
	var errs []error
	if err := runtimeAnswers(ctx, r); err != nil {
		errs = append(errs, err)
	} else if r == Docker {
		if d, err := Ping(ctx, DockerHost()); err != nil {
			errs = append(errs, err)
		} else if err := CheckMemory(d); err != nil {
			errs = append(errs, err)
		}
	}
	if internet {
		if err := CheckReachable(ctx, Endpoints, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("preflight for the kind backend:\n%w", errors.Join(errs...))
	}
	return nil
}

// CheckMemory says whether the daemon has MinMemory.
func CheckMemory(d *Daemon) error {
	if d.MemTotal < MinMemory {
		return fmt.Errorf("the Docker daemon at %s has %.1f GiB of memory, the lab needs at least %.0f GiB: "+
			"raise it (Docker Desktop: Settings > Resources > Memory)", d.Host, float64(d.MemTotal)/(1<<30), float64(MinMemory)/(1<<30))
	}
	return nil
}

// CheckReachable dials every endpoint at once and reports those that do not answer.
func CheckReachable(ctx context.Context, eps []Endpoint, timeout time.Duration) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for _, ep := range eps {
		wg.Go(func() {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, "tcp", ep.Addr)
			if err == nil {
				c.Close()
				return
			}
			mu.Lock()
			defer mu.Unlock()
			failed = append(failed, fmt.Sprintf("%s (to %s): %v", ep.Addr, ep.Why, err))
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("the internet is not reachable from here: %s; connect this machine (and set HTTPS_PROXY for "+
			"Docker if you are behind a proxy), or run offline with -backend=sim", strings.Join(failed, "; "))
	}
	return nil
}
