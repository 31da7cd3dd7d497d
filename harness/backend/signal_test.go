package backend_test

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
)

type recordingLifecycle struct {
	mu       sync.Mutex
	finished bool
}

func (r *recordingLifecycle) Setup(ctx context.Context) (context.Context, error) { return ctx, nil }
func (r *recordingLifecycle) Finish(ctx context.Context) (context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = true
	return ctx, nil
}

// Ctrl-C in the middle of the scenarios (after Setup) must still clean up: before, only
// Setup watched for it, and a kind cluster was left behind.
func TestCtrlCDuringTheRunCancelsFinishesAndExits(t *testing.T) {
	lc := &recordingLifecycle{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan struct{})
	var out bytes.Buffer
	stop := backend.FinishOnSignal(lc, cancel, &out, func() { close(exited) })
	defer stop()

	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGINT))
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("no exit 5 s after SIGINT")
	}
	assert.Error(t, ctx.Err(), "the run's context is cancelled")
	lc.mu.Lock()
	assert.True(t, lc.finished, "Finish ran before exit")
	lc.mu.Unlock()
	assert.Contains(t, out.String(), "interrupt: stopping the run and cleaning up")
}

// After stop, a Ctrl-C is no longer the watch's: it neither cancels nor finishes the
// run, nor exits.
func TestAFinishedRunStopsWatching(t *testing.T) {
	lc := &recordingLifecycle{}
	acted := make(chan string, 3)
	stop := backend.FinishOnSignal(lc, func() { acted <- "cancel" }, &bytes.Buffer{}, func() { acted <- "exit" })
	stop()
	// The test's own handler takes the signal, so that it does not end the test binary;
	// once it has it, the signal has been delivered to every handler it will reach.
	own := make(chan os.Signal, 1)
	signal.Notify(own, syscall.SIGINT)
	defer signal.Stop(own)
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGINT))
	select {
	case <-own:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT never arrived")
	}
	// That nothing happens can only be watched for a while: a watch that stop left
	// running would have cancelled the run at once, so a short look finds it, and a slow
	// machine can only make the look miss it, never fail a correct stop.
	select {
	case what := <-acted:
		t.Fatalf("the watch went on after stop: %s", what)
	case <-time.After(100 * time.Millisecond):
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	assert.False(t, lc.finished, "Finish ran after stop")
}
