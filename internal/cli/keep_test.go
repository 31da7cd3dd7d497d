package cli_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/internal/cli"
)

// recorder is a backend that records the Keep a command hands it, and opens nothing.
var recorder struct {
	sync.Mutex
	keep []backend.Keep
}

const recorderName = "keep-recorder"

func init() {
	backend.Register(backend.Registration{
		Name:      recorderName,
		Priority:  -100, // never picked by auto: sim always can run
		Available: func(context.Context, backend.Env) (bool, string) { return true, "a test's" },
		ProviderFor: func(s backend.Settings) (backend.Provider, error) {
			recorder.Lock()
			defer recorder.Unlock()
			recorder.keep = append(recorder.keep, s.Keep)
			return nil, errors.New("the recorder opens nothing")
		},
	})
}

// keepOf runs the command on the recorder and returns the Keep it handed the backend.
func keepOf(t *testing.T, args ...string) backend.Keep {
	t.Helper()
	recorder.Lock()
	recorder.keep = nil
	recorder.Unlock()
	code, _, errs := run(t, "", append(args, "-backend="+recorderName)...)
	require.Equal(t, cli.ExitInfrastructure, code, errs)
	require.Contains(t, errs, "the recorder opens nothing")
	recorder.Lock()
	defer recorder.Unlock()
	require.Len(t, recorder.keep, 1)
	return recorder.keep[0]
}

// The lab and check commands keep a kind cluster by default (a workshop runs the labs
// one after another on one cluster); -keep=false, which wins over EGRESSLAB_KEEP, does
// not. The scenarios' rule (deleted unless EGRESSLAB_KEEP=1) is backend.Keep's zero value.
func TestTheLabAndCheckCommandsKeepTheClusterByDefault(t *testing.T) {
	url := "http://jsonplaceholder.typicode.com/todos/1"
	for _, args := range [][]string{{"lab", "serviceentry"}, {"check", url}} {
		k := keepOf(t, args...)
		assert.True(t, k.ByDefault, "%s keeps by default", args[0])
		assert.Nil(t, k.Flag, "%s without -keep leaves it to EGRESSLAB_KEEP", args[0])

		k = keepOf(t, append(args, "-keep=false")...)
		assert.True(t, k.ByDefault)
		require.NotNil(t, k.Flag, "%s -keep=false", args[0])
		assert.False(t, *k.Flag)

		k = keepOf(t, append(args, "-keep")...)
		require.NotNil(t, k.Flag, "%s -keep", args[0])
		assert.True(t, *k.Flag)
	}
}
