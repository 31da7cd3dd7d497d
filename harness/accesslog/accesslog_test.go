package accesslog_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/pkg/model"

	"github.com/egresslab/egresslab/harness/accesslog"
)

// Istio's format string is itself a line of the format, each field its operator: split
// it, and each place must hold the operator its constant's comment names. A new Istio
// that adds or moves a field fails here, not in a lab on a cluster.
func TestThePlacesAreIstios(t *testing.T) {
	f := accesslog.Fields(model.EnvoyTextLogFormat)
	require.Len(t, f, accesslog.NumFields, "%q", f)
	for place, field := range f {
		if place == accesslog.StartTime {
			field = strings.Trim(field, "[]") // the one field in brackets
		}
		assert.Equal(t, field, accesslog.Operators[place], "field %d", place)
	}
	// The places the kind backend and suggest read, by the operator each must hold.
	assert.Equal(t, "%REQ(:AUTHORITY)%", accesslog.Operators[accesslog.Authority])
	assert.Equal(t, "%UPSTREAM_CLUSTER_RAW%", accesslog.Operators[accesslog.Cluster])
	assert.Equal(t, "%DOWNSTREAM_LOCAL_ADDRESS%", accesslog.Operators[accesslog.DownstreamLocal])
	assert.Equal(t, "%DOWNSTREAM_REMOTE_ADDRESS%", accesslog.Operators[accesslog.DownstreamRemote])
	assert.Equal(t, "%REQUESTED_SERVER_NAME%", accesslog.Operators[accesslog.SNI])
	assert.Equal(t, "%REQ(X-REQUEST-ID)%", accesslog.Operators[accesslog.RequestID])
}

func TestFieldsKeepsAQuotedStringWhole(t *testing.T) {
	// A passed-through call on the offline kind run: the request, user agent and
	// authority are quoted and hold spaces or nothing.
	const line = `[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab client/1.0" "18a47684" "jsonplaceholder.typicode.com" "10.244.0.4:80" PassthroughCluster 10.244.0.8:57672 10.244.0.4:80 10.244.0.8:57658 - allow_any`
	f := accesslog.Fields(line)
	require.Len(t, f, accesslog.NumFields)
	assert.Equal(t, "GET /todos/1 HTTP/1.1", f[accesslog.Request])
	assert.Equal(t, "egresslab client/1.0", f[accesslog.UserAgent])
	assert.Equal(t, "jsonplaceholder.typicode.com", f[accesslog.Authority])
	assert.Equal(t, "PassthroughCluster", f[accesslog.Cluster])
	assert.Equal(t, "allow_any", f[accesslog.Route])

	// A line cut inside a quoted field: the open quote takes the rest, and the line
	// has fewer fields than a whole one.
	cut := accesslog.Fields(`[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egress`)
	assert.Equal(t, "egress", cut[len(cut)-1])
	assert.Less(t, len(cut), accesslog.NumFields)

	// AppendFields reuses the slice it is given.
	buf := make([]string, 0, accesslog.NumFields)
	again := accesslog.AppendFields(buf[:0], line)
	assert.Equal(t, f, again)
	assert.Same(t, &buf[:1][0], &again[0], "no new slice for a line that fits")
}
