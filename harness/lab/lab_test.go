package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// The labs these tests run are built here, small, on the sim backend: a mesh under
// REGISTRY_ONLY, the client, a call blocked, an entry applied, the call allowed.
const (
	testURL  = "http://api.example.org/v1"
	otherURL = "http://other.example.net/v1"

	blocked = "{verdict: BLOCKED, reason: block_all, virtualHost: block_all}"
	allowed = `{verdict: ALLOWED, reason: registered service, cluster: "outbound|80||api.example.org"}`

	testLab = `title: A test lab
summary: A lab the engine's tests build.
url: ` + testURL + `
entry: entry.yaml
steps:
- title: Install the mesh
  do:
  - mesh: REGISTRY_ONLY
- title: Deploy the client
  do:
  - deploy: client
- title: Call api.example.org before the entry
  do:
  - call: ` + testURL + `
    expect: ` + blocked + `
- title: Apply the entry
  do:
  - apply: entry.yaml
- title: Call api.example.org through the entry
  do:
  - call: ` + testURL + `
    expect: ` + allowed + `
`

	entryYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api-example
spec:
  hosts: [api.example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  location: MESH_EXTERNAL
`
)

// edit is a change to testLab: old becomes new, where old is found once.
type edit struct{ old, new string }

// loadLab reads testLab, with edits, through the lab file loader, with entry.yaml and
// files beside it and the shared apps of labs/apps. Messages name its folder testlab.
func loadLab(t *testing.T, edits []edit, files map[string]string) *labfile.Lab {
	t.Helper()
	text := testLab
	for _, e := range edits {
		require.Equal(t, 1, strings.Count(text, e.old), "the edit's %q is in the test lab once", e.old)
		text = strings.Replace(text, e.old, e.new, 1)
	}
	fsys := fstest.MapFS{
		labfile.FileName: {Data: []byte(text)},
		"entry.yaml":     {Data: []byte(entryYAML)},
	}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	appsFS, err := fs.Sub(labs.FS, "apps")
	require.NoError(t, err)
	l, err := labfile.Load(labfile.Source{FS: fsys, Dir: ".", Shown: "testlab", Apps: appsFS, AppsShown: "labs/apps", Client: apps.Client},
		labfile.FileName, "testlab")
	require.NoError(t, err)
	return l
}

// recorder is sim (embedded, so that sim's Instant is the recorder's too) that records
// what it is asked to do, in order, and can be told to refuse, fail, lie or run a hook.
type recorder struct {
	*sim.Backend
	mu  sync.Mutex
	ops []string
	// refuseKind: an Apply of a set holding an object of this kind fails.
	refuseKind string
	// failDelete: every Delete fails.
	failDelete bool
	// answer, when set, is the verdict of every call, whatever sim computes.
	answer *outcome.Verdict
	// after runs once each op has been recorded and carried out.
	after func(op string)
}

func newRecorder(t *testing.T) *recorder {
	b := sim.New()
	t.Cleanup(b.Close)
	return &recorder{Backend: b}
}

func (r *recorder) did(op string) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) done(op string) {
	if r.after != nil {
		r.after(op)
	}
}

func (r *recorder) Ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...)
}

func (r *recorder) InstallMesh(ctx context.Context, values manifest.MeshValues) error {
	op := "mesh " + values.OutboundMode()
	r.did(op)
	defer r.done(op)
	return r.Backend.InstallMesh(ctx, values)
}

func (r *recorder) Apply(ctx context.Context, set *manifest.Set) error {
	op := "apply " + set.Source
	r.did(op)
	defer r.done(op)
	for _, o := range set.Objects {
		if o.Kind == r.refuseKind {
			return errors.New(`admission webhook "validation.istio.io" denied the request`)
		}
	}
	return r.Backend.Apply(ctx, set)
}

func (r *recorder) Delete(ctx context.Context, set *manifest.Set) error {
	op := "delete " + set.Source
	r.did(op)
	defer r.done(op)
	if r.failDelete {
		return errors.New("the API server is gone")
	}
	return r.Backend.Delete(ctx, set)
}

func (r *recorder) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	op := "call " + c.String()
	r.did(op)
	defer r.done(op)
	if r.answer != nil {
		return *r.answer, nil
	}
	return r.Backend.Call(ctx, w, c)
}

// run runs l on b and returns its result and what it printed.
func run(ctx context.Context, b backend.Backend, l *labfile.Lab, opts lab.Options) (*lab.Result, string, error) {
	var out bytes.Buffer
	res, err := lab.Run(ctx, b, l, narrate.New(&out), opts)
	return res, out.String(), err
}

func callSteps(res *lab.Result) []int {
	var steps []int
	for _, c := range res.Calls {
		steps = append(steps, c.Step)
	}
	return steps
}

const missingPod = `apiVersion: v1
kind: Namespace
metadata:
  name: bare
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bare
  namespace: bare
spec:
  selector:
    matchLabels: {app: bare}
  template:
    metadata:
      labels: {app: bare}
    spec:
      containers:
      - name: bare
        image: egresslab/client:dev
`

// The engine decides whether each step passed, from the calls' verdicts and the
// actions it could or could not carry out, and records it in the Result.
func TestRunDecidesWhetherEachStepPassed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []edit
		files map[string]string
		setup func(*recorder)
		// wantFailures are how Result.Failures begin, one each.
		wantFailures []string
		// wantCalls are the steps of the calls made, in order.
		wantCalls []int
		wantOps   []string
		wantOut   []string
		notOut    []string
	}{{
		name:      "every call gets the verdict expected: the lab passes",
		wantCalls: []int{3, 5},
		wantOps: []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "call " + testURL, "apply testlab/entry.yaml",
			"call " + testURL, "delete testlab/entry.yaml"},
		wantOut: []string{"✔ verdict: BLOCKED (block_all)", "✔ verdict: ALLOWED (registered service)", "All 5 steps behaved as expected"},
		notOut:  []string{"✘", "mismatch"},
	}, {
		name:         "a call not as expected fails its step, naming the mismatch; the steps after it run",
		edits:        []edit{{blocked, "{verdict: ALLOWED}"}},
		wantFailures: []string{"step 3: verdict: want ALLOWED, got BLOCKED"},
		wantCalls:    []int{3, 5},
		wantOps: []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "call " + testURL, "apply testlab/entry.yaml",
			"call " + testURL, "delete testlab/entry.yaml"},
		wantOut: []string{"✘ verdict: BLOCKED (block_all)  expected ALLOWED", "mismatch: verdict: want ALLOWED, got BLOCKED",
			"Step 5.", "✔ verdict: ALLOWED", "1 of 5 steps did not behave as expected", "  - step 3: verdict: want ALLOWED, got BLOCKED"},
		notOut: []string{"All 5 steps behaved as expected"},
	}, {
		name:         "every way one call differs is one failure of its step",
		edits:        []edit{{allowed, `{verdict: ALLOWED, reason: PassthroughCluster, cluster: PassthroughCluster}`}},
		wantFailures: []string{`step 5: reason: want PassthroughCluster, got registered service; cluster: want "PassthroughCluster", got "outbound|80||api.example.org"`},
		wantCalls:    []int{3, 5},
	}, {
		name:         "an action that cannot be carried out fails its step and stops the lab there",
		setup:        func(r *recorder) { r.refuseKind = "ServiceEntry" },
		wantFailures: []string{`step 4: apply testlab/entry.yaml: admission webhook "validation.istio.io" denied the request`},
		wantCalls:    []int{3},
		// The entry was refused, so nothing is left to delete.
		wantOps: []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "call " + testURL, "apply testlab/entry.yaml"},
		wantOut: []string{"✘ failed: apply testlab/entry.yaml", "1 of 4 steps did not behave as expected"},
		notOut:  []string{"Step 5."},
	}, {
		name:         "a deployed pod without a sidecar proves nothing: its step fails and the lab stops",
		edits:        []edit{{"  - deploy: client\n", "  - deploy: client\n  - deploy: bare.yaml\n"}},
		files:        map[string]string{"bare.yaml": missingPod},
		wantFailures: []string{"step 2: pod bare/bare-sim runs without an istio-proxy sidecar, so it proves nothing about the mesh: namespace bare"},
		wantOps:      []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "apply testlab/bare.yaml"},
		notOut:       []string{"Step 3."},
	}, {
		name:         "what the lab applied and cannot delete at its end is a failure of its last step",
		setup:        func(r *recorder) { r.failDelete = true },
		wantFailures: []string{"step 5: delete testlab/entry.yaml, which the lab applied: the API server is gone"},
		wantCalls:    []int{3, 5},
		wantOut:      []string{"✘ failed: delete testlab/entry.yaml", "1 of 5 steps did not behave as expected"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := loadLab(t, tc.edits, tc.files)
			b := newRecorder(t)
			if tc.setup != nil {
				tc.setup(b)
			}
			res, out, err := run(context.Background(), b, l, lab.Options{})
			require.NoError(t, err, "a step that fails is in the result, not an error")
			require.Len(t, res.Failures, len(tc.wantFailures), out)
			for i, prefix := range tc.wantFailures {
				assert.True(t, strings.HasPrefix(res.Failures[i], prefix), "failure %d: %q, want it to begin %q", i, res.Failures[i], prefix)
			}
			assert.Equal(t, len(tc.wantFailures) == 0, res.Passed())
			assert.Equal(t, tc.wantCalls, callSteps(res))
			if tc.wantOps != nil {
				assert.Equal(t, tc.wantOps, b.Ops())
			}
			for _, want := range tc.wantOut {
				assert.Contains(t, out, want)
			}
			for _, not := range tc.notOut {
				assert.NotContains(t, out, not)
			}
			// Each call's own result says how it differed, and those are the failures.
			var mismatched []string
			for _, c := range res.Calls {
				assert.Equal(t, testURL, c.URL)
				if len(c.Mismatches) > 0 {
					mismatched = append(mismatched, fmt.Sprintf("step %d: %s", c.Step, strings.Join(c.Mismatches, "; ")))
				}
			}
			for _, m := range mismatched {
				assert.Contains(t, res.Failures, m)
			}
		})
	}
}

// -url and -entry replace what the lab calls and applies; the lab's expectations
// describe its own, so each call is then held to what Istio's simulator computes for
// the same mesh and objects, not to what the lab file states.
func TestOverridesHoldEachCallToTheSimulator(t *testing.T) {
	otherEntry, err := manifest.Parse("mine.yaml", []byte(strings.ReplaceAll(entryYAML, "api.example.org", "other.example.net")), apps.Client.Namespace)
	require.NoError(t, err)
	allowAll := outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered,
		Evidence: outcome.Evidence{FromConfig: true, Listener: "0.0.0.0_80", RouteConfig: "80", VirtualHost: "x:80", Cluster: "outbound|80||x"}}
	for _, tc := range []struct {
		name   string
		opts   lab.Options
		answer *outcome.Verdict
		url    string
		// want is the verdict of each call, by step; wantFailures the failures' prefixes.
		want         map[int]outcome.Kind
		wantFailures []string
		wantOps      []string
		wantOut      []string
	}{{
		name: "without options the lab's expectations hold, and a backend that disagrees fails them",
		// The backend says ALLOWED where the lab expects BLOCKED.
		answer:       &allowAll,
		url:          testURL,
		want:         map[int]outcome.Kind{3: outcome.Allowed, 5: outcome.Allowed},
		wantFailures: []string{"step 3: verdict: want BLOCKED, got ALLOWED", `step 5: cluster: want "outbound|80||api.example.org", got "outbound|80||x"`},
	}, {
		name: "-url to a host no entry opens: the lab's ALLOWED gives way to the simulator's BLOCKED",
		opts: lab.Options{URL: otherURL},
		url:  otherURL,
		want: map[int]outcome.Kind{3: outcome.Blocked, 5: outcome.Blocked},
		wantOps: []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "call " + otherURL, "apply testlab/entry.yaml",
			"call " + otherURL, "delete testlab/entry.yaml"},
		wantOut: []string{"Step 5. Call other.example.net through the entry", "expected BLOCKED", "All 5 steps behaved as expected"},
	}, {
		name: "-entry for another host: the call after it stays BLOCKED, as the simulator says",
		opts: lab.Options{Entry: otherEntry},
		url:  testURL,
		want: map[int]outcome.Kind{3: outcome.Blocked, 5: outcome.Blocked},
		wantOps: []string{"mesh REGISTRY_ONLY", "apply labs/apps/client.yaml", "call " + testURL, "apply mine.yaml",
			"call " + testURL, "delete mine.yaml"},
		wantOut: []string{"kubectl apply -n egresslab -f mine.yaml", "All 5 steps behaved as expected"},
	}, {
		name: "-entry and -url together: the user's entry opens the user's host",
		opts: lab.Options{Entry: otherEntry, URL: otherURL},
		url:  otherURL,
		want: map[int]outcome.Kind{3: outcome.Blocked, 5: outcome.Allowed},
	}, {
		name: "with -url, the simulator, not the backend, says what each call should get",
		opts: lab.Options{URL: otherURL},
		// The simulator says BLOCKED for both calls; this backend says ALLOWED.
		answer:       &allowAll,
		url:          otherURL,
		want:         map[int]outcome.Kind{3: outcome.Allowed, 5: outcome.Allowed},
		wantFailures: []string{"step 3: verdict: want BLOCKED, got ALLOWED", "step 5: verdict: want BLOCKED, got ALLOWED"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecorder(t)
			b.answer = tc.answer
			res, out, err := run(context.Background(), b, loadLab(t, nil, nil), tc.opts)
			require.NoError(t, err)
			require.Len(t, res.Failures, len(tc.wantFailures), out)
			for i, prefix := range tc.wantFailures {
				assert.True(t, strings.HasPrefix(res.Failures[i], prefix), "failure %d: %q, want it to begin %q", i, res.Failures[i], prefix)
			}
			for step, kind := range tc.want {
				v, ok := res.Verdict(step, tc.url)
				require.True(t, ok, "step %d calls %s", step, tc.url)
				assert.Equal(t, kind, v.Kind, "step %d", step)
			}
			if tc.wantOps != nil {
				assert.Equal(t, tc.wantOps, b.Ops())
			}
			for _, want := range tc.wantOut {
				assert.Contains(t, out, want)
			}
		})
	}
}

// An option the lab has nothing to replace with is refused before anything is applied.
func TestAnOverrideTheLabCannotTakeIsRefusedBeforeAnythingIsApplied(t *testing.T) {
	entry, err := manifest.Parse("mine.yaml", []byte(entryYAML), apps.Client.Namespace)
	require.NoError(t, err)
	noEntry := []edit{{"entry: entry.yaml\n", ""}}
	noURL := []edit{{"url: " + testURL + "\n", ""}}
	for _, tc := range []struct {
		name    string
		edits   []edit
		opts    lab.Options
		wantErr string
	}{
		{"-entry, on a lab with no entry", noEntry, lab.Options{Entry: entry}, "-entry: lab testlab has no entry to replace"},
		{"-url, on a lab with no url", noURL, lab.Options{URL: otherURL}, "-url: lab testlab has no main call to replace"},
		{"-url over HTTPS, for a lab's http:// url", nil, lab.Options{URL: "https://other.example.net/v1"}, "give the plain http:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecorder(t)
			res, _, err := run(context.Background(), b, loadLab(t, tc.edits, nil), tc.opts)
			require.ErrorContains(t, err, tc.wantErr)
			assert.Nil(t, res)
			assert.Empty(t, b.Ops(), "nothing is done")
		})
	}
}

// Ctrl-C (ctx cancelled) stops the lab with an error where it is: nothing more is
// applied or called, and what the lab applied is deleted. A stopped lab is not a
// failure: it did not finish.
func TestACancelledLabStopsAndCleansUp(t *testing.T) {
	const second = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: second
spec:
  hosts: [second.example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  location: MESH_EXTERNAL
`
	twoApplies := []edit{{"  - apply: entry.yaml\n", "  - apply: entry.yaml\n  - apply: second.yaml\n"}}
	for _, tc := range []struct {
		name  string
		edits []edit
		// cancelAfter is the op after which Ctrl-C is pressed.
		cancelAfter string
		// wantAfter is every op the backend is asked for after it.
		wantAfter []string
	}{{
		name:        "before the first step",
		cancelAfter: "",
		wantAfter:   nil,
	}, {
		name:        "after a call, with nothing applied yet",
		cancelAfter: "call " + testURL,
		wantAfter:   nil,
	}, {
		name:        "after an apply that ends its step: the next step does not run, the entry is deleted",
		cancelAfter: "apply testlab/entry.yaml",
		wantAfter:   []string{"delete testlab/entry.yaml"},
	}, {
		name:        "between two actions of a step: the second is not applied, the first is deleted",
		edits:       twoApplies,
		cancelAfter: "apply testlab/entry.yaml",
		wantAfter:   []string{"delete testlab/entry.yaml"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := loadLab(t, tc.edits, map[string]string{"second.yaml": second})
			b := newRecorder(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelledAt := -1
			if tc.cancelAfter == "" {
				cancel()
				cancelledAt = 0
			}
			b.after = func(op string) {
				if op == tc.cancelAfter && cancelledAt < 0 {
					cancel()
					cancelledAt = len(b.Ops())
				}
			}
			res, out, err := run(ctx, b, l, lab.Options{})
			require.ErrorIs(t, err, context.Canceled)
			assert.ErrorContains(t, err, "lab stopped")
			require.GreaterOrEqual(t, cancelledAt, 0, "the lab never did %q", tc.cancelAfter)
			assert.Equal(t, tc.wantAfter, append([]string(nil), b.Ops()[cancelledAt:]...), "what the backend was asked after Ctrl-C")
			require.NotNil(t, res)
			assert.Empty(t, res.Failures, "a stopped lab is stopped, not failed")
			assert.NotContains(t, out, "behaved as expected", "a stopped lab has no summary")
			assert.NotContains(t, out, "Step 5.")
		})
	}
}

// limited is sim whose data plane cannot do what cannot names.
type limited struct {
	*sim.Backend
	cannot map[backend.Need]string
}

func (l limited) Cannot(need backend.Need) string { return l.cannot[need] }

// A call whose verdict depends on what the backend's data plane cannot do as Envoy
// would (TLS origination, an egress gateway followed hop by hop) is skipped there, with
// the reason: not made, not a failure. Other calls are made as usual.
func TestACallTheBackendCannotMakeAsEnvoyWouldIsSkipped(t *testing.T) {
	const (
		tlsCall     = "  - call: https://api.example.org/v1\n    expect: {verdict: ALLOWED, sni: api.example.org}\n"
		gatewayCall = "  - call: http://api.example.org/v2\n    expect: {verdict: ALLOWED, gateway: {cluster: \"outbound|80||api.example.org\"}}\n"
		noTLS       = "its sidecars do not originate TLS"
		noGateway   = "it runs no egress gateway"
	)
	// Step 5 makes three calls: the lab's, one that needs TLS origination, one through a gateway.
	edits := []edit{{"    expect: " + allowed + "\n", "    expect: " + allowed + "\n" + tlsCall + gatewayCall}}
	tlsSkip := "step 5: https://api.example.org/v1 (it needs TLS origination): " + noTLS
	gatewaySkip := "step 5: http://api.example.org/v2 (it needs an egress gateway followed hop by hop): " + noGateway
	for _, tc := range []struct {
		name        string
		cannot      map[backend.Need]string
		wantSkipped []string
		wantCalls   []string
		// wantFailing: what each failure names, in order.
		wantFailing []string
		wantOut     []string
	}{{
		name:        "a backend that can: every call is made and judged",
		wantCalls:   []string{testURL, testURL, "https://api.example.org/v1", "http://api.example.org/v2"},
		wantFailing: []string{"step 5: verdict: want ALLOWED, got BLOCKED; originated TLS's SNI", "step 5: gateway: the call did not reach an egress gateway"},
	}, {
		name:        "no TLS origination",
		cannot:      map[backend.Need]string{backend.TLSOrigination: noTLS},
		wantSkipped: []string{tlsSkip},
		wantCalls:   []string{testURL, testURL, "http://api.example.org/v2"},
		wantFailing: []string{"step 5: gateway: the call did not reach an egress gateway"},
		wantOut:     []string{"– skipped: https://api.example.org/v1 (it needs TLS origination)"},
	}, {
		name:        "no egress gateway",
		cannot:      map[backend.Need]string{backend.EgressGateway: noGateway},
		wantSkipped: []string{gatewaySkip},
		wantCalls:   []string{testURL, testURL, "https://api.example.org/v1"},
		wantFailing: []string{"step 5: verdict: want ALLOWED, got BLOCKED; originated TLS's SNI"},
		wantOut:     []string{"– skipped: http://api.example.org/v2 (it needs an egress gateway followed hop by hop)"},
	}, {
		name:        "neither: both are skipped and the lab passes, listing them",
		cannot:      map[backend.Need]string{backend.TLSOrigination: noTLS, backend.EgressGateway: noGateway},
		wantSkipped: []string{tlsSkip, gatewaySkip},
		wantCalls:   []string{testURL, testURL},
		wantOut: []string{"All 5 steps behaved as expected", "Skipped on this backend (2):",
			"  - " + tlsSkip, "  - " + gatewaySkip},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := sim.New()
			t.Cleanup(s.Close)
			res, out, err := run(context.Background(), limited{s, tc.cannot}, loadLab(t, edits, nil), lab.Options{})
			require.NoError(t, err)
			assert.Equal(t, tc.wantSkipped, res.Skipped)
			var calls []string
			for _, c := range res.Calls {
				calls = append(calls, c.URL)
			}
			assert.Equal(t, tc.wantCalls, calls)
			// A skipped call is never a failure. A call made is judged: on sim the two
			// made-up expectations fail, which is how the test knows each was made.
			require.Len(t, res.Failures, len(tc.wantFailing), out)
			for i, what := range tc.wantFailing {
				assert.Contains(t, res.Failures[i], what)
			}
			for _, want := range tc.wantOut {
				assert.Contains(t, out, want)
			}
		})
	}
}
