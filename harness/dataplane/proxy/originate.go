package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/egresslab/egresslab/harness/dataplane"
)

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
