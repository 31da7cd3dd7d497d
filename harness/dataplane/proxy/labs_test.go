package proxy

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snidfp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/accesslog"
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
// is read from what the client saw; the access-log lines are found as the kind backend
// finds them. A call the client's sidecar routes to an egress gateway's Service goes to
// a second stand-in, serving the gateway's listeners on the config sim generates for
// the gateway's pod, and is followed there by its x-request-id.
type standInBackend struct {
	*sim.Backend
	t  *testing.T
	in *internet

	mu       sync.Mutex
	logs     []*testProxy // the client's stand-ins
	gateways []*testProxy // the egress gateway's stand-ins
	// of is the workload each client stand-in stood in for.
	of map[*testProxy]backend.Workload
}

func (b *standInBackend) Name() string { return "stand-in" }

func (b *standInBackend) Call(ctx context.Context, w backend.Workload, c backend.Call) (outcome.Verdict, error) {
	held, err := b.Simulation(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	c = b.Dialled(w, c)                                      // the agent's DNS proxy, real on kind, answers from sim's name table
	dialed := netip.MustParseAddr(dataplane.ExternalAddress) // what DNS gives every host in sim's world
	if c.Address != "" {
		dialed = netip.MustParseAddr(c.Address) // the address the app was told to connect to
	}
	identity, err := b.Principal(w)
	if err != nil {
		return outcome.Verdict{}, err
	}
	tp := standInDialedAt(b.t, held, b.in, dialed, identity)
	if err := b.gatewaysFor(tp); err != nil {
		return outcome.Verdict{}, err
	}
	b.mu.Lock()
	b.logs = append(b.logs, tp)
	if b.of == nil {
		b.of = map[*testProxy]backend.Workload{}
	}
	b.of[tp] = w
	b.mu.Unlock()
	v := outcome.Classify(tp.make(c, b.in.roots))
	if outcome.NextHopDecides(v) {
		if e, err := b.AccessLogEntry(ctx, w, c, v.Evidence.ClientAddress, time.Now()); err == nil && e.Gateway != nil {
			v = outcome.AtGateway(v, e.Logged(), e.GatewayName, e.Gateway.Logged())
		}
	}
	return v, nil
}

// gatewaysFor gives each EDS cluster of the client's config that leads to an egress
// gateway's Service an endpoint: a gateway stand-in on the gateway pod's config.
func (b *standInBackend) gatewaysFor(tp *testProxy) error {
	for _, cl := range tp.held.Clusters {
		host, port, ok := dataplane.OutboundService(cl.GetName())
		if !ok {
			continue
		}
		gw, ok, err := b.GatewayBehind(host, port)
		if err != nil || !ok {
			continue
		}
		held, err := b.Simulation(gw.Workload)
		if err != nil {
			return fmt.Errorf("the egress gateway %s's config: %w", gw.Workload, err)
		}
		at := netip.AddrPortFrom(netip.MustParseAddr(gw.Address), uint16(gw.Port))
		g := gatewayStandIn(b.t, held, b.in, at)
		tp.sendTo(cl.GetName(), at, g.addr)
		b.mu.Lock()
		b.gateways = append(b.gateways, g)
		b.mu.Unlock()
	}
	return nil
}

// AccessLogEntry finds the call's line in the client stand-in's log by the client's
// address, with the kind backend's own reader, and the gateway's line by the request
// id the client's line logs.
func (b *standInBackend) AccessLogEntry(ctx context.Context, _ backend.Workload, c backend.Call, client string, _ time.Time) (backend.AccessLogEntry, error) {
	e, _, err := b.lineOf(ctx, c, client)
	if err != nil {
		return e, err
	}
	host, _, ok := dataplane.OutboundService(e.Cluster)
	if !ok || !dataplane.InMesh(host) {
		return e, nil
	}
	id := kind.RequestIDOf(e.Line)
	b.mu.Lock()
	gateways := append([]*testProxy{}, b.gateways...)
	b.mu.Unlock()
	found := pollUntil(ctx, func() bool {
		for _, g := range gateways {
			if ge, ok := kind.AccessLogEntryByRequestID(g.log(), id); ok {
				e.Gateway, e.GatewayName = &ge, host
				return true
			}
		}
		return false
	})
	if !found {
		return e, fmt.Errorf("no gateway line for request %s (%s)", id, c)
	}
	return e, nil
}

// pollUntil asks cond again, every few milliseconds, until it holds (true), ctx ends
// or a generous bound passes (false): a proxy writes its access-log line as it finishes
// the call, which the client may see end a moment before.
func pollUntil(ctx context.Context, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-poll.C:
		}
	}
	return true
}

// gatewayThatLogged is the gateway stand-in whose log has line.
func (b *standInBackend) gatewayThatLogged(line string) *testProxy {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.gateways {
		if strings.Contains(g.log(), line) {
			return g
		}
	}
	return nil
}

// lineOf is the call's access-log line and the stand-in that wrote it.
func (b *standInBackend) lineOf(ctx context.Context, c backend.Call, client string) (backend.AccessLogEntry, *testProxy, error) {
	b.mu.Lock()
	logs := append([]*testProxy{}, b.logs...)
	b.mu.Unlock()
	var e backend.AccessLogEntry
	var from *testProxy
	found := pollUntil(ctx, func() bool {
		for _, tp := range logs {
			if line, ok := kind.LastAccessLogEntry(tp.log(), c, client); ok {
				e, from = line, tp
				return true
			}
		}
		return false
	})
	if !found {
		return backend.AccessLogEntry{}, nil, fmt.Errorf("no line from %s for %s", client, c)
	}
	return e, from, nil
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
				// By its config's type, as Envoy picks it: Istio names it
				// envoy.extensions.filters.network.sni_dynamic_forward_proxy.
				if f.GetTypedConfig().MessageIs(&snidfp.FilterConfig{}) {
					return true
				}
			}
		}
	}
	return false
}

// SidecarAccessLog is what the stand-ins for w's sidecar wrote, whole (each lab runs on
// a fresh backend): the lines a suggest action reads are the stand-in's own.
// Each stand-in made one call, whose line it writes as the call ends, which the client
// may see end a moment before: wait for it.
func (b *standInBackend) SidecarAccessLog(ctx context.Context, w backend.Workload, _ time.Time) (string, error) {
	b.mu.Lock()
	var mine []*testProxy
	for _, tp := range b.logs {
		if b.of[tp] == w {
			mine = append(mine, tp)
		}
	}
	b.mu.Unlock()
	var out strings.Builder
	for _, tp := range mine {
		if !pollUntil(ctx, func() bool { return strings.Contains(tp.log(), "\n[") || strings.HasPrefix(tp.log(), "[") }) {
			return "", fmt.Errorf("a stand-in for %s's sidecar wrote no access-log line", w)
		}
		out.WriteString(tp.log())
	}
	return out.String(), nil
}

var (
	_ backend.AccessLogger = (*standInBackend)(nil)
	_ backend.SidecarLog   = (*standInBackend)(nil)
)

// Every call of every lab, made through the stand-in on the config sim generates, gets
// the verdict the lab expects, and its access-log line names the cluster the lab expects
// and the SNI Envoy would log: the host only where the listener that took an HTTPS call
// is a port's own (which runs a TLS inspector), "-" on virtualOutbound. A call through
// the egress gateway goes through a second stand-in serving the gateway's listeners,
// and the gateway's line must name the lab's cluster for the gateway too. No call is
// skipped.
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
			assert.Empty(t, res.Skipped, "no call of any lab is skipped")
			for _, c := range res.Calls {
				if !c.Verdict.Evidence.FromCall || c.Verdict.Evidence.ClientAddress == "" {
					continue
				}
				call := c.Call
				e, tp, err := b.lineOf(context.Background(), call, c.Verdict.Evidence.ClientAddress)
				require.NoError(t, err, "step %d: every call the stand-in took has its line", c.Step)
				ds := tp.decided()
				require.NotEmpty(t, ds)
				// With the gateway's line, when the sidecar sent the call to one.
				e, err = b.AccessLogEntry(context.Background(), backend.Workload{}, call, c.Verdict.Evidence.ClientAddress, time.Time{})
				require.NoError(t, err, "step %d", c.Step)
				if e.Gateway != nil {
					// The gateway's line logs the SNI the sidecar sent where the gateway's
					// listener inspects TLS (a Gateway server with tls), else "-".
					g := b.gatewayThatLogged(e.Gateway.Line)
					require.NotNil(t, g, "step %d: the gateway stand-in that wrote %s", c.Step, e.Gateway.Line)
					if c.Verdict.Reason == outcome.ReasonRBAC {
						// Envoy's denial: the body only is %BYTES_SENT%, no upstream host,
						// and the route's cluster, which the connection manager looked up.
						lf := accesslog.Fields(e.Gateway.Line)
						assert.Equal(t, []string{"403", "-", "rbac_access_denied_matched_policy[none]", "0", strconv.Itoa(len(outcome.RBACDeniedBody)), "-"},
							[]string{lf[accesslog.Code], lf[accesslog.Flags], lf[accesslog.Details], lf[accesslog.BytesReceived], lf[accesslog.BytesSent], lf[accesslog.UpstreamHost]},
							"step %d: the gateway's denial: %s", c.Step, e.Gateway.Line)
						assert.NotEqual(t, "-", lf[accesslog.Cluster], "step %d: %s", c.Step, e.Gateway.Line)
					}
					gf := strings.Fields(e.Gateway.Line)
					if matchesSNI(g, g.decided()[0].Result.ListenerMatched) {
						assert.Equal(t, call.Host(), gf[len(gf)-2], "step %d: the gateway inspects TLS: %s", c.Step, e.Gateway.Line)
					} else {
						assert.Equal(t, "-", gf[len(gf)-2], "step %d: plaintext to the gateway: %s", c.Step, e.Gateway.Line)
					}
				}
				assertLineFields(t, c.Step, c.URL, c.Verdict, e)
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

// assertLineFields holds an access-log line's response fields to what Envoy logs for
// the verdict the client's observation gave: the status the client saw, and the flags
// and details of the answer (block_all's direct response, BlackHoleCluster's UH, an
// upstream's answer), and at the gateway, NC with no cluster for its own 503.
func assertLineFields(t *testing.T, step int, url string, v outcome.Verdict, e backend.AccessLogEntry) {
	t.Helper()
	what := fmt.Sprintf("step %d %s: %s", step, url, e.Line)
	http := !strings.Contains(e.Line, `"- - -"`) // a TCP proxy's line has no request, status 0
	if http {
		assert.Equal(t, v.Evidence.Status, e.Status, "the status the client saw: "+what)
	}
	switch {
	case e.Gateway != nil:
		assert.Equal(t, "via_upstream", e.Details, "the sidecar relays the gateway's answer: "+what)
		g := e.Gateway
		if v.Reason == outcome.ReasonNoCluster {
			assert.Equal(t, []string{"NC", "cluster_not_found", "-"}, []string{g.Flags, g.Details, g.Cluster}, "the gateway's own 503: "+g.Line)
		}
	case v.Reason == outcome.ReasonBlockAll:
		assert.Equal(t, []string{"-", "direct_response", "-"}, []string{e.Flags, e.Details, e.Cluster}, what)
	case v.Reason == outcome.ReasonBlackHole:
		assert.Equal(t, []string{"UH", "BlackHoleCluster"}, []string{e.Flags, e.Cluster}, what)
	case v.Reason == outcome.ReasonNoCluster:
		assert.Equal(t, []string{"NC", "cluster_not_found", "-"}, []string{e.Flags, e.Details, e.Cluster}, what)
	case v.Kind == outcome.Allowed && http:
		assert.Equal(t, []string{"-", "via_upstream"}, []string{e.Flags, e.Details}, what)
	}
}
