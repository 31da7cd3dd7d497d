package narrate_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

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
	n.Finish()
	s := out.String()
	assert.NotContains(t, s, "\x1b[")
	for _, want := range []string{"Step 1. First", "$ kubectl get pods", "verdict: BLOCKED (block_all)",
		"virtual host", "(step 1 took", "All 1 steps behaved as expected"} {
		assert.Contains(t, s, want)
	}
	assert.Empty(t, n.Failures())
}

func TestColorWhenAsked(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out, narrate.WithColor(true))
	n.Step("First", "")
	assert.Contains(t, out.String(), "\x1b[")
}

func TestNoColorEnvironmentWins(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, narrate.ColorFor(f))
}

func TestMismatchIsCountedAndSummarised(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out)
	n.Step("Call", "")
	n.Verdict(outcome.Verdict{Kind: outcome.Allowed}, outcome.Blocked, []string{"verdict: want BLOCKED, got ALLOWED"})
	n.Finish()
	assert.Equal(t, []string{"step 1: verdict: want BLOCKED, got ALLOWED"}, n.Failures())
	assert.Contains(t, out.String(), "1 of 1 steps did not behave as expected")
}

func TestInstructorModeWaitsForEnterBeforeEachStep(t *testing.T) {
	var out bytes.Buffer
	in := strings.NewReader("\n\n")
	n := narrate.New(&out, narrate.WithPause(in))
	n.Step("One", "")
	n.Step("Two", "")
	assert.Equal(t, 2, strings.Count(out.String(), "[press Enter for step"))
	assert.Equal(t, 0, in.Len(), "each step consumed one line of input")
}

func TestDiffShowsAddedAndRemovedLines(t *testing.T) {
	var out bytes.Buffer
	n := narrate.New(&out)
	n.Diff("config", "before", "name: block_all\n", "after", "name: jsonplaceholder.typicode.com:80\n")
	assert.Contains(t, out.String(), "-name: block_all")
	assert.Contains(t, out.String(), "+name: jsonplaceholder.typicode.com:80")
}
