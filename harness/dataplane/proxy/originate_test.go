package proxy

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/manifest"
)

// The client's cluster for the egress gateway's Service carries Istio's auto-mTLS
// transport_socket_matches: Envoy picks mutual TLS for an endpoint whose metadata says
// tlsMode "istio", plaintext for any other. The gateway's pod has no tlsMode label, so
// the sidecar speaks plaintext to it, and so does the stand-in; to an endpoint that
// asks for Istio mutual TLS it speaks that, with the SDS certificate. Before, the
// stand-in read only the cluster's transport socket and would have sent plaintext to
// both.
func TestTheTransportSocketIsPickedByTheEndpointsMetadata(t *testing.T) {
	held := simConfig(t, manifest.RegistryOnly, "serviceentry/jsonplaceholder.yaml", "apps/egress-gateway.yaml",
		"egress-gateway/through-the-gateway.yaml")
	cl := dataplane.ClusterNamed(held, "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local")
	require.NotNil(t, cl, "the client's cluster for the gateway's subset")
	require.NotEmpty(t, cl.GetTransportSocketMatches(), "Istio's auto mTLS writes transport_socket_matches")

	tc, err := dataplane.UpstreamTLS(cl, nil)
	assert.NoError(t, err)
	assert.Nil(t, tc, "an endpoint without tlsMode: plaintext, as to a gateway pod")

	istio := &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
		dataplane.TransportSocketMatch: {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
	}}
	tc, err = dataplane.UpstreamTLS(cl, istio)
	require.NoError(t, err)
	require.NotNil(t, tc, "an endpoint with tlsMode istio: mutual TLS")
	assert.Equal(t, "default", tc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName(),
		"the workload's certificate from SDS")
}
