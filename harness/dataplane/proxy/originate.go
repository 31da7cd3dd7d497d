package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Where Envoy reads a cluster's TLS: its transport socket, and (for the SNI) the
// cluster's HTTP protocol options.
const (
	tlsTransportSocket  = "envoy.transport_sockets.tls"
	httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// upstreamTLS is the TLS a cluster originates, as its transport socket says (a
// DestinationRule's tls mode SIMPLE gives one): nil when it sends the bytes as they are.
func upstreamTLS(cl *cluster.Cluster) *tlsv3.UpstreamTlsContext {
	ts := cl.GetTransportSocket()
	if ts.GetName() != tlsTransportSocket {
		return nil
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if ts.GetTypedConfig().UnmarshalTo(ctx) != nil {
		return nil
	}
	return ctx
}

// originatedSNI is the server name Envoy sends: the transport socket's sni, else, where
// the cluster's upstream HTTP options set auto_sni (Istio does for a DestinationRule
// with SIMPLE TLS and no sni), the request's host; else none.
func originatedSNI(cl *cluster.Cluster, ctx *tlsv3.UpstreamTlsContext, host string) string {
	if sni := ctx.GetSni(); sni != "" {
		return sni
	}
	opts := &httpv3.HttpProtocolOptions{}
	if raw, ok := cl.GetTypedExtensionProtocolOptions()[httpProtocolOptions]; ok && raw.UnmarshalTo(opts) == nil &&
		opts.GetUpstreamHttpProtocolOptions().GetAutoSni() {
		if h, _, err := net.SplitHostPort(host); err == nil {
			return h
		}
		return host
	}
	return ""
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
	conf := &tls.Config{ServerName: originatedSNI(cl, tc, host), InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
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
