package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/local"
	"github.com/egresslab/egresslab/harness/backend/local/internal/controlplane"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

var (
	httpCall  = backend.MustCall("http://jsonplaceholder.typicode.com/todos/1")
	httpsCall = backend.MustCall("https://jsonplaceholder.typicode.com/todos/1")
)

// What the design notes measured on sim, and what the scenarios expect.

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func needBinaries(t *testing.T) {
	t.Helper()
	if ok, why := local.Available(local.ConfigFromEnv(os.Getenv)); !ok {
		if os.Getenv(controlplane.RequireEnv) != "" {
			t.Fatalf("%s is set, but: %s", controlplane.RequireEnv, why)
		}
		t.Skip(why)
	}
}

func load(t *testing.T, name string) *manifest.Set {
	t.Helper()
	set, err := labs.Manifest(name, apps.Client.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// step runs the same step on both backends.
type pair struct {
	t          *testing.T
	local, sim backend.Backend
}

func (p pair) do(what string, f func(backend.Backend) error) {
	p.t.Helper()
	for _, b := range []backend.Backend{p.local, p.sim} {
		if err := f(b); err != nil {
			p.t.Fatalf("%s on %s: %v", what, b.Name(), err)
		}
	}
}

// expect waits (on local) until the call's verdict meets want in full, and checks that
// sim gives the same verdict with the same evidence. It returns how long local took to
// get there. Waiting for the kind alone is not enough: after a ServiceEntry is deleted,
// istiod's CDS push can land before its RDS push, and for that moment the call is
// blocked already, but as cluster_not_found (the route still names the deleted
// cluster: Envoy's 503 NC), not yet by block_all.
func (p pair) expect(ctx context.Context, c backend.Call, want outcome.Expect) time.Duration {
	p.t.Helper()
	v, waited, err := backend.AwaitExpected(ctx, p.local, apps.Client, c, want, backend.DefaultTimeouts().Propagation)
	took := waited.Took
	if err != nil {
		p.t.Errorf("local: %v", err)
	}
	for _, m := range want.Check(v) {
		p.t.Errorf("local: call %s: %s", c, m)
	}
	s, err := p.sim.Call(ctx, apps.Client, c)
	if err != nil {
		p.t.Fatalf("sim: %v", err)
	}
	if v.Kind != s.Kind || v.Reason != s.Reason || v.Evidence.String() != s.Evidence.String() {
		p.t.Errorf("call %s: local and sim differ:\n  local: %s %s\n  sim:   %s %s", c, v, v.Evidence, s, s.Evidence)
	}
	p.t.Logf("call %s: %s after %s; evidence: %s", c, v, took.Round(time.Millisecond), v.Evidence)
	return took
}

// The same lab on the local control plane and on sim gives the same verdicts, with the
// same evidence: the stand-in sidecar's config comes from a real istiod.
func TestVerdictsMatchSim(t *testing.T) {
	needBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	p := local.New(local.ConfigFromEnv(os.Getenv), logWriter{t})
	t0 := time.Now()
	if _, err := p.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up in %s", time.Since(t0).Round(10*time.Millisecond))
	defer func() {
		if _, err := p.Finish(ctx); err != nil {
			t.Error(err)
		}
	}()
	lb, release, err := p.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	sb := sim.New()
	defer sb.Close()
	both := pair{t: t, local: lb, sim: sb}

	values, err := manifest.LoadMeshValues()
	if err != nil {
		t.Fatal(err)
	}
	both.do("install mesh", func(b backend.Backend) error { return b.InstallMesh(ctx, values) })
	app := load(t, labs.ClientApp)
	both.do("apply client app", func(b backend.Backend) error { return b.Apply(ctx, app) })

	t1 := time.Now()
	sc, err := lb.Sidecar(ctx, apps.Client)
	if err != nil || !sc.Injected {
		t.Fatalf("sidecar: %+v, %v", sc, err)
	}
	t.Logf("sidecar (first config after %s): %+v", time.Since(t1).Round(time.Millisecond), sc)
	checkSynced(ctx, t, lb.(*local.Backend).ControlPlane(), "client-local.egresslab")

	both.expect(ctx, httpCall, labs.Expect("serviceentry", "blocked-by-block-all"))

	entry := load(t, labs.SeedServiceEntry)
	both.do("apply the ServiceEntry", func(b backend.Backend) error { return b.Apply(ctx, entry) })
	took := both.expect(ctx, httpCall, labs.Expect("serviceentry", "allowed-through-the-entry"))
	t.Logf("MEASURED apply ServiceEntry -> first pushed config that allows the call: %s", took.Round(time.Millisecond))
	both.expect(ctx, httpsCall, labs.Expect("serviceentry", "blocked-by-black-hole"))

	cfg, err := lb.SidecarConfig(ctx, apps.Client, httpCall)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg, "outbound|80||jsonplaceholder.typicode.com") {
		t.Errorf("sidecar config does not show the entry's cluster:\n%s", cfg)
	}

	both.do("delete the ServiceEntry", func(b backend.Backend) error { return b.Delete(ctx, entry) })
	took = both.expect(ctx, httpCall, labs.Expect("serviceentry", "blocked-by-block-all"))
	t.Logf("MEASURED delete ServiceEntry -> blocked again: %s", took.Round(time.Millisecond))

	allowAny, err := values.WithOutboundMode(manifest.AllowAny)
	if err != nil {
		t.Fatal(err)
	}
	both.do("switch to ALLOW_ANY", func(b backend.Backend) error { return b.InstallMesh(ctx, allowAny) })
	both.expect(ctx, httpCall, labs.Expect("modes", "allowed-by-passthrough"))
	both.do("back to REGISTRY_ONLY", func(b backend.Backend) error { return b.InstallMesh(ctx, values) })
	both.expect(ctx, httpCall, labs.Expect("serviceentry", "blocked-by-block-all"))
}

// checkSynced reads istiod's own view of the stand-in sidecar (/debug/syncz): it must
// know it as the client pod's proxy, in cluster Kubernetes, and see every resource
// type it sent acknowledged, as from a real Envoy.
func checkSynced(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, proxy string) {
	t.Helper()
	var last string
	synced := func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cp.DebugAddress+"/debug/syncz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var statuses []map[string]any
		err = json.NewDecoder(resp.Body).Decode(&statuses)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range statuses {
			if st["proxy"] != proxy {
				continue
			}
			last = fmt.Sprint(st)
			ok := st["cluster_id"] == "Kubernetes" && st["proxy_type"] == "sidecar"
			for _, typ := range []string{"cluster", "listener", "route"} {
				sent, _ := st[typ+"_sent"].(string)
				ok = ok && sent != "" && sent == st[typ+"_acked"]
			}
			if ok {
				return true
			}
		}
		return false
	}
	// istiod's view is asked again until it shows the acknowledgements, within a
	// generous bound: they come within a second or so.
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	giveUp := time.After(time.Minute)
	for !synced() {
		select {
		case <-giveUp:
			t.Errorf("istiod does not see proxy %s synced; last status: %s", proxy, last)
			return
		case <-ctx.Done():
			t.Errorf("istiod does not see proxy %s synced (%v); last status: %s", proxy, ctx.Err(), last)
			return
		case <-poll.C:
		}
	}
	t.Logf("istiod sees proxy %s synced: CDS, LDS and RDS acknowledged", proxy)
}

// A namespace without the injection label gets no sidecar, and the backend says so.
func TestNoSidecarWithoutInjection(t *testing.T) {
	needBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := local.New(local.ConfigFromEnv(os.Getenv), logWriter{t})
	b, release, err := p.Open(ctx) // no Setup: this Open starts its own control plane
	if err != nil {
		t.Fatal(err)
	}
	cp := b.(*local.Backend).ControlPlane()
	pids, dir := cp.PIDs(), cp.Dir
	app := load(t, labs.ClientApp)
	for _, o := range app.Objects {
		if o.Kind == "Namespace" {
			delete(o.Kube.(interface{ GetLabels() map[string]string }).GetLabels(), "istio-injection")
		}
	}
	if err := b.Apply(ctx, app); err != nil {
		t.Fatal(err)
	}
	if sc, err := b.Sidecar(ctx, apps.Client); err != nil || sc.Injected || !strings.Contains(sc.Rule, "not labelled for injection") {
		t.Errorf("want no sidecar, with the rule that says why; got %+v, %v", sc, err)
	}
	if _, err := b.Call(ctx, apps.Client, httpCall); err == nil {
		t.Error("a call from a pod without a sidecar was judged")
	}

	// Deleting the app takes its namespace away for good (no namespace controller runs
	// here, the backend finalizes it), so the app can be applied again, labelled.
	if err := b.Delete(ctx, app); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Kube.CoreV1().Namespaces().Get(ctx, apps.Client.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still there after Delete: %v", apps.Client.Namespace, err)
	}
	if err := b.Apply(ctx, load(t, labs.ClientApp)); err != nil {
		t.Fatal(err)
	}
	if sc, err := b.Sidecar(ctx, apps.Client); err != nil || !sc.Injected {
		t.Errorf("sidecar after re-applying the labelled app: %+v, %v", sc, err)
	} else {
		t.Logf("sidecar: %+v", sc)
	}
	v, err := b.Call(ctx, apps.Client, httpCall)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range labs.Expect("serviceentry", "blocked-by-block-all").Check(v) {
		t.Errorf("after re-applying the app: %s", m)
	}
	release()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still runs after release", pid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder %s left after release", dir)
	}
}
