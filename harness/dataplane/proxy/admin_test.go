package proxy

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"istio.io/istio/pilot/cmd/pilot-agent/status/ready"
	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/manifest"
)

// adminOn serves the stand-in's admin endpoints on loopback and returns the port.
func adminOn(t *testing.T, p *Process) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go p.serveAdmin(l)
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// pilot-agent's own readiness probe (the code the kubelet's probe on 15021 ends in)
// must read the stand-in's stats as Envoy's: not ready before the config, not ready
// before the listeners are bound, ready after.
func TestPilotAgentsReadinessProbeReadsTheStandIn(t *testing.T) {
	p := New(&Bootstrap{}, io.Discard, io.Discard)
	port := adminOn(t, p)
	probe := &ready.Probe{LocalHostAddr: "127.0.0.1", AdminPort: port}
	err := probe.Check()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config not received from XDS server")

	held := simConfig(t, manifest.RegistryOnly)
	p.held = func() (*simulation.Simulation, error) { return held, nil }
	err = (&ready.Probe{LocalHostAddr: "127.0.0.1", AdminPort: port}).Check()
	require.Error(t, err, "config held, capture listeners not bound: Envoy is still initializing")
	assert.Contains(t, err.Error(), "PRE_INITIALIZING")

	p.mu.Lock()
	p.live = true
	p.mu.Unlock()
	assert.NoError(t, (&ready.Probe{LocalHostAddr: "127.0.0.1", AdminPort: port}).Check())

	// The stand-in says what it is, and its config dump is what the kind backend reads.
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/server_info")
	require.NoError(t, err)
	var info struct{ Version, State string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&info))
	resp.Body.Close()
	assert.Contains(t, info.Version, "a stand-in for Envoy, not Envoy")
	assert.Equal(t, "LIVE", info.State)
	dump, err := p.ConfigDump()
	require.NoError(t, err)
	assert.Contains(t, string(dump), `"dynamic_listeners"`)
	assert.Contains(t, string(dump), `"virtualOutbound"`)
}

// A gateway's proxy (an egress gateway's pod) captures nothing: once its config is held
// the stand-in is ready, so the gateway's pod becomes Ready; it serves the gateway's
// listeners as they come (TestTheStandInServesAGatewaysListenersAsTheyCome). Before,
// it waited for capture listeners a gateway never gets, and the pod never became Ready.
func TestAGatewaysStandInIsReadyWithoutCaptureListeners(t *testing.T) {
	p := New(&Bootstrap{Node: &core.Node{Id: "router~10.244.0.9~istio-egressgateway-abc.istio-system~istio-system.svc.cluster.local"}},
		io.Discard, io.Discard)
	port := adminOn(t, p)
	held := simConfig(t, manifest.RegistryOnly)
	p.held = func() (*simulation.Simulation, error) { return held, nil }
	require.NoError(t, p.bindCapture(nil), "a gateway binds no capture listener")
	assert.NoError(t, (&ready.Probe{LocalHostAddr: "127.0.0.1", AdminPort: port}).Check())
}
