package narrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
)

func TestStoryWithoutColorHasNoEscapes(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out, narrate.WithColor(false))
	n.Banner("title", "a line")
	n.Step("First", "because")
	n.Command("kubectl get pods")
	n.Verdict(outcome.Verdict{Kind: outcome.Blocked, Reason: "block_all",
		Evidence: outcome.Evidence{FromConfig: true, VirtualHost: "block_all"}}, outcome.Blocked, nil)
	n.Finish(nil, nil)
	s := out.String()
	assert.NotContains(t, s, "\x1b[")
	for _, want := range []string{"Step 1. First", "$ kubectl get pods", "✔ verdict: BLOCKED (block_all)",
		"virtual host", "(step 1 took", "All 1 steps behaved as expected"} {
		assert.Contains(t, s, want)
	}
}

func TestColorWhenAsked(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out, narrate.WithColor(true))
	n.Step("First", "")
	assert.Contains(t, out.String(), "\x1b[")
}

// openPTY opens a pseudo-terminal pair and returns its terminal end.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (/dev/ptmx: %v): cannot show colour on a real terminal", err)
	}
	t.Cleanup(func() { master.Close() })
	unlock := 0
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatalf("unlock pty: %v", errno)
	}
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Fatalf("pty number: %v", errno)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { tty.Close() })
	return tty
}

func TestColourOnlyOnARealTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	assert.False(t, narrate.ColorFor(devNull, "", "xterm"), "/dev/null is a character device, not a terminal")

	tty := openPTY(t)
	assert.True(t, narrate.ColorFor(tty, "", "xterm"))
	assert.False(t, narrate.ColorFor(tty, "1", "xterm"), "NO_COLOR wins")
	assert.False(t, narrate.ColorFor(tty, "", "dumb"), "a dumb terminal shows escape codes as text")
}

// Text is wrapped to the terminal's width, never inside a word: at 40 columns a line
// of 78 broke words wherever the terminal cut it.
func TestTextIsWrappedToTheTerminalsWidth(t *testing.T) {
	tty := openPTY(t)
	require.NoError(t, setWinsize(tty, 40))
	assert.Equal(t, 40, narrate.Width(tty, ""))
	require.NoError(t, setWinsize(tty, 200))
	assert.Equal(t, narrate.DefaultWidth, narrate.Width(tty, ""), "no wider than reads well")
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	assert.Equal(t, 50, narrate.Width(devNull, "50"), "COLUMNS, where output is no terminal")
	assert.Equal(t, narrate.DefaultWidth, narrate.Width(devNull, ""))
	assert.Equal(t, 40, narrate.Width(nil, "40"), "output that is not a file: COLUMNS")

	var out bytes.Buffer
	n := narrate.New(&out, narrate.WithWidth(40))
	n.Banner("A lab", "Istio's config generator and simulator judge every call from the sidecar configuration istiod would send.")
	n.Say("The sidecar sends the call to the PassthroughCluster, as the mesh-wide mode says.")
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		assert.LessOrEqual(t, len(line), 40, "%q", line)
	}
	assert.Contains(t, out.String(), "PassthroughCluster,", "words are kept whole")
}

func setWinsize(tty *os.File, cols uint16) error {
	ws := struct{ rows, cols, x, y uint16 }{24, cols, 0, 0}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); errno != 0 {
		return errno
	}
	return nil
}

func TestMismatchIsShownAndTheSummaryListsTheFailuresItIsGiven(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out)
	n.Step("Call", "")
	n.Verdict(outcome.Verdict{Kind: outcome.Allowed}, outcome.Blocked, []string{"verdict: want BLOCKED, got ALLOWED"})
	n.Finish([]string{"step 1: verdict: want BLOCKED, got ALLOWED"}, []string{"step 1: not shown when a step failed"})
	s := out.String()
	assert.Contains(t, s, "✘ verdict: ALLOWED")
	assert.Contains(t, s, "expected BLOCKED")
	assert.Contains(t, s, "mismatch: verdict: want BLOCKED, got ALLOWED")
	assert.Contains(t, s, "1 of 1 steps did not behave as expected")
	assert.Contains(t, s, "  - step 1: verdict: want BLOCKED, got ALLOWED")
	assert.NotContains(t, s, "behaved as expected (")
	assert.NotContains(t, s, "Skipped on this backend")
}

// The narrator prints the verdict it is handed and keeps no record of it: the summary
// is what the engine (harness/lab) passes to Finish, whatever was printed before.
func TestTheSummaryIsTheEnginesNotTheNarrators(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out)
	n.Step("Call", "")
	n.Verdict(outcome.Verdict{Kind: outcome.Allowed}, outcome.Blocked, []string{"verdict: want BLOCKED, got ALLOWED"})
	n.Skip("http://example.com/", "this backend cannot")
	n.Failed(errors.New("apply x.yaml: denied"))
	n.Finish(nil, []string{"step 1: http://example.com/: this backend cannot"})
	s := out.String()
	assert.Contains(t, s, "– skipped: http://example.com/")
	assert.Contains(t, s, "✘ failed: apply x.yaml: denied")
	assert.Contains(t, s, "All 1 steps behaved as expected")
	assert.Contains(t, s, "Skipped on this backend (1):\n  - step 1: http://example.com/: this backend cannot")
	assert.NotContains(t, s, "did not behave as expected")
}

func TestInstructorModeWaitsForEnterBeforeEachStep(t *testing.T) {
	var out bytes.Buffer
	in, enter := io.Pipe()
	n := narrate.New(&out, narrate.WithPause(in))
	paused := make(chan error)
	go func() { paused <- n.Pause(context.Background()) }()
	// This asserts that nothing happens, so it can only watch for a while: a slow
	// machine makes the check weaker, never a false failure.
	select {
	case err := <-paused:
		t.Fatalf("Pause returned before Enter: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	_, _ = enter.Write([]byte("\n"))
	require.NoError(t, <-paused)
	n.Step("One", "")
	assert.Contains(t, out.String(), "[press Enter for step 1]")
}

// Ctrl-C at the prompt did nothing until Enter was pressed, and then the next step ran
// before the lab stopped. Pause must return at once, with the context's error.
func TestCtrlCAtThePromptStopsAtOnce(t *testing.T) {
	in, _ := io.Pipe() // nobody presses Enter
	prompted := &promptWatch{seen: make(chan struct{})}
	n := narrate.New(prompted, narrate.WithPause(in))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	paused := make(chan error, 1)
	go func() { paused <- n.Pause(ctx) }()
	select {
	case <-prompted.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("Pause never prompted for Enter")
	}
	cancel() // Ctrl-C while Pause waits at the prompt
	// Nobody ever presses Enter: a Pause that waited for it would never return.
	select {
	case err := <-paused:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Pause went on waiting for Enter after Ctrl-C")
	}
}

// promptWatch closes seen when the narrator prints the prompt for Enter.
type promptWatch struct {
	once sync.Once
	seen chan struct{}
}

func (p *promptWatch) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("[press Enter for step")) {
		p.once.Do(func() { close(p.seen) })
	}
	return len(b), nil
}

func TestDiffShowsAddedAndRemovedLines(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out)
	n.Diff("config", "before", "name: block_all\n", "after", "name: jsonplaceholder.typicode.com:80\n")
	assert.Contains(t, out.String(), "-name: block_all")
	assert.Contains(t, out.String(), "+name: jsonplaceholder.typicode.com:80")
}
