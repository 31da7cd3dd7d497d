package steps_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/labs"
)

// recording is a sim provider whose backends record the calls made on them.
type recording struct {
	mu    sync.Mutex
	calls []string
}

func (r *recording) Name() string { return "sim" }

func (r *recording) Open(context.Context) (backend.Backend, func(), error) {
	b := sim.New()
	return recorder{Backend: b, r: r}, b.Close, nil
}

type recorder struct {
	*sim.Backend
	r *recording
}

func (b recorder) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	v, err := b.Backend.Call(ctx, w, c)
	b.r.mu.Lock()
	b.r.calls = append(b.r.calls, string(v.Kind))
	b.r.mu.Unlock()
	return v, err
}

// A partial run (-assess='step 5', as docs/scenarios.md shows) carries out the steps before it
// first: step 5 of the serviceentry lab calls through the entry step 4 applies, on the
// mesh step 1 installs. e2e-framework skips the other assessments, so step 5 ran on a
// backend with no mesh and could not be carried out.
func TestAPartialRunCarriesOutTheStepsItBuildsOn(t *testing.T) {
	l, err := labs.Load("serviceentry")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{}
	cfg := envconf.New().WithAssessmentRegex("step 5")
	testenv := env.NewWithConfig(cfg).WithContext(steps.WithProvider(context.Background(), rec, backend.DefaultTimeouts()))
	testenv.Test(t, steps.Lab(l).WithTeardown("release backend", steps.ReleaseBackend()).Feature())
	assert.Equal(t, []string{"BLOCKED", "ALLOWED"}, rec.calls, "step 3's call, carried out first, then step 5's; nothing after")
}
