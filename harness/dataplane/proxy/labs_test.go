package proxy

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
)

// standInBackend is sim whose calls are made for real through the stand-in, as on the
// offline kind cluster: the config is what sim generates for the calling workload, the
// stand-in decides and acts on it, the client's own code makes the call, and the verdict
// is read from what the client saw; the access-log line is found as the kind backend
// finds it. Like kind, it cannot follow a call into an egress gateway.
type standInBackend struct {
	*sim.Backend
	t  *testing.T
	in *internet

	mu   sync.Mutex
	logs []*testProxy
}

func (b *standInBackend) Name() string { return "stand-in" }

func (b *standInBackend) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	held, err := b.Simulation(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	tp := standInDialedAt(b.t, held, b.in, netip.MustParseAddr(dataplane.ExternalAddress))
	b.mu.Lock()
	b.logs = append(b.logs, tp)
	b.mu.Unlock()
	return outcome.Classify(tp.call(b.t, c.String(), b.in.roots)), nil
}

// AccessLogEntry finds the call's line in the stand-in's log by the client's address,
// with the kind backend's own reader.
func (b *standInBackend) AccessLogEntry(_ context.Context, _ backend.Workload, c backend.Call, client string, _ time.Time) (backend.AccessLogEntry, error) {
	e, _, err := b.lineOf(c, client)
	return e, err
}

// lineOf is the call's access-log line and the stand-in that wrote it.
func (b *standInBackend) lineOf(c backend.Call, client string) (backend.AccessLogEntry, *testProxy, error) {
	b.mu.Lock()
	logs := append([]*testProxy{}, b.logs...)
	b.mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, tp := range logs {
			if e, ok := kind.LastAccessLogEntry(tp.log(), c, client); ok {
				return e, tp, nil
			}
		}
		if time.Now().After(deadline) {
			return backend.AccessLogEntry{}, nil, fmt.Errorf("no line from %s for %s", client, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *standInBackend) Cannot(need backend.Need) string {
	if need == backend.EgressGateway {
		return "the stand-in does not serve an egress gateway's listeners"
	}
	return ""
}

// matchesSNI is Istio's rule for adding the TLS inspector to an outbound listener
// (pilot/pkg/networking/core/listener.go: a chain that matches server names, or the SNI
// dynamic forward proxy), applied to the listener's chains: the stand-in reads the
// listener filters themselves, so the two must agree. virtualOutbound has none.
func matchesSNI(tp *testProxy, listener string) bool {
	for _, l := range tp.held.Listeners {
		if l.GetName() != listener {
			continue
		}
		for _, fc := range dataplane.FilterChains(l) {
			if len(fc.GetFilterChainMatch().GetServerNames()) > 0 {
				return true
			}
			for _, f := range fc.GetFilters() {
				if f.GetName() == "envoy.filters.network.sni_dynamic_forward_proxy" {
					return true
				}
			}
		}
	}
	return false
}

var (
	_ backend.AccessLogger = (*standInBackend)(nil)
	_ backend.Limited      = (*standInBackend)(nil)
)

// Every call of every lab, made through the stand-in on the config sim generates, gets
// the verdict the lab expects, and its access-log line names the cluster the lab expects
// and the SNI Envoy would log: the host only where the listener that took an HTTPS call
// is a port's own (which runs a TLS inspector), "-" on virtualOutbound. Only the egress
// gateway's calls are not made: the stand-in serves no gateway (a known gap).
func TestEveryCallOfEveryLabThroughTheStandIn(t *testing.T) {
	all, err := labs.All()
	require.NoError(t, err)
	for _, l := range all {
		t.Run(l.Name, func(t *testing.T) {
			b := &standInBackend{Backend: sim.New(), t: t, in: newInternet(t)}
			t.Cleanup(b.Close)
			res, err := lab.Run(context.Background(), b, l, narrate.New(io.Discard), lab.Options{})
			require.NoError(t, err)
			assert.Empty(t, res.Failures, "lab %s through the stand-in", l.Name)
			for _, s := range res.Skipped {
				assert.Contains(t, s, "egress gateway", "only gateway calls may be skipped")
			}
			for _, c := range res.Calls {
				if !c.Verdict.Evidence.FromCall || c.Verdict.Evidence.ClientAddress == "" {
					continue
				}
				call := backend.MustCall(c.URL)
				e, tp, err := b.lineOf(call, c.Verdict.Evidence.ClientAddress)
				require.NoError(t, err, "step %d: every call the stand-in took has its line", c.Step)
				ds := tp.decided()
				require.NotEmpty(t, ds)
				f := strings.Fields(e.Line)
				sni, listener := f[len(f)-2], ds[0].Result.ListenerMatched
				switch {
				case !call.HTTPS():
					assert.Equal(t, "-", sni, "step %d %s: %s", c.Step, c.URL, e.Line)
				case matchesSNI(tp, listener):
					assert.Equal(t, call.Host(), sni, "step %d %s: listener %s inspects TLS: %s", c.Step, c.URL, listener, e.Line)
				default:
					assert.Equal(t, "-", sni, "step %d %s: listener %s runs no TLS inspector: %s", c.Step, c.URL, listener, e.Line)
				}
			}
			t.Logf("%s: %d calls through the stand-in, %d skipped", l.Name, len(res.Calls), len(res.Skipped))
		})
	}
}
