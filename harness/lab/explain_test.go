package lab_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/outcome"
)

// A TCP connection is explained by the listener that took it: the whole port, one
// address, an address istiod allocated (reached through the sidecar's DNS proxy), or,
// where the lab cannot name the listener in advance, none.
func TestExplainATCPConnectionByItsListener(t *testing.T) {
	call := backend.MustCall("tcp://orders.db.example:5432")
	const cluster = "outbound|5432||orders.db.example"
	for _, tc := range []struct {
		listener string
		says     string
		not      string
	}{
		{"0.0.0.0_5432", "takes every connection to port 5432, whatever host", "allocated"},
		{"203.0.113.20_5432", "takes every connection to 203.0.113.20:5432, whatever host", "allocated"},
		{"240.240.0.4_5432", "takes every connection to 240.240.0.4:5432, the address istiod allocated for orders.db.example, which the sidecar's DNS proxy gave the app", "port 5432,"},
		{"", "A TCP listener of the sidecar takes the connection by its address and port", "listener  "},
	} {
		v := outcome.Verdict{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Evidence: outcome.Evidence{Listener: tc.listener, Cluster: cluster}}
		got := lab.Explain(v, call)
		assert.Contains(t, got, tc.says, tc.listener)
		assert.Contains(t, got, cluster, tc.listener)
		assert.NotContains(t, got, tc.not, tc.listener)
	}
}
