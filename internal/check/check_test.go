package check_test

import (
	"context"
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
	settling bool
}

func (s *slowCluster) Instant() bool { return false }

func (s *slowCluster) Apply(ctx context.Context, set *manifest.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// On a cluster the entry takes time to reach the sidecar: check used to call once,
// right after applying, and report the stale BLOCKED. It also left the entry applied.
func TestCheckWaitsForTheEntryAndTakesItAwayAfter(t *testing.T) {
	b := &slowCluster{Backend: sim.New(), lag: 300 * time.Millisecond}
	t.Cleanup(b.Close)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)

	a, err := check.Check(context.Background(), b, check.Question{URL: "http://jsonplaceholder.typicode.com/todos/1",
		Mode: manifest.RegistryOnly, Entries: []*manifest.Set{entry}}, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, outcome.Allowed, a.Verdict.Kind, "%s", a.Verdict)
	assert.Equal(t, []string{entry.Source}, b.deleted, "the entry is deleted after the answer")
	v, err := b.Backend.Call(context.Background(), apps.Client, backend.MustCall("http://jsonplaceholder.typicode.com/todos/1"))
	require.NoError(t, err)
	assert.Equal(t, outcome.Blocked, v.Kind, "the mesh is left without the entry")
}

func TestCheckAnswers(t *testing.T) {
	seed, err := labs.Manifest("serviceentry/jsonplaceholder.yaml", apps.Client.Namespace)
	require.NoError(t, err)
	cases := []struct {
		name    string
		q       check.Question
		want    outcome.Expect
		wantCfg string
	}{
		{"seed, http", check.Question{URL: "http://jsonplaceholder.typicode.com/todos/1", Entries: []*manifest.Set{seed}},
			outcome.Expect{Kind: outcome.Allowed, Cluster: "outbound|80||jsonplaceholder.typicode.com"}, ""},
		{"seed, https", check.Question{URL: "https://jsonplaceholder.typicode.com/", Entries: []*manifest.Set{seed}, WithConfig: true},
			outcome.Expect{Kind: outcome.Blocked, Cluster: "BlackHoleCluster"}, "name: BlackHoleCluster"},
		{"no entry", check.Question{URL: "http://jsonplaceholder.typicode.com/todos/1"},
			outcome.Expect{Kind: outcome.Blocked, VirtualHost: "block_all"}, ""},
		{"allow any", check.Question{URL: "http://example.com/", Mode: manifest.AllowAny},
			outcome.Expect{Kind: outcome.Allowed, Cluster: "PassthroughCluster"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := sim.New()
			defer b.Close()
			a, err := check.Check(context.Background(), b, tc.q, time.Second)
			require.NoError(t, err)
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
	sidecar, err := manifest.Parse("allow-any-sidecar.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: client-allow-any
spec:
  workloadSelector:
    labels: {app: client}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
`), apps.Client.Namespace)
	require.NoError(t, err)
	a, err := check.Check(context.Background(), b, check.Question{URL: "http://jsonplaceholder.typicode.com/todos/1",
		Mode: manifest.RegistryOnly, Entries: []*manifest.Set{sidecar}}, 5*time.Second)
	require.NoError(t, err)
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
	a, err := check.Check(context.Background(), b, check.Question{URL: "http://jsonplaceholder.typicode.com/todos/1",
		Mode: manifest.RegistryOnly, Entries: []*manifest.Set{entry}}, 500*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, outcome.Blocked, a.Verdict.Kind, "the last call's, before the entry arrived")
	assert.Equal(t, outcome.Allowed, a.Simulated.Kind)
	assert.ErrorContains(t, a.Unsettled, "did not come to Istio's simulator's verdict")
}
