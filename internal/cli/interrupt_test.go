package cli_test

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/internal/cli"
	"github.com/egresslab/egresslab/internal/syncbuf"
)

// The first Ctrl-C cancels the run so that it cleans up; a second quits at once, even
// when the first's cleanup never ends (it used to be swallowed: only SIGKILL ended a
// program stuck after the first).
func TestASecondCtrlCQuitsAtOnce(t *testing.T) {
	sig := make(chan os.Signal, 2)
	var out syncbuf.Buffer
	exited := make(chan int, 1)
	ctx, stop := cli.OnInterrupt(context.Background(), sig, &out, func(code int) { exited <- code })
	defer stop()

	sig <- syscall.SIGINT
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first Ctrl-C did not cancel the run")
	}
	assert.Contains(t, out.String(), "stopping and cleaning up (press Ctrl-C again to quit at once)")
	assert.Empty(t, exited, "the first Ctrl-C leaves the cleanup to the run")

	sig <- syscall.SIGINT
	select {
	case code := <-exited:
		assert.Equal(t, cli.ExitInterrupted, code)
	case <-time.After(10 * time.Second):
		t.Fatal("the second Ctrl-C did not quit")
	}
	assert.Contains(t, out.String(), "quitting without cleaning up")
}

// A run that ends on its own stops the watch: no signal is read after it, so none
// quits the program while it exits with its own code.
func TestTheWatchEndsWithTheRun(t *testing.T) {
	sig := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	ctx, stop := cli.OnInterrupt(context.Background(), sig, &bytes.Buffer{}, func(code int) { exited <- code })
	stop()
	require.Error(t, ctx.Err(), "stop cancels the context")
	sig <- syscall.SIGINT
	sig <- syscall.SIGINT
	assert.Len(t, sig, 2, "the signals are left unread")
	assert.Empty(t, exited)
}
