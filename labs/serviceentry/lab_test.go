package serviceentry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs/apps"
	"github.com/egresslab/egresslab/labs/serviceentry"
)

func runLab(t testing.TB, out io.Writer, opts serviceentry.Options) *serviceentry.Result {
	t.Helper()
	b := sim.New()
	t.Cleanup(b.Close)
	res, err := serviceentry.Run(context.Background(), b, narrate.New(out), opts)
	require.NoError(t, err)
	return res
}

// The lab with the seed's entry, step by step, in the style of Istio's simulation
// tests: the listener, route and cluster each call is expected to match.
func TestLabWithTheSeedEntry(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, serviceentry.Options{})
	require.Empty(t, res.Failures, out.String())

	expect := map[string]outcome.Expect{
		serviceentry.StepBlocked:      serviceentry.BlockedByBlockAll,
		serviceentry.StepAllowed:      serviceentry.AllowedThroughTheEntry,
		serviceentry.StepBlockedAgain: serviceentry.BlockedByBlockAll,
		serviceentry.StepHTTPSBlocked: serviceentry.BlockedByBlackHole,
	}
	for step, want := range expect {
		v, ok := res.Verdicts[step]
		require.True(t, ok, "step %s made no call", step)
		assert.Empty(t, want.Check(v), "step %s: %s %s", step, v, v.Evidence)
	}
	s := out.String()
	for i := 1; i <= 7; i++ {
		assert.Contains(t, s, "Step "+string(rune('0'+i))+".")
	}
	assert.Contains(t, s, "kubectl -n egresslab exec deploy/client -c client -- client call http://jsonplaceholder.typicode.com/todos/1")
	assert.Contains(t, s, "kind: ServiceEntry", "the entry's YAML is shown")
	assert.Contains(t, s, "All 7 steps behaved as expected")
}

func TestShowConfigDiffsTheSidecarConfigAroundTheEntry(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, serviceentry.Options{ShowConfig: true})
	require.Empty(t, res.Failures)
	s := out.String()
	assert.Contains(t, s, "before and after the ServiceEntry")
	assert.Contains(t, s, "-  name: block_all")
	assert.Contains(t, s, "+  name: jsonplaceholder.typicode.com:80")
	assert.Contains(t, s, "+      cluster: outbound|80||jsonplaceholder.typicode.com")
}

const bothPorts = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: jsonplaceholder-both
spec:
  hosts: [jsonplaceholder.typicode.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: TLS}
  resolution: DNS
  location: MESH_EXTERNAL
`

func TestUsersEntryThatAlsoOpens443LetsHTTPSOut(t *testing.T) {
	entry, err := manifest.Parse("both-ports.yaml", []byte(bothPorts), apps.Client.Namespace)
	require.NoError(t, err)
	var out bytes.Buffer
	res := runLab(t, &out, serviceentry.Options{Entry: entry})
	require.Empty(t, res.Failures, out.String())
	https := res.Verdicts[serviceentry.StepHTTPSBlocked]
	want := outcome.Expect{Kind: outcome.Allowed, Listener: "0.0.0.0_443", Cluster: "outbound|443||jsonplaceholder.typicode.com"}
	assert.Empty(t, want.Check(https), "%s %s", https, https.Evidence)
	assert.Contains(t, out.String(), "both-ports.yaml")
}

func TestUsersEntryForAnotherHostKeepsTheCallBlocked(t *testing.T) {
	other := strings.ReplaceAll(bothPorts, "jsonplaceholder.typicode.com", "api.example.org")
	entry, err := manifest.Parse("other-host.yaml", []byte(other), apps.Client.Namespace)
	require.NoError(t, err)
	var out bytes.Buffer
	res := runLab(t, &out, serviceentry.Options{Entry: entry})
	// The lab expects ALLOWED after the entry only when it opens the call's host:port, so
	// with this entry every call stays blocked, as expected, and the lab passes...
	require.Empty(t, res.Failures, out.String())
	assert.Equal(t, outcome.Blocked, res.Verdicts[serviceentry.StepAllowed].Kind)
	// ...and the lab says so rather than pretending it was allowed.
	assert.Contains(t, out.String(), "expected BLOCKED")
}

func TestAnotherURLOnTheEntrysHost(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, serviceentry.Options{URL: "http://jsonplaceholder.typicode.com/posts/1"})
	require.Empty(t, res.Failures)
	assert.Contains(t, out.String(), "client call http://jsonplaceholder.typicode.com/posts/1")
}

func TestHTTPSURLIsRefused(t *testing.T) {
	b := sim.New()
	defer b.Close()
	_, err := serviceentry.Run(context.Background(), b, narrate.New(io.Discard),
		serviceentry.Options{URL: "https://jsonplaceholder.typicode.com/"})
	require.ErrorContains(t, err, "give the plain http:// URL")
}

func TestCancelledLabStopsBeforeTheNextStep(t *testing.T) {
	b := sim.New()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	_, err := serviceentry.Run(ctx, b, narrate.New(&out), serviceentry.Options{})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, out.String(), "Step 1.")
}

// BenchmarkLab is the whole lab on sim, in process, narration discarded.
func BenchmarkLab(b *testing.B) {
	for b.Loop() {
		res := runLab(b, io.Discard, serviceentry.Options{})
		if len(res.Failures) > 0 {
			b.Fatal(res.Failures)
		}
	}
}

// refusingBackend is sim, except that the API server refuses ServiceEntries.
type refusingBackend struct{ *sim.Backend }

func (r refusingBackend) Apply(ctx context.Context, set *manifest.Set) error {
	for _, o := range set.Objects {
		if o.Kind == "ServiceEntry" {
			return errors.New(`admission webhook "validation.istio.io" denied the request`)
		}
	}
	return r.Backend.Apply(ctx, set)
}

func TestLabStopsAtAStepThatCannotBeCarriedOut(t *testing.T) {
	b := sim.New()
	defer b.Close()
	var out bytes.Buffer
	res, err := serviceentry.Run(context.Background(), refusingBackend{b}, narrate.New(&out), serviceentry.Options{})
	require.NoError(t, err)
	require.Len(t, res.Failures, 1)
	assert.Contains(t, res.Failures[0], "step 4: apply manifests/serviceentry/jsonplaceholder.yaml")
	assert.Contains(t, res.Failures[0], "denied the request")
	assert.NotContains(t, out.String(), "Step 5.")
	assert.Contains(t, out.String(), "1 of 4 steps did not behave as expected")
}

// Ctrl-C at an -instructor prompt: the lab stops there, and no step runs after it.
func TestCtrlCAtAnInstructorPromptRunsNothingMore(t *testing.T) {
	b := sim.New()
	defer b.Close()
	in, enter := io.Pipe()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := serviceentry.Run(ctx, b, narrate.New(&out, narrate.WithPause(in)), serviceentry.Options{})
		done <- err
	}()
	_, _ = enter.Write([]byte("\n")) // step 1 runs; the lab then waits at the prompt for step 2
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("the lab went on waiting for Enter after Ctrl-C")
	}
	assert.Contains(t, out.String(), "Step 1.")
	assert.Contains(t, out.String(), "[press Enter for step 2]")
	assert.NotContains(t, out.String(), "Step 2.")
}
