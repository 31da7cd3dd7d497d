package kind

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// EnvInterruptTest opts in to TestCtrlCDuringTheOfflineRunLeavesNothing: it runs
// make e2e-offline's script as root (the images must be built already to be quick).
const EnvInterruptTest = "EGRESSLAB_OFFLINE_INTERRUPT_TEST"

// TestCtrlCDuringTheOfflineRunLeavesNothing presses Ctrl-C (SIGINT to the whole process
// group, as a terminal does) while hack/e2e-offline.sh creates the kind cluster, then
// checks by name and with `hack/docker-engine.sh leftovers` that nothing of the run is
// left: no dockerd, containerd shim, bridge, firewall rule or mount, and, once the engine
// is started again to look, no container of the cluster.
func TestCtrlCDuringTheOfflineRunLeavesNothing(t *testing.T) {
	if os.Getenv(EnvInterruptTest) != "1" {
		t.Skipf("opt-in (%s=1, as root, after make e2e-offline built the images): it starts and interrupts the offline run", EnvInterruptTest)
	}
	root, err := filepath.Abs("../../..")
	require.NoError(t, err)
	engine := filepath.Join(root, "hack", "docker-engine.sh")
	if exec.Command(engine, "status").Run() == nil {
		t.Fatalf("the project's engine runs already; stop it first (%s stop): this test checks that the run stops the engine it started", engine)
	}

	cmd := exec.Command(filepath.Join(root, "hack", "e2e-offline.sh"))
	cmd.Dir = root
	// The run's temporary folders go here, to be looked for afterwards.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "KEEP=", "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	var log strings.Builder
	creating := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "Preparing nodes") {
				signalled = true
				close(creating)
			}
		}
	}()
	select {
	case <-creating:
	case <-time.After(10 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("the run never got to creating the cluster:\n%s", log.String())
	}
	// Ctrl-C once the node's container exists: kind is still setting the node up then
	// (kubeadm init takes a minute or more), so the run is stopped mid-creation.
	nodeCreated := func() bool {
		env, err := exec.Command(engine, "env").Output()
		if err != nil {
			return false // the engine is not up yet
		}
		host := strings.TrimPrefix(strings.TrimSpace(lastLine(string(env))), "DOCKER_HOST=")
		ids, err := exec.Command("docker", "-H", host, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster").Output()
		return err == nil && strings.TrimSpace(string(ids)) != ""
	}
	if !assert.Eventually(t, nodeCreated, 5*time.Minute, 500*time.Millisecond, "kind never created the node's container") {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.FailNow()
	}
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
	stopped := time.Now()
	waitErr := cmd.Wait()
	<-done
	t.Logf("the run ended %s after Ctrl-C:\n%s", time.Since(stopped).Round(time.Second), tail(log.String(), 15))
	var exitErr *exec.ExitError
	require.True(t, errors.As(waitErr, &exitErr), "the interrupted run must fail: %v", waitErr)
	assert.Equal(t, 130, exitErr.ExitCode(), "Ctrl-C exits 130")
	assert.Contains(t, log.String(), "nothing of the run is left")

	// Every process of that name is checked, not only the engine's: on this machine
	// nothing else runs them.
	for _, name := range []string{"dockerd", "containerd-shim-runc-v2"} {
		if pids, err := exec.Command("pgrep", "-x", name).Output(); err == nil {
			t.Errorf("%s still runs: PIDs %s", name, strings.Fields(string(pids)))
		}
	}
	// The kind backend's work folder (kubeconfig, caller image) goes with the cluster.
	work, err := filepath.Glob(filepath.Join(tmp, "egresslab-kind-*"))
	require.NoError(t, err)
	assert.Empty(t, work, "the kind backend's work folder is left")
	assert.Contains(t, log.String(), "stopping the run and cleaning up", "the test under the script saw Ctrl-C and cleaned up itself")

	// What the engine is made of (its socket, pool, rules and folders), as its own script knows it.
	left, err := exec.Command(engine, "leftovers").CombinedOutput()
	assert.NoError(t, err, "left behind:\n%s", left)

	// Containers outlive a stopped engine in its store: start it again to look for them.
	start := exec.Command(engine, "start")
	hostLine, err := start.Output()
	require.NoError(t, err)
	t.Cleanup(func() { _ = exec.Command(engine, "stop").Run() })
	host := strings.TrimPrefix(strings.TrimSpace(lastLine(string(hostLine))), "DOCKER_HOST=")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	containers, err := exec.CommandContext(ctx, "docker", "-H", host, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster").Output()
	require.NoError(t, err)
	assert.Empty(t, strings.TrimSpace(string(containers)), "containers of a kind cluster are left in the engine's store")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
