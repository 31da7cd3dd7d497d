package backend_test

import (
	"bytes"
	"context"
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

func TestAFinishedRunStopsWatching(t *testing.T) {
	lc := &recordingLifecycle{}
	stop := backend.FinishOnSignal(lc, func() {}, &bytes.Buffer{}, func() { t.Error("exit after stop") })
	stop()
	time.Sleep(20 * time.Millisecond)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	assert.False(t, lc.finished)
}
