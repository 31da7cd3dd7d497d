// Package scenarios is egresslab's regression suite for mesh egress behaviour. Each
// scenario is an e2e-framework feature (Setup → Assess → Teardown) that applies the
// project's manifests, makes a call from the client and expects a verdict with its
// evidence. The same scenarios run on every backend:
//
//	go test ./scenarios/...                        # sim, offline
//	go test ./scenarios/... -args -backend=local   # real kube-apiserver, etcd and istiod, offline
//	go test ./scenarios/... -args -backend=kind    # a real kind cluster (Docker, internet)
package scenarios

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

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
	name := flag.String("backend", "sim", "backend to run the scenarios on: "+strings.Join(backend.Names(), ", ")+" or auto")
	require := flag.Bool("require-backend", false, "fail, instead of skipping every scenario, when the backend cannot run here")
	flag.DurationVar(&steps.Propagation, "propagation", 60*time.Second, "how long to wait for config to reach the sidecar")
	flag.Parse()

	ctx := context.Background()
	p, why, err := backend.Select(ctx, *name, os.Getenv, os.Stderr)
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
	testenv = env.NewWithConfig(envconf.New()).WithContext(steps.WithProvider(ctx, p))
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
