package dataplane

import (
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"istio.io/api/annotation"
	"istio.io/istio/pkg/config/mesh"
	dnsProto "istio.io/istio/pkg/dns/proto"

	"github.com/egresslab/egresslab/harness/backend"
)

// dnsCaptureVariable is the proxy metadata that turns on istio-agent's DNS proxy: the
// injector sets it as an environment variable of istio-init, which then redirects the
// pod's DNS queries to the agent (tools/istio-iptables/pkg/cmd/root.go, RedirectDNS),
// and of istio-proxy, whose agent then answers them and reports DNS_CAPTURE in its node
// metadata (pilot/cmd/pilot-agent/options/options.go).
const dnsCaptureVariable = "ISTIO_META_DNS_CAPTURE"

// CapturesDNS reports whether the pod's sidecar runs Istio's DNS proxy, as the pod's
// proxy.istio.io/config annotation sets it (proxyMetadata ISTIO_META_DNS_CAPTURE: "true",
// istio.io's "DNS Proxying" task). egresslab's mesh config sets no proxyMetadata, so the
// annotation is the only place it can be turned on. An annotation the injector could not
// read turns nothing on: the injector would refuse the pod (and a manifest check names it).
func CapturesDNS(pod *corev1.Pod) bool {
	raw, ok := pod.Annotations[annotation.ProxyConfig.Name]
	if !ok {
		return false
	}
	mc, err := mesh.ApplyProxyConfig(raw, mesh.DefaultMeshConfig())
	if err != nil {
		return false
	}
	on, _ := strconv.ParseBool(mc.GetDefaultConfig().GetProxyMetadata()[dnsCaptureVariable])
	return on
}

// Names is the name table istiod sends a sidecar that captures DNS (NDS,
// pilot/pkg/xds/nds.go, built by pkg/dns/server/name_table.go): every service host the
// sidecar can reach with the addresses its agent answers for it, an entry's own or the
// one istiod allocated for it (PILOT_ENABLE_IP_AUTOALLOCATE, 240.240.0.0/16). nil for a
// sidecar that does not capture DNS: its app's queries go to the cluster's DNS.
type Names struct {
	table *dnsProto.NameTable
}

// NewNames is the table a sidecar holds; nil gives nil.
func NewNames(t *dnsProto.NameTable) *Names {
	if t == nil {
		return nil
	}
	return &Names{table: t}
}

// Resolve is the IPv4 address the agent's DNS proxy answers an A query for host with,
// its first for the name (pkg/dns/client/dns.go answers from the table and sends a name
// it does not hold to the cluster's DNS: ok false).
func (n *Names) Resolve(host string) (addr string, ok bool) {
	if n == nil {
		return "", false
	}
	for _, raw := range n.table.GetTable()[host].GetIps() {
		if ip, err := netip.ParseAddr(raw); err == nil && ip.Is4() {
			return ip.String(), true
		}
	}
	return "", false
}

// Dial is the call as the app makes it through its sidecar's DNS proxy: a host name the
// table holds is dialled at the address the proxy answers with, which decides the
// listener it matches. A call that names its address (curl --resolve), one through a
// company proxy (the proxy's name is resolved, not the URL's: not modelled, the labs'
// proxies are addresses) and an IP address in the URL are left alone.
func (n *Names) Dial(c backend.Call) backend.Call {
	if c.Address != "" || c.Proxy != nil {
		return c
	}
	if _, err := netip.ParseAddr(c.Host()); err == nil {
		return c
	}
	addr, ok := n.Resolve(c.Host())
	if !ok {
		return c
	}
	c.Address = addr
	return c
}
