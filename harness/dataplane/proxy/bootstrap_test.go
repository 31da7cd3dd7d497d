package proxy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pkg/bootstrap"
	"istio.io/istio/pkg/config/mesh"
)

// The bootstrap the stand-in reads is the one pilot-agent writes: rendered here by
// Istio's own bootstrap package from the pinned module's template, as the agent in the
// proxyv2 image renders it.
func TestTheStandInReadsPilotAgentsBootstrap(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	require.NoError(t, err, "find the istio.io/istio module")
	template := filepath.Join(strings.TrimSpace(string(out)), "tools", "packaging", "common", "envoy_bootstrap.json")

	pc := mesh.DefaultProxyConfig()
	node, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{
		ID: "sidecar~10.244.0.8~client-abc.egresslab~egresslab.svc.cluster.local", ProxyConfig: pc,
		InstanceIPs: []string{"10.244.0.8"}, EnvoyStatusPort: 15021, EnvoyPrometheusPort: 15090,
	})
	require.NoError(t, err)
	var rendered bytes.Buffer
	require.NoError(t, bootstrap.New(bootstrap.Config{Node: node}).WriteTo(template, &rendered))
	path := filepath.Join(t.TempDir(), "envoy-rev.json")
	require.NoError(t, os.WriteFile(path, rendered.Bytes(), 0o644))

	b, err := LoadBootstrap(path)
	require.NoError(t, err)
	assert.Equal(t, node.ID, b.Node.GetId())
	assert.Equal(t, "127.0.0.1:15000", b.Admin)
	assert.True(t, strings.HasPrefix(b.XDS, "unix:///") && strings.HasSuffix(b.XDS, "/etc/istio/proxy/XDS"), b.XDS)
	assert.True(t, strings.HasPrefix(b.SDS, "unix:///") && strings.Contains(b.SDS, "/var/run/secrets/workload-spiffe-uds"), b.SDS)
	routes := map[string]StaticRoute{}
	for _, l := range b.Static {
		for _, r := range l.Routes {
			routes[l.Address] = r
		}
	}
	assert.Equal(t, StaticRoute{Prefix: "/healthz/ready", Upstream: "127.0.0.1:15020"}, routes["0.0.0.0:15021"],
		"the kubelet's readiness probe goes to the agent")
	assert.Equal(t, StaticRoute{Prefix: "/stats/prometheus", Upstream: "127.0.0.1:15000"}, routes["0.0.0.0:15090"],
		"Prometheus stats come from the admin")
}
