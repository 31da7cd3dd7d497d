package labs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/syncbuf"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

const (
	todoHTTP  = "http://jsonplaceholder.typicode.com/todos/1"
	todoHTTPS = "https://jsonplaceholder.typicode.com/todos/1"
)

func serviceEntryLab(t testing.TB) *labfile.Lab {
	t.Helper()
	l, err := labs.Load("serviceentry")
	require.NoError(t, err)
	return l
}

func runLab(t testing.TB, out io.Writer, opts lab.Options) *lab.Result {
	t.Helper()
	b := sim.New()
	t.Cleanup(b.Close)
	res, err := lab.Run(context.Background(), b, serviceEntryLab(t), narrate.New(out), opts)
	require.NoError(t, err)
	return res
}

// The ServiceEntry lab from its lab file: seven steps, the calls the lab file states,
// and what an attendee reads.
func TestServiceEntryLabWithTheSeedEntry(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, lab.Options{})
	require.Empty(t, res.Failures, out.String())
	l := serviceEntryLab(t)
	require.Len(t, res.Calls, len(l.Calls()), "every call of the lab file is made")
	for i, c := range l.Calls() {
		got := res.Calls[i]
		assert.Equal(t, c.Step, got.Step)
		assert.Empty(t, c.Expect.Check(got.Verdict), "step %d %s: %s %s", c.Step, c.URL, got.Verdict, got.Verdict.Evidence)
	}
	s := out.String()
	for i := 1; i <= 7; i++ {
		assert.Contains(t, s, "Step "+string(rune('0'+i))+".")
	}
	assert.NotContains(t, s, "Step 8.")
	assert.Contains(t, s, "kubectl -n egresslab exec deploy/client -c client -- client call http://jsonplaceholder.typicode.com/todos/1")
	assert.Contains(t, s, "kind: ServiceEntry", "the entry's YAML is shown")
	assert.Contains(t, s, "kubectl apply -n egresslab -f labs/serviceentry/jsonplaceholder.yaml")
	assert.Contains(t, s, "catch-all virtual host block_all answers 502 itself", "the block_all explanation")
	assert.Contains(t, s, "sim computes the new config at once", "the propagation of step 5")
	assert.Contains(t, s, "All 7 steps behaved as expected")
}

func TestShowConfigDiffsTheSidecarConfigAroundTheEntry(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, lab.Options{ShowConfig: true})
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
	res := runLab(t, &out, lab.Options{Entry: entry})
	require.Empty(t, res.Failures, out.String())
	https, ok := res.Verdict(7, todoHTTPS)
	require.True(t, ok, "step 7 calls %s", todoHTTPS)
	want := outcome.Expect{Kind: outcome.Allowed, Listener: "0.0.0.0_443", Cluster: "outbound|443||jsonplaceholder.typicode.com"}
	assert.Empty(t, want.Check(https), "%s %s", https, https.Evidence)
	assert.Contains(t, out.String(), "both-ports.yaml")
}

func TestUsersEntryForAnotherHostKeepsTheCallBlocked(t *testing.T) {
	other := strings.ReplaceAll(bothPorts, "jsonplaceholder.typicode.com", "api.example.org")
	entry, err := manifest.Parse("other-host.yaml", []byte(other), apps.Client.Namespace)
	require.NoError(t, err)
	var out bytes.Buffer
	res := runLab(t, &out, lab.Options{Entry: entry})
	// The lab expects ALLOWED after the entry only when it opens the call's host:port, so
	// with this entry every call stays blocked, as expected, and the lab passes...
	require.Empty(t, res.Failures, out.String())
	v, ok := res.Verdict(5, todoHTTP)
	require.True(t, ok)
	assert.Equal(t, outcome.Blocked, v.Kind)
	// ...and the lab says so rather than pretending it was allowed.
	assert.Contains(t, out.String(), "expected BLOCKED")
}

func TestAnotherURLOnTheEntrysHost(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, lab.Options{URL: "http://jsonplaceholder.typicode.com/posts/1"})
	require.Empty(t, res.Failures, out.String())
	assert.Contains(t, out.String(), "client call http://jsonplaceholder.typicode.com/posts/1")
	assert.Contains(t, out.String(), "client call https://jsonplaceholder.typicode.com/posts/1", "step 7's HTTPS call follows -url")
	assert.NotContains(t, out.String(), "/todos/1")
}

// -url to another host: the calls, the titles and the prose name it; nothing opens it.
func TestAnotherHostIsNamedEverywhereAndStaysBlocked(t *testing.T) {
	var out bytes.Buffer
	res := runLab(t, &out, lab.Options{URL: "http://api.example.org/v1"})
	require.Empty(t, res.Failures, out.String())
	for _, c := range res.Calls {
		assert.Equal(t, outcome.Blocked, c.Verdict.Kind, "step %d %s", c.Step, c.URL)
	}
	assert.Contains(t, out.String(), "Call api.example.org: blocked")
	assert.NotContains(t, out.String(), "Call jsonplaceholder")
}

func TestHTTPSURLIsRefused(t *testing.T) {
	_, _, err := lab.Override(serviceEntryLab(t), lab.Options{URL: "https://jsonplaceholder.typicode.com/"})
	require.ErrorContains(t, err, "give the plain http:// URL")
}

func TestCancelledLabStopsBeforeTheNextStep(t *testing.T) {
	b := sim.New()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	_, err := lab.Run(ctx, b, serviceEntryLab(t), narrate.New(&out), lab.Options{})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, out.String(), "Step 1.")
}

// BenchmarkLab is the whole ServiceEntry lab on sim, in process, narration discarded.
func BenchmarkLab(b *testing.B) {
	for b.Loop() {
		res := runLab(b, io.Discard, lab.Options{})
		if len(res.Failures) > 0 {
			b.Fatal(res.Failures)
		}
	}
}

// recordingBackend is sim, except that it remembers what it was asked to delete and,
// with refuseEntries, the API server refuses ServiceEntries.
type recordingBackend struct {
	*sim.Backend
	refuseEntries bool
	deleted       []string
}

func (r *recordingBackend) Apply(ctx context.Context, set *manifest.Set) error {
	for _, o := range set.Objects {
		if o.Kind == "ServiceEntry" && r.refuseEntries {
			return errors.New(`admission webhook "validation.istio.io" denied the request`)
		}
	}
	return r.Backend.Apply(ctx, set)
}

func (r *recordingBackend) Delete(ctx context.Context, set *manifest.Set) error {
	r.deleted = append(r.deleted, set.Source)
	return r.Backend.Delete(ctx, set)
}

func TestLabStopsAtAStepThatCannotBeCarriedOut(t *testing.T) {
	b := sim.New()
	defer b.Close()
	var out bytes.Buffer
	rb := &recordingBackend{Backend: b, refuseEntries: true}
	res, err := lab.Run(context.Background(), rb, serviceEntryLab(t), narrate.New(&out), lab.Options{})
	require.NoError(t, err)
	require.Len(t, res.Failures, 1)
	assert.Contains(t, res.Failures[0], "step 4: apply labs/serviceentry/jsonplaceholder.yaml")
	assert.Contains(t, res.Failures[0], "denied the request")
	assert.NotContains(t, out.String(), "Step 5.")
	assert.Contains(t, out.String(), "1 of 4 steps did not behave as expected")
	assert.Empty(t, rb.deleted, "nothing was applied, so nothing is deleted")
}

// A lab deletes what it applied when it ends, also when it is stopped, so that a kept
// cluster is left as it was found: here the entry step 4 applied, stopped before step 6.
func TestAStoppedLabDeletesWhatItApplied(t *testing.T) {
	b := sim.New()
	defer b.Close()
	rb := &recordingBackend{Backend: b}
	in, enter := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error)
	go func() {
		_, err := lab.Run(ctx, rb, serviceEntryLab(t), narrate.New(&out, narrate.WithPause(in)), lab.Options{})
		done <- err
	}()
	for step := 1; step <= 5; step++ {
		waitFor(t, &out, fmt.Sprintf("[press Enter for step %d]", step))
		_, _ = enter.Write([]byte("\n"))
	}
	waitFor(t, &out, "[press Enter for step 6]")
	require.Empty(t, rb.deleted, "nothing is deleted while the lab runs")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, []string{"labs/serviceentry/jsonplaceholder.yaml"}, rb.deleted)
}

// waitFor waits until the lab has printed text, within a generous bound.
func waitFor(t *testing.T, out *syncbuf.Buffer, text string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, out.String(), text, "the lab never printed it")
	}, time.Minute, 5*time.Millisecond)
}

// Ctrl-C at an -instructor prompt: the lab stops there, and no step runs after it.
func TestCtrlCAtAnInstructorPromptRunsNothingMore(t *testing.T) {
	b := sim.New()
	defer b.Close()
	in, enter := io.Pipe()
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := lab.Run(ctx, b, serviceEntryLab(t), narrate.New(&out, narrate.WithPause(in)), lab.Options{})
		done <- err
	}()
	_, _ = enter.Write([]byte("\n")) // step 1 runs; the lab then waits at the prompt for step 2
	waitFor(t, &out, "[press Enter for step 2]")
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(time.Minute): // nobody presses Enter: a lab that waited for it would never return
		t.Fatal("the lab went on waiting for Enter after Ctrl-C")
	}
	assert.Contains(t, out.String(), "Step 1.")
	assert.NotContains(t, out.String(), "Step 2.")
}

// Every lab's committed handout is what its lab file makes now.
func TestHandoutsAreCurrent(t *testing.T) {
	all, err := labs.All()
	require.NoError(t, err)
	for _, l := range all {
		var want bytes.Buffer
		require.NoError(t, handout.Write(&want, l))
		got, err := os.ReadFile(filepath.Join(l.Name, "README.md"))
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("labs/%s/README.md is not what labs/%s/lab.yaml makes: run `make handouts` and commit it", l.Name, l.Name)
		}
	}
}

// withoutTLSOrigination is sim whose sidecars cannot originate TLS: a backend.Limited.
type withoutTLSOrigination struct{ *sim.Backend }

func (withoutTLSOrigination) Cannot(need backend.Need) string {
	if need == backend.TLSOrigination {
		return "this backend's sidecars do not originate TLS"
	}
	return ""
}

// A call whose verdict needs what a backend's data plane cannot do is skipped there,
// with the reason, and is neither made nor counted as a failure; the lab's other calls
// are made as usual. On a backend that can, the same call is made and judged.
func TestACallABackendCannotCarryIsSkippedWithTheReason(t *testing.T) {
	l, err := labs.Load("tls-origination")
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		limited bool
	}{{"limited", true}, {"able", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := sim.New()
			t.Cleanup(s.Close)
			var b backend.Backend = s
			if tc.limited {
				b = withoutTLSOrigination{s}
			}
			var out bytes.Buffer
			res, err := lab.Run(context.Background(), b, l, narrate.New(&out), lab.Options{})
			require.NoError(t, err)
			assert.Empty(t, res.Failures, out.String())
			if !tc.limited {
				assert.Len(t, res.Calls, len(l.Calls()))
				assert.Empty(t, res.Skipped)
				return
			}
			assert.Len(t, res.Calls, len(l.Calls())-1, "the TLS-originating call is not made")
			require.Len(t, res.Skipped, 1)
			assert.Contains(t, res.Skipped[0], "step 3: "+todoHTTP+" (it needs TLS origination): this backend's sidecars do not originate TLS")
			assert.Contains(t, out.String(), "Skipped on this backend (1):")
		})
	}
}

// The explanation of a call routed to an egress gateway is the in-mesh one: the
// verdict's reason is the bare reason explanations are keyed by. (It carried the host
// as a suffix, and fell through to the verdict's bare string.)
func TestACallToAnInMeshServiceIsExplainedAsSuch(t *testing.T) {
	v := dataplane.Judge(simulation.Result{ListenerMatched: "0.0.0.0_80",
		ClusterMatched: "outbound|80||istio-egressgateway.istio-system.svc.cluster.local"})
	c, err := backend.ParseCall(todoHTTP)
	require.NoError(t, err)
	assert.Equal(t, "The sidecar sends the call to outbound|80||istio-egressgateway.istio-system.svc.cluster.local, "+
		"a workload of the mesh: whether it leaves the mesh is that workload's proxy's decision.", lab.Explain(v, c))
}

// -url with the same host and another path changes nothing a sidecar decides, so every
// lab with a url passes with it. Expectations for a replaced url were a rule of thumb
// ("allowed where the mode or an entry lets the host out"), which ignored Sidecars,
// VirtualServices and gateways: per-workload and egress-gateway reported failures that
// were not. They are now what Istio's simulator computes for the same objects.
func TestEveryLabPassesWithAnotherPathOnItsHost(t *testing.T) {
	all, err := labs.All()
	require.NoError(t, err)
	for _, l := range all {
		if l.URL == "" {
			continue
		}
		t.Run(l.Name, func(t *testing.T) {
			u, err := backend.ParseCall(l.URL)
			require.NoError(t, err)
			b := sim.New()
			defer b.Close()
			var out bytes.Buffer
			res, err := lab.Run(context.Background(), b, l, narrate.New(&out),
				lab.Options{URL: "http://" + u.URL.Host + "/posts/1"})
			require.NoError(t, err)
			assert.Empty(t, res.Failures, out.String())
			assert.NotEmpty(t, res.Calls)
		})
	}
}
