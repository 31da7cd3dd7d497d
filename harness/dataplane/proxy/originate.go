package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/egresslab/egresslab/harness/dataplane"
)

// Where Envoy reads a cluster's TLS: its transport socket, and (for the SNI) the
// cluster's HTTP protocol options.
const (
	tlsTransportSocket = "envoy.transport_sockets.tls"
)

// transportSocketMatch is the endpoint metadata key Envoy reads a cluster's
// transport_socket_matches against (Istio writes tlsMode there).
const transportSocketMatch = "envoy.transport_socket_match"

// upstreamTLS is the TLS a cluster originates to an endpoint with metadata md: the
// first of the cluster's transport_socket_matches whose match the endpoint's
// envoy.transport_socket_match metadata satisfies, else the cluster's transport socket
// (a DestinationRule's tls mode SIMPLE or ISTIO_MUTUAL gives one). Istio's auto mTLS
// writes two matches (tlsMode "istio": mutual TLS; else plaintext); an egress gateway's
// pod carries no tlsMode label, so a sidecar speaks plaintext to it unless a
// DestinationRule asks for ISTIO_MUTUAL. nil: the bytes go as they are.
func upstreamTLS(cl *cluster.Cluster, md *core.Metadata) (*tlsv3.UpstreamTlsContext, error) {
	ts := cl.GetTransportSocket()
	fields := md.GetFilterMetadata()[transportSocketMatch].GetFields()
	for _, m := range cl.GetTransportSocketMatches() {
		matches := true
		for k, v := range m.GetMatch().GetFields() {
			if got, ok := fields[k]; !ok || !proto.Equal(got, v) {
				matches = false
			}
		}
		if matches {
			ts = m.GetTransportSocket()
			break
		}
	}
	if ts.GetName() != tlsTransportSocket {
		return nil, nil
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("read the TLS transport socket of cluster %s: %w", cl.GetName(), err)
	}
	return ctx, nil
}

// originateTLS opens the cluster's TLS session over up, as Envoy's TLS transport socket
// does: the SNI from dataplane.UpstreamSNI, the ALPN the context offers, the client
// certificate it presents (Istio mutual TLS: the workload's, from pilot-agent's SDS),
// and the peer's chain checked against the context's roots (the proxy's own for
// file-root:system, Istio's ROOTCA for mutual TLS) and subject alt names (Istio's
// validation for a DestinationRule without subjectAltNames names none, so the chain
// is checked and the name is not: neither more nor less than Envoy checks).
func (p *Process) originateTLS(ctx context.Context, up net.Conn, cl *cluster.Cluster, tc *tlsv3.UpstreamTlsContext, host string) (net.Conn, error) {
	c := tc.GetCommonTlsContext()
	conf := &tls.Config{ServerName: dataplane.UpstreamSNI(cl, tc, host), InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
		NextProtos: c.GetAlpnProtocols()}
	cert, err := p.certificate(ctx, c)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	roots, sans, err := p.validation(ctx, c)
	if err != nil {
		return nil, err
	}
	if roots != nil {
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, roots, sans, x509.ExtKeyUsageServerAuth)
		}
	}
	tlsUp := tls.Client(up, conf)
	if err := tlsUp.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tlsUp, nil
}
