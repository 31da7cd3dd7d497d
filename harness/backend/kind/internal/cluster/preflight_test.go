package cluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
)

// fakeCLI puts a `docker` (or `podman`) program first on PATH that prints what a real
// CLI prints for `context inspect` and `info`, and exits as it would. It records every
// call in the returned file, so a test can see which daemon was asked.
func fakeCLI(t *testing.T, name, contextHost, info string, infoExit int) (calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$*" >> '` + calls + `'
case "$1" in
context) echo '` + contextHost + `' ;;
info) echo '` + info + `'; exit ` + strconv.Itoa(infoExit) + ` ;;
esac
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return calls
}

// A laptop whose Docker is selected by `docker context use` (Colima, Docker Desktop for
// Linux, rootless Docker) has nothing at /var/run/docker.sock and no DOCKER_HOST: the
// preflight must ask the docker CLI, as kind does, and find the daemon.
func TestPreflightAsksTheDockerCLIAboutTheCurrentContext(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	colima := "unix:///home/me/.colima/default/docker.sock"
	calls := fakeCLI(t, "docker", colima,
		`{"MemTotal": 8254689280, "NCPU": 4, "CgroupVersion": "2", "ServerVersion": "28.1.1", "ClientInfo": {"Context": "colima"}}`, 0)

	ok, why := cluster.Available(context.Background(), cluster.Docker)
	require.True(t, ok, why)
	assert.Equal(t, `the docker daemon of context "colima" (`+colima+`) answers`, why)

	d, warnings, err := cluster.Preflight(context.Background(), cluster.Docker, nil)
	require.NoError(t, err)
	assert.Empty(t, warnings)
	assert.Equal(t, "colima", d.Context)
	assert.Equal(t, int64(8254689280), d.MemTotal)
	assert.False(t, d.CgroupV1())
	raw, err := os.ReadFile(calls)
	require.NoError(t, err)
	assert.Contains(t, string(raw), "info --format {{json .}}")
}

func TestNoDaemonIsSaidPlainlyWithTheCLIsOwnWords(t *testing.T) {
	fakeCLI(t, "docker", "unix:///var/run/docker.sock",
		`{"ServerErrors": ["Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"], "ClientInfo": {"Context": "default"}}`, 1)
	start := time.Now()
	ok, why := cluster.Available(context.Background(), cluster.Docker)
	assert.False(t, ok)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Contains(t, why, `no Docker daemon answers for the docker daemon of context "default" (unix:///var/run/docker.sock): Cannot connect`)
	assert.Contains(t, why, "docker context use NAME")

	_, _, err := cluster.Preflight(context.Background(), cluster.Docker, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "preflight for the kind backend")
	assert.Contains(t, err.Error(), "Is the docker daemon running?")
}

func TestNoDockerCLIIsSaid(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ok, why := cluster.Available(context.Background(), cluster.Docker)
	assert.False(t, ok)
	assert.Contains(t, why, "the docker CLI is not on PATH")
}

func TestCgroupV1HostIsSeen(t *testing.T) {
	fakeCLI(t, "docker", "unix:///var/run/docker.sock",
		`{"MemTotal": 25000000000, "CgroupVersion": "1", "ServerVersion": "20.10.24"}`, 0)
	d, _, err := cluster.Preflight(context.Background(), cluster.Docker, nil)
	require.NoError(t, err)
	assert.True(t, d.CgroupV1())
}

// Docker Desktop set to exactly 4 GB, as README asks, reports about 3.84 GiB.
func TestFourGBDockerDesktopIsEnough(t *testing.T) {
	fourGB := &cluster.Daemon{Runtime: cluster.Docker, MemTotal: 4_124_000_000} // 3.84 GiB
	assert.NoError(t, cluster.CheckMemory(fourGB))

	err := cluster.CheckMemory(&cluster.Daemon{Runtime: cluster.Docker, Endpoint: "unix:///x.sock", MemTotal: 2 << 30})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the docker daemon at unix:///x.sock has 2.00 GiB of memory (MemTotal 2147483648 bytes)")
	assert.Contains(t, err.Error(), "at least 4 GB")
	assert.Contains(t, err.Error(), "Settings > Resources > Memory")
}

// recordingDialer answers for the addresses in up and refuses the rest, sending nothing.
type recordingDialer struct {
	mu     sync.Mutex
	up     map[string]bool
	dialed []string
}

func (r *recordingDialer) dial(_ context.Context, addr string) (net.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialed = append(r.dialed, addr)
	if r.up[addr] {
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	return nil, errors.New("connection refused")
}

func TestReachabilityGoesThroughTheProxyDockerAndHelmUse(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("NO_PROXY", "charts.internal.example")
	registry := cluster.Endpoint{Addr: "registry.example:443", Why: "pull images", Proxied: true}
	internal := cluster.Endpoint{Addr: "charts.internal.example:443", Why: "charts", Proxied: true}
	d := &recordingDialer{up: map[string]bool{"proxy.corp.example:3128": true, "charts.internal.example:443": true}}

	warnings, err := cluster.CheckReachable(context.Background(), []cluster.Endpoint{registry, internal}, time.Second, d.dial)
	require.NoError(t, err)
	assert.Empty(t, warnings)
	assert.ElementsMatch(t, []string{"proxy.corp.example:3128", "charts.internal.example:443"}, d.dialed,
		"the registry through the proxy, the NO_PROXY host directly")
}

func TestUnreachableEndpointsAreNamedRequiredOnesFail(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("HTTP_PROXY", "")
	d := &recordingDialer{up: map[string]bool{"up.example:443": true}}
	eps := []cluster.Endpoint{
		{Addr: "up.example:443", Why: "up"},
		{Addr: "203.0.113.1:443", Why: "download charts"},
		{Addr: "203.0.113.2:80", Why: "the lab's call", Optional: true},
	}
	warnings, err := cluster.CheckReachable(context.Background(), eps, time.Second, d.dial)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "203.0.113.1:443 (to download charts): connection refused")
	assert.NotContains(t, err.Error(), "up.example")
	assert.NotContains(t, err.Error(), "203.0.113.2", "an optional endpoint is a warning, not a failure")
	assert.Contains(t, err.Error(), "-backend=sim")
	require.Len(t, warnings, 1)
	assert.True(t, strings.HasPrefix(warnings[0], "203.0.113.2:80 (to the lab's call)"), warnings[0])
	assert.Contains(t, warnings[0], "UNREACHABLE")

	warnings, err = cluster.CheckReachable(context.Background(), eps[2:], time.Second, d.dial)
	assert.NoError(t, err, "only an optional endpoint failed")
	assert.Len(t, warnings, 1)
}

// The lab's own call is made by the client pod, which does not use this machine's proxy.
func TestTheLabsCallIsCheckedDirectly(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.corp.example:3128")
	p, err := cluster.ProxyFor(cluster.CallEndpoint("jsonplaceholder.typicode.com:80"))
	require.NoError(t, err)
	assert.Nil(t, p)
	p, err = cluster.ProxyFor(cluster.Endpoint{Addr: "plain.example:80", Proxied: true})
	require.NoError(t, err)
	require.NotNil(t, p)
	assert.Equal(t, "proxy.corp.example:3128", p.Host)
}
