package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// MinMemory is what the container runtime must have for one kind node with istiod, the
// client and its sidecar: the node alone takes about 1 GiB, istiod asks for 256 MiB and
// pulling and unpacking images needs headroom. docs/backends.md asks for "4 GB" of memory for
// Docker; a Docker Desktop VM set to exactly 4 GB reports a MemTotal of about 3.84 GiB
// (the guest kernel keeps the rest), so the floor sits below that.
const MinMemory = 3584 << 20 // 3.5 GiB

// DockerHub is where docker.io's images are pulled from: kind's node image, and Istio's
// images unless the nodes pull through a mirror.
const DockerHub = "registry-1.docker.io:443"

// CallEndpoint is a host a lab will call from inside the cluster. The client pod makes
// the call directly (a pod does not use this machine's proxy settings), so when it is
// unreachable from here the run can still go on: a call the mesh lets out will then be
// reported UNREACHABLE, not ALLOWED.
func CallEndpoint(hostport string) Endpoint {
	return Endpoint{Addr: hostport, Why: "a call the lab makes, once the mesh lets it out", Optional: true}
}

// Endpoint is a host:port the run needs to reach.
type Endpoint struct {
	Addr string
	Why  string
	// Proxied: what reaches it (Docker pulling images, Helm downloading charts) goes
	// through HTTPS_PROXY/HTTP_PROXY when they apply, so the check does too.
	Proxied bool
	// Optional: the run can go on without it; CheckReachable returns it as a warning.
	Optional bool
}

// Daemon is what the container runtime's own CLI says about the daemon it talks to.
// kind drives its nodes through that CLI, so asking it (rather than guessing a socket)
// means the preflight checks the same daemon kind will use, whatever selects it:
// DOCKER_HOST, `docker context use` (Colima, Rancher Desktop, Docker Desktop for Linux,
// rootless Docker) or the default socket.
type Daemon struct {
	Runtime Runtime
	// Context is the docker context the CLI used ("" for Podman).
	Context string
	// Endpoint is where the CLI reaches the daemon, when it says so.
	Endpoint string
	MemTotal int64
	NCPU     int
	// CgroupVersion is "1" or "2", as the daemon reports its host's cgroups.
	CgroupVersion string
	Version       string
}

// CgroupV1 reports whether the daemon's host runs cgroup v1, where a kubelet of
// Kubernetes 1.35 or later refuses to start unless told otherwise (ClusterConfig).
func (d *Daemon) CgroupV1() bool { return d.CgroupVersion == "1" }

// where names the daemon for messages.
func (d *Daemon) where() string {
	switch {
	case d.Context != "" && d.Endpoint != "":
		return fmt.Sprintf("the %s daemon of context %q (%s)", d.Runtime, d.Context, d.Endpoint)
	case d.Endpoint != "":
		return fmt.Sprintf("the %s daemon at %s", d.Runtime, d.Endpoint)
	}
	return fmt.Sprintf("the %s daemon", d.Runtime)
}

// dockerInfo is the part of `docker info --format '{{json .}}'` preflight reads.
type dockerInfo struct {
	MemTotal      int64    `json:"MemTotal"`
	NCPU          int      `json:"NCPU"`
	CgroupVersion string   `json:"CgroupVersion"`
	ServerVersion string   `json:"ServerVersion"`
	ServerErrors  []string `json:"ServerErrors"`
	ClientInfo    struct {
		Context string `json:"Context"`
	} `json:"ClientInfo"`
}

// podmanInfo is the part of `podman info --format json` preflight reads.
type podmanInfo struct {
	Host struct {
		MemTotal      int64  `json:"memTotal"`
		CPUs          int    `json:"cpus"`
		CgroupVersion string `json:"cgroupVersion"` // "v1" or "v2"
	} `json:"host"`
	Version struct {
		Version string `json:"Version"`
	} `json:"version"`
}

// Inspect asks the runtime's CLI about the daemon it talks to.
func Inspect(ctx context.Context, r Runtime) (*Daemon, error) {
	cli := string(r)
	if _, err := exec.LookPath(cli); err != nil {
		return nil, fmt.Errorf("the %s CLI is not on PATH: kind drives its nodes through it; install %s", cli, installHint(r))
	}
	if r == Podman {
		out, err := run(ctx, cli, "info", "--format", "json")
		if err != nil {
			return nil, fmt.Errorf("podman does not answer (podman info): %w; start it (podman machine start)", err)
		}
		var pi podmanInfo
		if err := json.Unmarshal(out, &pi); err != nil {
			return nil, fmt.Errorf("read `podman info --format json`: %w", err)
		}
		return &Daemon{Runtime: r, MemTotal: pi.Host.MemTotal, NCPU: pi.Host.CPUs,
			CgroupVersion: strings.TrimPrefix(pi.Host.CgroupVersion, "v"), Version: pi.Version.Version}, nil
	}

	d := &Daemon{Runtime: r}
	// The endpoint only makes messages clearer; `docker info` below is the real question.
	if out, err := run(ctx, cli, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"); err == nil {
		d.Endpoint = strings.TrimSpace(string(out))
	}
	out, err := run(ctx, cli, "info", "--format", "{{json .}}")
	var di dockerInfo
	// `docker info` prints its JSON, with ServerErrors, even when no daemon answers.
	if jerr := json.Unmarshal(out, &di); jerr == nil {
		d.Context = di.ClientInfo.Context
		if len(di.ServerErrors) > 0 {
			return nil, fmt.Errorf("no Docker daemon answers for %s: %s; start Docker (Docker Desktop, Colima, "+
				"or `sudo systemctl start docker`), or pick a running one with `docker context use NAME` or DOCKER_HOST",
				d.where(), strings.Join(di.ServerErrors, "; "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("no Docker daemon answers for %s (docker info): %w; start Docker (Docker Desktop, Colima, "+
			"or `sudo systemctl start docker`), or pick a running one with `docker context use NAME` or DOCKER_HOST", d.where(), err)
	}
	if di.ServerVersion == "" {
		return nil, fmt.Errorf("read `docker info` from %s: it names no server version: %q", d.where(), firstLine(out))
	}
	d.MemTotal, d.NCPU, d.CgroupVersion, d.Version = di.MemTotal, di.NCPU, di.CgroupVersion, di.ServerVersion
	return d, nil
}

func installHint(r Runtime) string {
	if r == Podman {
		return "Podman (https://podman.io/docs/installation)"
	}
	return "Docker (Docker Desktop, Colima, or your distribution's docker package)"
}

// run runs a CLI and returns its standard output; an error carries its standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return out, fmt.Errorf("%s %s: no answer: %w", name, args[0], context.Cause(ctx))
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("%w: %s", err, msg)
		}
	}
	return out, err
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// Available is the quick check behind backend selection (well under 2 s): the runtime's
// CLI is installed and the daemon it talks to answers.
func Available(ctx context.Context, r Runtime) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	d, err := Inspect(ctx, r)
	if err != nil {
		return false, err.Error()
	}
	return true, d.where() + " answers"
}

// Preflight checks everything a real run needs before it starts, and names the fix for
// each problem: the runtime's daemon answers and has MinMemory, and the endpoints are
// reachable (through the proxy where one applies). It returns what it learnt of the
// daemon, and warnings for optional endpoints that did not answer.
func Preflight(ctx context.Context, r Runtime, endpoints []Endpoint) (*Daemon, []string, error) {
	var errs []error
	d, err := Inspect(ctx, r)
	if err != nil {
		errs = append(errs, err)
	} else if err := CheckMemory(d); err != nil {
		errs = append(errs, err)
	}
	warnings, err := CheckReachable(ctx, endpoints, 5*time.Second, nil)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return d, warnings, fmt.Errorf("preflight for the kind backend:\n%w", errors.Join(errs...))
	}
	return d, warnings, nil
}

// CheckMemory says whether the daemon has MinMemory, and the figure it saw.
func CheckMemory(d *Daemon) error {
	if d.MemTotal < MinMemory {
		return fmt.Errorf("%s has %.2f GiB of memory (MemTotal %d bytes); the lab needs Docker set to at least 4 GB, "+
			"which reads as about 3.8 GiB here (the floor is %.1f GiB): raise it (Docker Desktop: Settings > Resources > Memory; "+
			"Colima: colima start --memory 4)", d.where(), gib(d.MemTotal), d.MemTotal, gib(MinMemory))
	}
	return nil
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }

// Dialer opens a TCP connection; CheckReachable takes one so tests can see what would
// be dialled without sending anything anywhere.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// ProxyFor says which proxy, if any, a connection to an endpoint goes through, read from
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY as Docker and Helm read them. It reads the
// environment on each call (http.ProxyFromEnvironment caches it for the process).
func ProxyFor(ep Endpoint) (*url.URL, error) {
	if !ep.Proxied {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", ep.Addr, err)
	}
	scheme := "https"
	if port == "80" {
		scheme = "http"
	}
	return httpproxy.FromEnvironment().ProxyFunc()(&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)})
}

// CheckReachable dials every endpoint at once (its proxy instead, where one applies) and
// reports those that do not answer: an error for the required ones, warnings for the
// optional ones. A nil dial is a plain TCP dial with the timeout.
func CheckReachable(ctx context.Context, eps []Endpoint, timeout time.Duration, dial Dialer) (warnings []string, err error) {
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", addr)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for _, ep := range eps {
		wg.Go(func() {
			addr, via := ep.Addr, ""
			proxy, perr := ProxyFor(ep)
			if perr == nil && proxy != nil {
				addr, via = proxyAddr(proxy), " through proxy "+proxy.Redacted()
			}
			if perr == nil {
				c, err := dial(ctx, addr)
				if err == nil {
					c.Close()
					return
				}
				perr = err
			}
			mu.Lock()
			defer mu.Unlock()
			msg := fmt.Sprintf("%s%s (to %s): %v", ep.Addr, via, ep.Why, perr)
			if ep.Optional {
				warnings = append(warnings, msg+"; the lab's allowed call will be reported UNREACHABLE, not ALLOWED")
				return
			}
			failed = append(failed, msg)
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		return warnings, fmt.Errorf("the internet is not reachable from here: %s; connect this machine (behind a proxy, set "+
			"HTTPS_PROXY and NO_PROXY here and in Docker's settings), or run offline with -backend=sim", strings.Join(failed, "; "))
	}
	return warnings, nil
}

// proxyAddr is the host:port a proxy URL names, with the scheme's port when it names none.
func proxyAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	return net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
}
