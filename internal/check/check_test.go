package check_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/check"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// slowCluster is sim with a cluster's lag: a change reaches the sidecar only after
// lag, and calls made before see the state before it. It records deletes.
type slowCluster struct {
	*sim.Backend
	lag time.Duration

	mu       sync.Mutex
	changed  time.Time
	before   outcome.Verdict
	deleted  []string
	applied  []string
	settling bool
}

func (s *slowCluster) Instant() bool { return false }

func (s *slowCluster) Apply(ctx context.Context, set *manifest.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, set.Source)
	if v, err := s.Backend.Call(ctx, apps.Client, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1")); err == nil {
		s.before, s.changed, s.settling = v, time.Now(), true
	}
	return s.Backend.Apply(ctx, set)
}

func (s *slowCluster) Delete(ctx context.Context, set *manifest.Set) error {
	s.mu.Lock()
	s.deleted = append(s.deleted, set.Source)
	s.mu.Unlock()
	return s.Backend.Delete(ctx, set)
}

func (s *slowCluster) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	s.mu.Lock()
	stale := s.settling && time.Since(s.changed) < s.lag
	before := s.before
	s.mu.Unlock()
	if stale {
		return before, nil
	}
	return s.Backend.Call(ctx, w, c)
}

const todo = "http://jsonplaceholder.typicode.com/todos/1"

// ask is a question of one call from the lab's client.
func ask(mode, url string, objects ...*manifest.Set) check.Question {
	return check.Question{Mode: mode, Objects: objects, Calls: []check.Call{{From: apps.Client, Call: backend.MustCall(url)}}}
}

func parse(t *testing.T, name, yaml string) *manifest.Set {
	t.Helper()
	set, err := manifest.Parse(name, []byte(yaml), apps.Client.Namespace)
	require.NoError(t, err)
	return set
}

// On a cluster the entry takes time to reach the sidecar: check used to call once,
// right after applying, and report the stale BLOCKED. It also left the entry applied.
func TestCheckWaitsForTheEntryAndTakesItAwayAfter(t *testing.T) {
	b := &slowCluster{Backend: sim.New(), lag: 300 * time.Millisecond}
	t.Cleanup(b.Close)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)

	as, err := check.Check(context.Background(), b, ask(manifest.RegistryOnly, todo, entry), 5*time.Second)
	require.NoError(t, err)
	require.Len(t, as, 1)
	assert.Equal(t, outcome.Allowed, as[0].Verdict.Kind, "%s", as[0].Verdict)
	assert.Equal(t, []string{entry.Source}, b.deleted, "the entry is deleted after the answer")
	v, err := b.Backend.Call(context.Background(), apps.Client, backend.MustCall(todo))
	require.NoError(t, err)
	assert.Equal(t, outcome.Blocked, v.Kind, "the mesh is left without the entry")
}

func TestCheckAnswers(t *testing.T) {
	seed, err := labs.Manifest("serviceentry/jsonplaceholder.yaml", apps.Client.Namespace)
	require.NoError(t, err)
	withConfig := ask("", "https://jsonplaceholder.typicode.com/", seed)
	withConfig.WithConfig = true
	cases := []struct {
		name    string
		q       check.Question
		want    outcome.Expect
		wantCfg string
	}{
		{"seed, http", ask("", todo, seed), outcome.Expect{Kind: outcome.Allowed, Cluster: "outbound|80||jsonplaceholder.typicode.com"}, ""},
		{"seed, https", withConfig, outcome.Expect{Kind: outcome.Blocked, Cluster: "BlackHoleCluster"}, "name: BlackHoleCluster"},
		{"no entry", ask("", todo), outcome.Expect{Kind: outcome.Blocked, VirtualHost: "block_all"}, ""},
		{"allow any", ask(manifest.AllowAny, "http://example.com/"), outcome.Expect{Kind: outcome.Allowed, Cluster: "PassthroughCluster"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := sim.New()
			defer b.Close()
			as, err := check.Check(context.Background(), b, tc.q, time.Second)
			require.NoError(t, err)
			require.Len(t, as, 1)
			a := as[0]
			assert.Empty(t, tc.want.Check(a.Verdict), "%s %s", a.Verdict, a.Verdict.Evidence)
			if tc.wantCfg != "" {
				assert.Contains(t, a.SidecarConfig, tc.wantCfg)
			} else {
				assert.Empty(t, a.SidecarConfig)
			}
		})
	}
}

// A Sidecar that gives the client ALLOW_ANY in a REGISTRY_ONLY mesh: Istio's simulator
// says ALLOWED (PassthroughCluster). check used to await a rule of thumb instead
// ("allowed when the mode is ALLOW_ANY or an entry lists the host"), which said
// BLOCKED, and so reported the stale BLOCKED of the first call, made before the Sidecar
// reached the proxy: the one false answer this tool must never give.
func TestCheckAwaitsWhatTheSimulatorSaysNotARuleOfThumb(t *testing.T) {
	b := &slowCluster{Backend: sim.New(), lag: 300 * time.Millisecond}
	t.Cleanup(b.Close)
	sidecar := parse(t, "allow-any-sidecar.yaml", `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: client-allow-any
spec:
  workloadSelector:
    labels: {app: client}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
`)
	as, err := check.Check(context.Background(), b, ask(manifest.RegistryOnly, todo, sidecar), 5*time.Second)
	require.NoError(t, err)
	a := as[0]
	assert.NoError(t, a.Unsettled)
	assert.Empty(t, outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Cluster: "PassthroughCluster"}.Check(a.Verdict),
		"%s %s", a.Verdict, a.Verdict.Evidence)
	assert.Equal(t, a.Simulated.Kind, a.Verdict.Kind)
}

// When the backend never comes to the simulator's verdict, the answer says so rather
// than pass the last call off as the answer.
func TestCheckSaysWhenTheBackendNeverAgrees(t *testing.T) {
	b := &slowCluster{Backend: sim.New(), lag: time.Hour}
	t.Cleanup(b.Close)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)
	as, err := check.Check(context.Background(), b, ask(manifest.RegistryOnly, todo, entry), 500*time.Millisecond)
	require.NoError(t, err)
	a := as[0]
	assert.Equal(t, outcome.Blocked, a.Verdict.Kind, "the last call's, before the entry arrived")
	assert.Equal(t, outcome.Allowed, a.Simulated.Kind)
	assert.ErrorContains(t, a.Unsettled, "did not come to Istio's simulator's verdict")
	assert.False(t, a.Passed())
}

// A team's configuration as it is kept: its own namespace (a Namespace object), an entry
// there exported to that namespace only. Each call is made from its own workload, the
// client app deployed as payments/api where no object deploys it: the entry lets
// payments/api out and not the lab's client, on sim and on a cluster alike.
func TestCheckTakesANamespacesObjectsAndCallsFromItsWorkloads(t *testing.T) {
	team := parse(t, "payments/", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: jsonplaceholder, namespace: payments}
spec:
  hosts: [jsonplaceholder.typicode.com]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {istio-injection: enabled}}
`)
	api := backend.Workload{Namespace: "payments", Name: "api"}
	q := check.Question{Mode: manifest.RegistryOnly, Objects: []*manifest.Set{team}, Calls: []check.Call{
		{From: api, Call: backend.MustCall(todo), Expect: &outcome.Expect{Kind: outcome.Allowed, Cluster: "outbound|80||jsonplaceholder.typicode.com"}},
		{From: apps.Client, Call: backend.MustCall(todo), Expect: &outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll}},
	}}
	// The Namespace comes after the entry in the file: a set applies Namespaces first
	// only when loaded from paths, so this one is sorted here as LoadPaths would.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "team.yaml"), []byte(team.YAML()), 0o644))
	loaded, err := manifest.LoadPaths([]string{dir}, apps.Client.Namespace)
	require.NoError(t, err)
	require.Equal(t, "Namespace", loaded.Objects[0].Kind, "Namespaces first")
	q.Objects = []*manifest.Set{loaded}

	for name, open := range map[string]func() (backend.Backend, func()){
		"sim": func() (backend.Backend, func()) { b := sim.New(); return b, b.Close },
		"slow cluster": func() (backend.Backend, func()) {
			b := &slowCluster{Backend: sim.New(), lag: 200 * time.Millisecond}
			return b, b.Close
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, closeIt := open()
			t.Cleanup(closeIt)
			as, err := check.Check(context.Background(), b, q, 5*time.Second)
			require.NoError(t, err)
			require.Len(t, as, 2)
			for _, a := range as {
				assert.True(t, a.Passed(), "%s from %s: %s %s; mismatches %v", a.Call.Call, a.From, a.Verdict, a.Verdict.Evidence, a.Mismatches)
			}
		})
	}
}

// An object in a namespace that neither exists nor is created is bad input: refused in
// the manifest's words before the backend is touched (it used to be applied on the
// cluster up to the failing object, and said as a backend failure).
func TestCheckRefusesAnObjectInANamespaceNobodyCreatesBeforeTouchingTheBackend(t *testing.T) {
	b := &slowCluster{Backend: sim.New()}
	t.Cleanup(b.Close)
	stray := parse(t, "stray.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x, namespace: nowhere}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
`)
	_, err := check.Check(context.Background(), b, ask("", todo, stray), time.Second)
	var refused manifest.Errors
	require.ErrorAs(t, err, &refused)
	assert.ErrorContains(t, err, `namespace "nowhere" does not exist`)
	assert.Empty(t, b.applied, "nothing was applied to the backend")
}

// What the user expects is held against the verdict and its evidence: a call that is
// allowed, but through another cluster than the one expected, does not pass.
func TestCheckHoldsTheCallToItsExpectedEvidence(t *testing.T) {
	b := sim.New()
	t.Cleanup(b.Close)
	q := ask(manifest.AllowAny, todo)
	q.Calls[0].Expect = &outcome.Expect{Kind: outcome.Allowed, Cluster: "outbound|80||jsonplaceholder.typicode.com"}
	as, err := check.Check(context.Background(), b, q, time.Second)
	require.NoError(t, err)
	assert.False(t, as[0].Passed())
	assert.Equal(t, []string{`cluster: want "outbound|80||jsonplaceholder.typicode.com", got "PassthroughCluster"`}, as[0].Mismatches)
}

// A call to a name, made at an address (curl's --resolve): a TCP entry for a company
// proxy with addresses is matched by the address the app connects to, not the name
// (istio.io's "Using an external HTTPS proxy"). Without the address, the call reaches
// no listener of the entry and REGISTRY_ONLY blocks it.
func TestCheckMatchesTheAddressTheCallConnectsTo(t *testing.T) {
	proxy := parse(t, "proxy.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: company-proxy}
spec:
  hosts: [proxy.corp.example]
  addresses: [203.0.113.10/32]
  ports: [{number: 3128, name: tcp, protocol: TCP}]
  location: MESH_EXTERNAL
  resolution: NONE
`)
	call := backend.MustCall("http://proxy.corp.example:3128/")
	at, err := call.At("203.0.113.10")
	require.NoError(t, err)
	for _, tc := range []struct {
		call backend.Call
		want outcome.Expect
	}{
		{at, outcome.Expect{Kind: outcome.Allowed, Listener: "203.0.113.10_3128", Cluster: "outbound|3128||proxy.corp.example"}},
		{call, outcome.Expect{Kind: outcome.Blocked}},
	} {
		b := sim.New()
		as, err := check.Check(context.Background(), b, check.Question{Mode: manifest.RegistryOnly, Objects: []*manifest.Set{proxy},
			Calls: []check.Call{{From: apps.Client, Call: tc.call, Expect: &tc.want}}}, time.Second)
		b.Close()
		require.NoError(t, err)
		assert.Empty(t, as[0].Mismatches, "%s at %q: %s %s", tc.call, tc.call.Address, as[0].Verdict, as[0].Verdict.Evidence)
	}
}
