package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
// (a DestinationRule's tls mode SIMPLE gives one). Istio's auto mTLS writes two matches
// (tlsMode "istio": mutual TLS; else plaintext); an egress gateway's pod carries no
// tlsMode label, so a sidecar speaks plaintext to it. nil: the bytes go as they are.
// The error says the socket is one the stand-in cannot speak: Istio mutual TLS, whose
// certificate comes from pilot-agent over SDS (issue 19's gap).
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
	if len(ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) > 0 || len(ctx.GetCommonTlsContext().GetTlsCertificates()) > 0 {
		return nil, errors.New("Istio mutual TLS (a client certificate from SDS) is not spoken by the stand-in")
	}
	return ctx, nil
}

// verifies says whether the context checks the upstream's certificate: a validation
// context, inline or from SDS (Istio names the proxy's system roots "file-root:system",
// which pilot-agent serves from the image's CA bundle).
func verifies(ctx *tlsv3.UpstreamTlsContext) bool {
	c := ctx.GetCommonTlsContext()
	return c.GetValidationContext() != nil || c.GetCombinedValidationContext() != nil || c.GetValidationContextSdsSecretConfig() != nil
}

// originateTLS opens the cluster's TLS session over up, as Envoy's TLS transport socket
// does: the SNI from originatedSNI, the certificate chain checked against the proxy's
// roots when the context validates. Istio's validation context for a DestinationRule
// without subjectAltNames names no SAN to match, so the chain is checked and the name
// is not: neither more nor less than Envoy checks.
func (p *Process) originateTLS(ctx context.Context, up net.Conn, cl *cluster.Cluster, tc *tlsv3.UpstreamTlsContext, host string) (net.Conn, error) {
	conf := &tls.Config{ServerName: dataplane.UpstreamSNI(cl, tc, host), InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if verifies(tc) {
		roots := p.Roots
		if roots == nil {
			var err error
			if roots, err = x509.SystemCertPool(); err != nil {
				return nil, fmt.Errorf("the proxy's trusted roots: %w", err)
			}
		}
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the upstream sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	c := tls.Client(up, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
