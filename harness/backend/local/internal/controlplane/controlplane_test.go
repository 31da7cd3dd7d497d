package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egresslab/egresslab/harness/manifest"
)

// needBinaries skips the test when the binaries have not been built, naming the
// command that builds them; any other problem fails it.
func needBinaries(t *testing.T) Binaries {
	t.Helper()
	b, err := FindBinaries(os.Getenv(BinDirEnv))
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%s is set, but: %v", RequireEnv, err)
		}
		t.Skip(err)
	}
	return b
}

func meshValues(t *testing.T) manifest.MeshValues {
	t.Helper()
	mv, err := manifest.LoadMeshValues()
	if err != nil {
		t.Fatal(err)
	}
	return mv
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// assertNothingLeft checks, by PID (signal 0) and by folder, that a control plane left
// nothing behind.
func assertNothingLeft(t *testing.T, pids []int, dir string) {
	t.Helper()
	if len(pids) == 0 {
		t.Error("no process was recorded: the test proves nothing")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d is still running", pid)
		}
	}
	if dir == "" {
		t.Error("no folder was recorded: the test proves nothing")
	} else if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder %s is still there (%v)", dir, err)
	}
}

// record keeps the PIDs and folder of every control plane started while it is set.
type record struct {
	mu   sync.Mutex
	pids []int
	dir  string
	on   func(cp *ControlPlane, name string)
}

func (r *record) hook(t *testing.T) {
	testHookStarted = func(cp *ControlPlane, name string) {
		r.mu.Lock()
		r.dir = cp.Dir
		r.pids = cp.PIDs()
		on := r.on
		r.mu.Unlock()
		if on != nil {
			on(cp, name)
		}
	}
	t.Cleanup(func() { testHookStarted = nil })
}

func TestStartServesAndStopLeavesNothing(t *testing.T) {
	bins := needBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	mv := meshValues(t)

	t0 := time.Now()
	cp, err := Start(ctx, Options{Binaries: bins, Mesh: mv, Progress: logWriter{t}, StopOnSignal: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane started in %s", time.Since(t0).Round(10*time.Millisecond))
	pids, dir := cp.PIDs(), cp.Dir
	defer cp.Stop()

	if cp.KubeVersion != KubeVersion {
		t.Errorf("kube-apiserver reports %s, want %s", cp.KubeVersion, KubeVersion)
	}
	if _, err := cp.Istio.NetworkingV1().ServiceEntries("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the API server does not serve Istio's ServiceEntry: %v", err)
	}
	m, err := cp.Mesh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.GetOutboundTrafficPolicy().GetMode().String(); got != manifest.RegistryOnly {
		t.Errorf("istiod runs with outboundTrafficPolicy %s, want %s from %s", got, manifest.RegistryOnly, mv.Source)
	}
	allowAny, err := mv.WithOutboundMode(manifest.AllowAny)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.SetMesh(ctx, allowAny); err != nil {
		t.Fatal(err)
	}

	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, pids, dir)
}

// A start that fails part-way (istiod exits at once) stops etcd and kube-apiserver,
// which were already running, and removes the folder.
func TestFailedStartLeavesNothing(t *testing.T) {
	bins := needBinaries(t)
	bins.Istiod = "/bin/false"
	var r record
	r.hook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := Start(ctx, Options{Binaries: bins, Mesh: meshValues(t), Progress: logWriter{t}})
	if err == nil {
		cp.Stop()
		t.Fatal("Start succeeded with /bin/false as istiod")
	}
	t.Logf("Start failed as it should: %v", err)
	if !strings.Contains(err.Error(), "istiod exited") {
		t.Errorf("the error does not say that istiod exited: %v", err)
	}
	if len(r.pids) != 3 {
		t.Errorf("started %d processes, want 3 (etcd, kube-apiserver, istiod)", len(r.pids))
	}
	assertNothingLeft(t, r.pids, r.dir)
}

// Cancelling the context while kube-apiserver starts stops everything.
func TestCancelledStartLeavesNothing(t *testing.T) {
	bins := needBinaries(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r record
	r.on = func(_ *ControlPlane, name string) {
		if name == "kube-apiserver" {
			cancel()
		}
	}
	r.hook(t)
	cp, err := Start(ctx, Options{Binaries: bins, Mesh: meshValues(t), Progress: logWriter{t}})
	if err == nil {
		cp.Stop()
		t.Fatal("Start succeeded with a cancelled context")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
	if len(r.pids) != 2 {
		t.Errorf("started %d processes, want 2 (etcd, kube-apiserver)", len(r.pids))
	}
	assertNothingLeft(t, r.pids, r.dir)
}

// Cancelling the context while istiod starts (the last step) stops all three.
func TestCancelWhileIstiodStartsLeavesNothing(t *testing.T) {
	bins := needBinaries(t)
	// istiod is not needed to show this; a sleeping stand-in keeps it quick.
	bins.Istiod = "/bin/sleep"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r record
	r.hook(t)
	// /bin/sleep never answers /ready: end the start by cancelling once it runs.
	r.on = func(cp *ControlPlane, name string) {
		if name == "istiod" {
			cancel()
		}
	}
	if _, err := Start(ctx, Options{Binaries: bins, Mesh: meshValues(t)}); err == nil {
		t.Fatal("Start succeeded")
	}
	assertNothingLeft(t, r.pids, r.dir)
}

// A folder whose owner died is removed by the next start; one whose owner lives is kept.
func TestSweepStale(t *testing.T) {
	dead, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	live, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	// PID 0x7ffffffe is beyond any pid_max: nobody owns it.
	if err := os.WriteFile(filepath.Join(dead, ownerFile), []byte("2147483646"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(live, ownerFile), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	sweepStale()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale folder %s not removed", dead)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("folder of a live owner removed: %v", err)
	}
}

// The versions in code agree with the modules that build the binaries.
func TestVersionsPinned(t *testing.T) {
	read := func(path, module string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s does not require %s", path, module)
		}
		return string(m[1])
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(root, "tools", "kubernetes", "go.mod"), "k8s.io/kubernetes"); got != KubeVersion {
		t.Errorf("tools/kubernetes pins k8s.io/kubernetes %s, controlplane.KubeVersion is %s", got, KubeVersion)
	}
	main := read(filepath.Join(root, "go.mod"), "istio.io/istio")
	if istioModuleVersion != main || IstioVersion() != main {
		t.Errorf("istio version: constant %s, build info %s, go.mod %s", istioModuleVersion, IstioVersion(), main)
	}
}

func TestCRDsIncludeServiceEntry(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		if c.Name == "serviceentries.networking.istio.io" {
			return
		}
	}
	t.Errorf("no ServiceEntry CRD among %d from %s", len(crds), CRDFile)
}

// helperEnv makes the test binary, run again as a child, start a control plane and
// wait to be signalled (TestHelperControlPlane).
const helperEnv = "EGRESSLAB_LOCALCP_HELPER"

// TestHelperControlPlane is not a test: run as a child by the signal tests, it starts
// a control plane, prints its PIDs and folder, and waits to be killed.
func TestHelperControlPlane(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestInterruptLeavesNothing and TestKilledOwnerLeavesNoProcess")
	}
	cp, err := Start(context.Background(), Options{Mesh: meshValues(t), StopOnSignal: true})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", cp.Dir, strings.Trim(fmt.Sprint(cp.PIDs()), "[]"))
	// Not a wait for anything: the helper holds its control plane until the test signals
	// or kills it, and gives up on its own only after this, should the test be gone.
	time.Sleep(5 * time.Minute)
	os.Exit(3)
}

// startHelper runs TestHelperControlPlane in a child and returns it with the PIDs and
// folder of its control plane.
func startHelper(t *testing.T) (*exec.Cmd, []int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperControlPlane$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "ERROR" {
			t.Fatalf("helper: %s", sc.Text())
		}
		if len(f) < 3 || f[0] != "READY" {
			continue
		}
		var pids []int
		for _, s := range f[2:] {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("helper said %q", sc.Text())
			}
			pids = append(pids, pid)
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		return cmd, pids, f[1]
	}
	t.Fatalf("helper ended without starting a control plane: %v", sc.Err())
	return nil, nil, ""
}

// Ctrl-C (SIGINT) in a go test run that holds a control plane stops every process
// and removes the folder before the test binary dies of the signal.
func TestInterruptLeavesNothing(t *testing.T) {
	needBinaries(t)
	cmd, pids, dir := startHelper(t)
	if len(pids) != 3 {
		t.Fatalf("helper started %d processes, want 3", len(pids))
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		t.Errorf("helper should have died of SIGINT, got %v", err)
	}
	assertNothingLeft(t, pids, dir)
}

// When the owner is killed outright (SIGKILL: no cleanup runs), its processes die with
// it (Pdeathsig), and the next Start removes the folder it left.
func TestKilledOwnerLeavesNoProcess(t *testing.T) {
	needBinaries(t)
	cmd, pids, dir := startHelper(t)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel kills them once their owner is gone (Pdeathsig): wait until none is
	// alive, within a generous bound; assertNothingLeft names any that outlived it.
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	giveUp := time.After(time.Minute)
waiting:
	for slices.ContainsFunc(pids, alive) {
		select {
		case <-giveUp:
			break waiting
		case <-poll.C:
		}
	}
	sweepStale() // what the next Start does first
	assertNothingLeft(t, pids, dir)
}
