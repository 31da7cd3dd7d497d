package dataplane

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dnsProto "istio.io/istio/pkg/dns/proto"

	"github.com/egresslab/egresslab/harness/backend"
)

// The pod's proxy config turns DNS capture on, as istio.io's DNS Proxying task writes
// it; anything else leaves it off.
func TestCapturesDNSReadsThePodsProxyConfig(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{"none", nil, false},
		{"on", map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"}, true},
		{"json", map[string]string{"proxy.istio.io/config": `{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}`}, true},
		{"off", map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"false\"\n"}, false},
		{"other metadata", map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_AUTO_ALLOCATE: \"true\"\n"}, false},
		{"unreadable", map[string]string{"proxy.istio.io/config": "proxyMetadata: [1"}, false},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "egresslab", Annotations: tc.annotations}}
		assert.Equal(t, tc.want, CapturesDNS(pod), tc.name)
		assert.Equal(t, tc.want, bool(ProxyFor(pod).Metadata.DNSCapture), "%s: the proxy istiod sees", tc.name)
		assert.Equal(t, tc.want, capturesDNS(NodeFor(pod)), "%s: the node the stand-in sends", tc.name)
	}
}

// The app dials the address the agent answers with, the table's first IPv4 one; a name
// the table lacks, a call with its own address, an IP in the URL and a sidecar without
// a table leave the call as it was.
func TestNamesDialTheAddressTheAgentAnswers(t *testing.T) {
	names := NewNames(&dnsProto.NameTable{Table: map[string]*dnsProto.NameTable_NameInfo{
		"billing.db.example": {Ips: []string{"2001:2::1", "240.240.0.1"}},
	}})
	dialled := func(n *Names, c backend.Call) string { return n.Dial(c).Address }
	assert.Equal(t, "240.240.0.1", dialled(names, backend.MustCall("tcp://billing.db.example:5432")))
	assert.Equal(t, "", dialled(names, backend.MustCall("tcp://orders.db.example:5432")))
	assert.Equal(t, "", dialled(names, backend.MustCall("tcp://203.0.113.10:5432")))
	own, err := backend.MustCall("tcp://billing.db.example:5432").At("203.0.113.10")
	assert.NoError(t, err)
	assert.Equal(t, "203.0.113.10", dialled(names, own))
	assert.Equal(t, "", dialled(nil, backend.MustCall("tcp://billing.db.example:5432")))
}
