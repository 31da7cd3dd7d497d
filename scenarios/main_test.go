// Package scenarios is egresslab's regression suite for mesh egress behaviour: every lab
// of labs/ is a scenario, an e2e-framework feature (Setup → Assess → Teardown) whose
// assessments are the lab's steps, held to the verdicts and evidence its lab file
// states. The same scenarios run on every backend:
//
//	go test ./scenarios/...                        # sim, offline
//	go test ./scenarios/... -args -backend=local   # real kube-apiserver, etcd and istiod, offline
//	go test ./scenarios/... -args -backend=kind    # a real kind cluster (Docker, internet)
//
// e2e-framework's flags pick scenarios by feature name ("NAME: title" of the lab),
// assessment (a step's title) or label (lab=NAME, mode=each mode it installs,
// shows=each reason a call expects):
//
//	go test ./scenarios/... -args -labels=shows=PassthroughCluster
//	go test ./scenarios/... -args -feature=serviceentry -fail-fast
package scenarios

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/egresslab/egresslab/harness/backend"
	_ "github.com/egresslab/egresslab/harness/backend/all" // registers every backend
	"github.com/egresslab/egresslab/harness/steps"
)

var (
	testenv env.Environment
	// skipReason is set when the asked-for backend cannot run here; every scenario skips with it.
	skipReason string
)

func TestMain(m *testing.M) {
	timeouts := backend.DefaultTimeouts()
	name := flag.String("backend", "sim", "backend to run the scenarios on: "+strings.Join(backend.Names(), ", ")+" or auto")
	require := flag.Bool("require-backend", false, "fail, instead of skipping every scenario, when the backend cannot run here")
	flag.DurationVar(&timeouts.Propagation, "propagation", timeouts.Propagation, "how long to wait for config to reach the sidecar")
	// e2e-framework's own flags (-feature, -assess, -labels, -skip-labels, -fail-fast, ...)
	// are parsed with ours, from the same command line.
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "scenarios: %v\n", err)
		os.Exit(2)
	}

	ctx := context.Background()
	p, why, err := backend.Select(ctx, *name, backend.Settings{Env: os.Getenv, Progress: os.Stderr})
	if err != nil && *require {
		fmt.Fprintf(os.Stderr, "scenarios: %v\n", err)
		os.Exit(1)
	}
	if err != nil {
		skipReason = err.Error()
		fmt.Fprintf(os.Stderr, "scenarios: every scenario will skip: %s\n", skipReason)
		os.Exit(m.Run())
	}
	fmt.Fprintf(os.Stderr, "scenarios: backend %s (%s)\n", p.Name(), why)

	// Ctrl-C (or go test's own SIGTERM) anywhere in the run, not only during Setup: stop
	// what is under way, let the backend clean up (a kind cluster is deleted unless
	// EGRESSLAB_KEEP=1; local processes are stopped), and exit 130.
	ctx, cancel := context.WithCancel(ctx)
	testenv = env.NewWithConfig(cfg).WithContext(steps.WithProvider(ctx, p, timeouts))
	stopWatching := func() {}
	if lc, ok := p.(backend.Lifecycle); ok {
		testenv.Setup(func(ctx context.Context, _ *envconf.Config) (context.Context, error) { return lc.Setup(ctx) })
		testenv.Finish(func(ctx context.Context, _ *envconf.Config) (context.Context, error) { return lc.Finish(ctx) })
		stopWatching = backend.FinishOnSignal(lc, cancel, os.Stderr, func() { os.Exit(130) })
	}
	code := testenv.Run(m)
	stopWatching()
	cancel()
	os.Exit(code)
}
