package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/internal/suggest"
)

// The replay can fail: with one entry taken out of what is applied, its call is
// BLOCKED, and the replay says so with the evidence and exits 1, so that runSuggest
// writes nothing. (The entries suggest writes always pass it; this is the proof that
// passing means something.)
func TestAReplayedCallThatIsNotAllowedFailsTheSuggestion(t *testing.T) {
	const log = `[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684" "jsonplaceholder.typicode.com" "203.0.113.61:80" PassthroughCluster 10.244.0.8:57672 203.0.113.61:80 10.244.0.8:57658 - allow_any
[2026-11-29T10:07:00.000Z] "- - -" 0 - - - "-" 96 220 4100 - "-" "-" "-" "-" "203.0.113.10:5432" PassthroughCluster 10.244.0.8:44000 203.0.113.10:5432 10.244.0.8:43998 - -
`
	obs := suggest.NewObservations()
	require.NoError(t, obs.Read(context.Background(), suggest.Source{Name: "a.log"}, strings.NewReader(log)))
	sg, err := suggest.Build(obs)
	require.NoError(t, err)
	require.Len(t, sg.Set.Objects, 2)

	var errb bytes.Buffer
	assert.Equal(t, ExitOK, replay(context.Background(), Streams{Err: &errb}, sg), errb.String())

	sg.Set = &manifest.Set{Source: sg.Set.Source, Objects: sg.Set.Objects[1:]} // the database's entry only
	errb.Reset()
	code := replay(context.Background(), Streams{Err: &errb}, sg)
	assert.Equal(t, ExitUnexpected, code)
	assert.Contains(t, errb.String(), "egresslab suggest: http://jsonplaceholder.typicode.com:80/ from egresslab/client: "+
		"expected ALLOWED with the entries, got BLOCKED (block_all)")
	assert.Contains(t, errb.String(), "virtual host block_all")
	assert.Contains(t, errb.String(), "The entries do not keep every call working: nothing was written.")
}
