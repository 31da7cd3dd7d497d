package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/engine"
	"github.com/egresslab/egresslab/harness/outcome"
)

// EnvRun opts in: the test installs Debian's docker.io when it is missing and starts a
// Docker engine as root, which a developer's laptop should not have done to it by a
// plain `go test ./...`. CI sets it (.ci/run).
const EnvRun = "EGRESSLAB_ENGINE_TEST"

func docker(t *testing.T, host string, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

func pidOf(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/run/egresslab-docker/dockerd.pid")
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	return pid
}

func alive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// The engine runs a privileged container (this VM lacks CAP_SYS_RESOURCE, which such a
// container asks for), keeps its containers from reaching past its own networks (a
// TEST-NET address fails at once, locally), and leaves nothing behind when stopped.
func TestEngineRunsPrivilegedContainersKeepsThemHomeAndLeavesNothing(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("the project's own Docker engine needs Linux and root")
	}
	if os.Getenv(EnvRun) != "1" {
		t.Skipf("opt-in (%s=1): it installs docker.io and starts dockerd as root", EnvRun)
	}
	ctx := context.Background()
	root, err := filepath.Abs("../../../../..")
	require.NoError(t, err)
	var progress bytes.Buffer
	e, err := engine.Start(ctx, root, &progress)
	require.NoError(t, err, progress.String())
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	_, err = exec.LookPath("docker")
	require.NoError(t, err, "the engine is installed and runs, so its docker CLI is there too")
	pid := pidOf(t)
	require.True(t, alive(pid))

	built, err := appimage.Build(ctx, appimage.Client, runtime.GOARCH, t.TempDir())
	require.NoError(t, err)
	docker(t, e.Host, "load", "-i", built.Tarball)
	network := "egresslab-engine-test"
	// The engine's store outlives it (images are kept between runs): so does a network
	// an interrupted run of this test made.
	_ = exec.Command("docker", "-H", e.Host, "network", "rm", network).Run()
	docker(t, e.Host, "network", "create", network)
	t.Cleanup(func() { _ = exec.Command("docker", "-H", e.Host, "network", "rm", network).Run() })

	// Privileged, as a kind node is; `client call` to a TEST-NET address prints what it saw.
	start := time.Now()
	out := docker(t, e.Host, "run", "--rm", "--privileged", "--network", network, "--entrypoint", appimage.Client.Entrypoint,
		appimage.Client.Tag, "call", "--timeout=10s", "http://203.0.113.1/")
	took := time.Since(start)
	var obs outcome.Observation
	require.NoError(t, json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &obs), out)
	// Reset by the engine's rule, at once: a packet dropped somewhere would be a timeout,
	// and an ICMP error the kernel rate-limited would cost a SYN retry (a second or more).
	assert.Equal(t, outcome.ErrRefused, obs.ErrorClass, "refused locally, not dropped somewhere: %+v", obs)
	assert.Less(t, obs.DurationMillis, int64(1000), "%+v", obs)
	t.Logf("a call to 203.0.113.1 from the engine's container: %s (%s) after %d ms; docker run took %s",
		obs.ErrorClass, obs.Error, obs.DurationMillis, took.Round(time.Millisecond))

	// Names resolve on the machine or not at all: Docker's embedded DNS asks no server
	// outside it. Had it asked the host's resolver, the query would have been sent from
	// the container's network and met the engine's rule for anything but TCP.
	before := rejectedNonTCP(t)
	out = docker(t, e.Host, "run", "--rm", "--network", network, "--entrypoint", appimage.Client.Entrypoint,
		appimage.Client.Tag, "call", "--timeout=10s", "http://jsonplaceholder.typicode.com/todos/1")
	require.NoError(t, json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &obs), out)
	assert.Contains(t, []outcome.ErrorClass{outcome.ErrDNS, outcome.ErrTimeout}, obs.ErrorClass, "the name must not resolve: %+v", obs)
	assert.Equal(t, before, rejectedNonTCP(t), "no DNS query was sent towards a server outside the machine")
	t.Logf("a lookup of jsonplaceholder.typicode.com from the engine's container: %s (%s) after %d ms",
		obs.ErrorClass, obs.Error, obs.DurationMillis)
	rules, err := exec.Command("iptables", "-S", "DOCKER-USER").CombinedOutput()
	require.NoError(t, err)
	assert.Contains(t, string(rules), "egresslab-offline")

	require.NoError(t, e.Stop(ctx))
	assert.False(t, alive(pid), "dockerd (PID %d) is gone", pid)
	for _, name := range []string{"dockerd", "containerd", "containerd-shim-runc-v2"} {
		if out, err := exec.Command("pgrep", "-x", name).Output(); err == nil {
			t.Errorf("%s still runs: PIDs %s", name, strings.Fields(string(out)))
		}
	}
	links, err := exec.Command("ip", "-o", "link").Output()
	require.NoError(t, err)
	assert.NotContains(t, string(links), "br-", "the engine's bridges are deleted")
	rules, err = exec.Command("iptables", "-S", "DOCKER-USER").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(rules), "egresslab-offline")
	mounts, err := os.ReadFile("/proc/mounts")
	require.NoError(t, err)
	assert.NotContains(t, string(mounts), "/run/egresslab-docker")
	assert.NoDirExists(t, "/run/egresslab-docker")
}

// rejectedNonTCP is how many packets the engine's rule for anything but TCP has rejected.
func rejectedNonTCP(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("iptables", "-L", "DOCKER-USER", "-v", "-n", "-x").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if strings.Contains(line, "egresslab-offline") && strings.Contains(line, "icmp-port-unreachable") && len(f) > 0 {
			n, err := strconv.Atoi(f[0])
			require.NoError(t, err, line)
			return n
		}
	}
	t.Fatalf("no egresslab-offline rule for non-TCP traffic in DOCKER-USER:\n%s", out)
	return 0
}
