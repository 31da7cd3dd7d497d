package scenarios

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A user who types `make e2e` asked for kind: where kind cannot run, the target must
// fail with the preflight's reason, not pass with every scenario skipped.
func TestMakeE2ERequiresTheKindBackend(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed: the Makefile cannot be read the way a user runs it")
	}
	out, err := exec.Command("make", "-n", "-C", "..", "e2e").CombinedOutput()
	require.NoError(t, err, string(out))
	var cmd string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "go test ./scenarios/") {
			cmd = l
		}
	}
	require.NotEmpty(t, cmd, "make e2e runs the scenarios: %s", out)
	assert.Contains(t, cmd, "-backend=kind")
	assert.Contains(t, cmd, "-require-backend")
}
