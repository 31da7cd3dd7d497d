package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	kindexec "sigs.k8s.io/kind/pkg/exec"
)

// kind's error for a failed `kubeadm init` names the command only; what kubeadm said is in
// the RunError it wraps. The error users see must carry kubeadm's error line, not the Go
// stack trace kubeadm prints after it.
func TestCommandOutputIsKubeadmsErrorNotItsStackTrace(t *testing.T) {
	var out []string
	for i := 0; i < 40; i++ {
		out = append(out, fmt.Sprintf("I1125 round_trippers.go:632] POST %d", i))
	}
	out = append(out, "error: error execution phase wait-control-plane: could not bootstrap the admin user",
		"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow.(*Runner).Run.func1",
		"\tk8s.io/kubernetes@v1.35.8/cmd/kubeadm/app/cmd/phases/workflow/runner.go:262")
	inner := &kindexec.RunError{Command: []string{"docker", "exec", "kubeadm", "init"}, Output: []byte(strings.Join(out, "\n")),
		Inner: errors.New("exit status 1")}
	err := fmt.Errorf("failed to init node with kubeadm: %w", inner)

	got := commandOutput(err)
	assert.Contains(t, got, "error execution phase wait-control-plane")
	assert.NotContains(t, got, "runner.go:262")
	assert.Contains(t, got, "POST 39")
	assert.NotContains(t, got, "POST 15]", "only the last lines")
	assert.Equal(t, outputLines, strings.Count(got, "\n    "))

	assert.Empty(t, commandOutput(errors.New("no command behind it")))
}
