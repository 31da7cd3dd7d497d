// Package steps turns lab files into e2e-framework features, in the manner of
// e2e-framework's envfuncs: open a backend, run each step of a lab as an assessment,
// delete what the lab applied, release the backend. State (the provider, the open
// backend, the lab's run) travels in the context from Setup to Assess to Teardown.
package steps

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/narrate"
)

type (
	providerKey struct{}
	timeoutsKey struct{}
	backendKey  struct{}
	releaseKey  struct{}
)

// WithProvider puts the provider every scenario opens its backend from, and the run's
// timeouts, into ctx.
func WithProvider(ctx context.Context, p backend.Provider, t backend.Timeouts) context.Context {
	return context.WithValue(context.WithValue(ctx, providerKey{}, p), timeoutsKey{}, t)
}

func timeouts(ctx context.Context) backend.Timeouts {
	if t, ok := ctx.Value(timeoutsKey{}).(backend.Timeouts); ok {
		return t
	}
	return backend.DefaultTimeouts()
}

// Backend is the backend opened by OpenBackend.
func Backend(ctx context.Context) backend.Backend {
	b, _ := ctx.Value(backendKey{}).(backend.Backend)
	return b
}

// OpenBackend opens a backend from the context's provider for this feature.
func OpenBackend() features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		p, ok := ctx.Value(providerKey{}).(backend.Provider)
		if !ok {
			t.Fatal("no backend provider in the context: TestMain must call steps.WithProvider")
		}
		b, release, err := p.Open(ctx)
		if err != nil {
			t.Fatalf("open backend %s: %v", p.Name(), err)
		}
		ctx = context.WithValue(ctx, backendKey{}, b)
		return context.WithValue(ctx, releaseKey{}, release)
	}
}

// ReleaseBackend gives back what OpenBackend took.
func ReleaseBackend() features.Func {
	return func(ctx context.Context, _ *testing.T, _ *envconf.Config) context.Context {
		if release, ok := ctx.Value(releaseKey{}).(func()); ok && release != nil {
			release()
		}
		return ctx
	}
}

// Lab is a lab file as an e2e-framework feature, Setup → Assess → Teardown: Setup opens
// the backend; each step of the lab is one assessment, carried out by the same engine
// as the narrated lab and held to the verdicts and evidence the lab file states;
// Teardown deletes what the lab applied. A step that could not be carried out fails,
// and the steps after it skip: each builds on the one before.
//
// The feature is named after the lab's title and labelled lab=NAME, mode=each mode it
// installs and shows=each reason a call expects, for e2e-framework's -feature and
// -labels flags.
func Lab(l *labfile.Lab) *features.FeatureBuilder {
	f := features.New(l.Name+": "+l.Title).WithLabel("lab", l.Name)
	labelled := map[string]bool{}
	label := func(key, value string) {
		if value != "" && !labelled[key+"="+value] {
			labelled[key+"="+value] = true
			f = f.WithLabel(key, value)
		}
	}
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			label("mode", a.Mode)
			if a.Call != nil {
				label("shows", a.Call.Expect.Reason)
			}
		}
	}
	f = f.WithSetup("open backend", OpenBackend()).
		WithSetup("start the lab", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			t.Helper()
			run := &labRun{}
			r, err := lab.Start(mustBackend(ctx, t), l, narrate.New(&run.out), lab.Options{Propagation: timeouts(ctx).Propagation})
			if err != nil {
				t.Fatalf("start lab %s: %v", l.Name, err)
			}
			run.Runner = r
			return context.WithValue(ctx, labRunKey{}, run)
		})
	for i, s := range l.Steps {
		f = f.Assess(fmt.Sprintf("step %d: %s", i+1, s.Title), func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			t.Helper()
			run := labRunOf(ctx, t)
			if run.stopped != "" {
				t.Skipf("not run: %s, and each step builds on the one before", run.stopped)
			}
			// Each step builds on the ones before it. e2e-framework skips the assessments
			// -assess does not name, so a partial run (-assess='step 5') first carries
			// out the steps it skipped; their failures are this step's too.
			for ; run.next < i; run.next++ {
				t.Logf("step %d is carried out first: step %d builds on it", run.next+1, i+1)
				if err := run.Step(ctx, run.next); err != nil {
					run.stopped = fmt.Sprintf("step %d could not be carried out", run.next+1)
					t.Fatalf("step %d, before step %d, could not be carried out: %v", run.next+1, i+1, err)
				}
			}
			for _, m := range run.Result().Failures[run.reported:] {
				t.Errorf("%s (in a step carried out first)", m)
			}
			run.next = i + 1
			failed, skipped := len(run.Result().Failures), len(run.Result().Skipped)
			err := run.Step(ctx, i)
			t.Logf("the lab's narration:\n%s", run.out.String())
			run.out.Reset()
			if err != nil {
				run.stopped = fmt.Sprintf("step %d could not be carried out", i+1)
				t.Fatalf("step %d (%s) could not be carried out: %v", i+1, s.Title, err)
			}
			for _, m := range run.Result().Failures[failed:] {
				t.Error(m)
			}
			run.reported = len(run.Result().Failures)
			if s := run.Result().Skipped[skipped:]; len(s) > 0 && !t.Failed() {
				t.Skipf("skipped on %s: %s", mustBackend(ctx, t).Name(), strings.Join(s, "; "))
			}
			return ctx
		})
	}
	return f.WithTeardown("delete what the lab applied", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		if err := labRunOf(ctx, t).Cleanup(ctx); err != nil {
			t.Error(err)
		}
		return ctx
	})
}

type labRunKey struct{}

// labRun is a lab's run as its feature's steps share it.
type labRun struct {
	*lab.Runner
	out      bytes.Buffer // the narration of the step under way
	stopped  string       // why the remaining steps do not run
	next     int          // the step to carry out next (0-based)
	reported int          // the failures already reported by a step's test
}

func labRunOf(ctx context.Context, t *testing.T) *labRun {
	t.Helper()
	run, ok := ctx.Value(labRunKey{}).(*labRun)
	if !ok {
		t.Fatal("no lab run in the context: the feature's setup did not start it")
	}
	return run
}

func mustBackend(ctx context.Context, t *testing.T) backend.Backend {
	t.Helper()
	b := Backend(ctx)
	if b == nil {
		t.Fatal("no backend in the context: start the feature with steps.OpenBackend()")
	}
	return b
}
