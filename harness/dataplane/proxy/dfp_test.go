package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	snidfp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/manifest"
)

// A DYNAMIC_DNS entry's TLS port gives the sidecar a chain that matches the wildcard by
// SNI and holds Envoy's SNI dynamic forward proxy filter before a TCP proxy to a dynamic
// forward proxy cluster: the sidecar resolves the ClientHello's server name and connects
// to it on the filter's port, whatever address the app dialed. The app here dials a
// TEST-NET address the test's dialer refuses, while the SNI resolves to the test's
// internet: only a stand-in that does what the filter does reaches it.
func TestTheSNIDynamicForwardProxyConnectsToTheServerName(t *testing.T) {
	held := simConfig(t, manifest.RegistryOnly, "resolution/wildcard-dynamic-dns.yaml")
	in := newInternet(t)
	tp := standInDialedAt(t, held, in, netip.MustParseAddr("203.0.113.9"), clientIdentity)
	obs := tp.call(t, todoHTTPS, in.roots)
	assert.Equal(t, 200, obs.Status, "%+v", obs)
	assert.Equal(t, []string{"https jsonplaceholder.typicode.com /todos/1"}, in.requests())
	assert.Eventually(t, func() bool {
		return strings.Contains(tp.log(), `"`+dataplane.ExternalAddress+`:443" outbound|443||*.typicode.com `)
	}, 2*time.Second, 20*time.Millisecond, "the line names the resolved upstream and the cluster: %q", tp.log())
}

// Without a server name (no TLS inspector ran, or the client sent none) or without the
// filter, Envoy's dynamic forward proxy cluster has no host to pick: the stand-in
// gives it none either, and the TCP proxy answers UH.
func TestTheSNIDynamicForwardProxyNeedsAServerNameAndItsPort(t *testing.T) {
	f := &snidfp.FilterConfig{PortSpecifier: &snidfp.FilterConfig_PortValue{PortValue: 443}}
	assert.Equal(t, "jsonplaceholder.typicode.com:443", sniForwardedTo(f, "jsonplaceholder.typicode.com"))
	assert.Empty(t, sniForwardedTo(f, ""), "no server name")
	assert.Empty(t, sniForwardedTo(nil, "jsonplaceholder.typicode.com"), "no filter in the chain")
	assert.Empty(t, sniForwardedTo(&snidfp.FilterConfig{}, "jsonplaceholder.typicode.com"), "no port in the filter")
}
