package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// secretType is SDS's resource type.
const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// systemRootsPrefix names the proxy's own trusted roots in an SDS validation context
// ("file-root:system": pilot-agent serves the image's CA bundle), which the stand-in
// reads as Roots.
const systemRootsPrefix = "file-root:"

// sdsSecret asks pilot-agent's secret service for one secret by name, as Envoy does
// over the bootstrap's sds-grpc cluster: "default" is the workload's certificate and
// key, "ROOTCA" Istio's root. One stream per secret: the labs make few connections.
func (p *Process) sdsSecret(ctx context.Context, name string) (*tlsv3.Secret, error) {
	if p.boot == nil || p.boot.SDS == "" {
		return nil, fmt.Errorf("secret %q: the bootstrap names no SDS cluster (%s)", name, sdsCluster)
	}
	conn, err := grpc.NewClient(p.boot.SDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("secret %q: connect to pilot-agent's SDS at %s: %w", name, p.boot.SDS, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("secret %q: open SDS stream at %s: %w", name, p.boot.SDS, err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: p.boot.Node, TypeUrl: secretType, ResourceNames: []string{name}}); err != nil {
		return nil, fmt.Errorf("secret %q: send SDS request: %w", name, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("secret %q: from pilot-agent's SDS: %w", name, err)
		}
		for _, r := range resp.GetResources() {
			s := &tlsv3.Secret{}
			if r.UnmarshalTo(s) == nil && s.GetName() == name {
				return s, nil
			}
		}
	}
}

// certificate is the certificate and key the TLS context presents, from SDS.
func (p *Process) certificate(ctx context.Context, c *tlsv3.CommonTlsContext) (*tls.Certificate, error) {
	configs := c.GetTlsCertificateSdsSecretConfigs()
	if len(configs) == 0 {
		return nil, nil
	}
	s, err := p.Secret(ctx, configs[0].GetName())
	if err != nil {
		return nil, err
	}
	tc := s.GetTlsCertificate()
	cert, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		return nil, fmt.Errorf("secret %q: the certificate and key: %w", configs[0].GetName(), err)
	}
	return &cert, nil
}

// validation is what a TLS context checks of the peer's certificate: the roots (the
// proxy's own for file-root:system, else the SDS secret named, Istio's ROOTCA for
// mutual TLS) and the subject alt names to match; nil roots when it checks nothing.
func (p *Process) validation(ctx context.Context, c *tlsv3.CommonTlsContext) (*x509.CertPool, []*matcherv3.StringMatcher, error) {
	name := c.GetValidationContextSdsSecretConfig().GetName()
	var sans []*matcherv3.StringMatcher
	if cv := c.GetCombinedValidationContext(); cv != nil {
		name = cv.GetValidationContextSdsSecretConfig().GetName()
		sans = cv.GetDefaultValidationContext().GetMatchSubjectAltNames()
		for _, m := range cv.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
			sans = append(sans, m.GetMatcher())
		}
	}
	if c.GetValidationContext() != nil {
		return nil, nil, errors.New("an inline validation context is not read by the stand-in")
	}
	switch {
	case name == "" && c.GetCombinedValidationContext() == nil:
		return nil, nil, nil
	case name == "" || strings.HasPrefix(name, systemRootsPrefix):
		roots := p.Roots
		if roots == nil {
			var err error
			if roots, err = x509.SystemCertPool(); err != nil {
				return nil, nil, fmt.Errorf("the proxy's trusted roots: %w", err)
			}
		}
		return roots, sans, nil
	}
	s, err := p.Secret(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.GetValidationContext().GetTrustedCa().GetInlineBytes()) {
		return nil, nil, fmt.Errorf("secret %q holds no trusted CA", name)
	}
	return roots, sans, nil
}

// verifyPeer checks a peer's chain against roots and, when sans is not empty, that one
// of its URI or DNS names matches one of sans: what Envoy's validation context checks.
func verifyPeer(certs []*x509.Certificate, roots *x509.CertPool, sans []*matcherv3.StringMatcher, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("the peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return err
	}
	if len(sans) == 0 {
		return nil
	}
	names := slices.Clone(certs[0].DNSNames)
	for _, u := range certs[0].URIs {
		names = append(names, u.String())
	}
	for _, m := range sans {
		for _, n := range names {
			if matches(m, n) {
				return nil
			}
		}
	}
	return fmt.Errorf("the peer's names %v match none of the subject alt names asked for", names)
}

func matches(m *matcherv3.StringMatcher, s string) bool {
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(s, p.Contains)
	}
	return false // a regex, which the stand-in does not read: no match, never more than Envoy
}

// serverTLS is the TLS a filter chain's DownstreamTlsContext terminates, as Envoy's
// TLS transport socket on a gateway's listener does: its certificate from SDS, the
// client's certificate required and checked where the context says so (Istio mutual
// TLS: ISTIO_MUTUAL), and ALPN only for the protocols the stand-in speaks.
func (p *Process) serverTLS(ctx context.Context, d *tlsv3.DownstreamTlsContext) (*tls.Config, error) {
	c := d.GetCommonTlsContext()
	cert, err := p.certificate(ctx, c)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("the TLS context presents no certificate from SDS (an inline one is not read by the stand-in)")
	}
	roots, sans, err := p.validation(ctx, c)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	if slices.Contains(c.GetAlpnProtocols(), "http/1.1") {
		conf.NextProtos = []string{"http/1.1"}
		// Envoy's server selects no protocol when it shares none with the client and
		// goes on (BoringSSL's SSL_TLSEXT_ERR_NOACK), where Go's would refuse: a sidecar
		// offers Istio's own ALPN (istio-peer-exchange, istio) to a gateway.
		conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if slices.Contains(h.SupportedProtos, "http/1.1") {
				return nil, nil
			}
			without := conf.Clone()
			without.NextProtos, without.GetConfigForClient = nil, nil
			return without, nil
		}
	}
	if roots != nil {
		conf.ClientAuth = tls.RequestClientCert
		if d.GetRequireClientCertificate().GetValue() {
			conf.ClientAuth = tls.RequireAnyClientCert
		}
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && conf.ClientAuth == tls.RequestClientCert {
				return nil
			}
			return verifyPeer(cs.PeerCertificates, roots, sans, x509.ExtKeyUsageClientAuth)
		}
	}
	return conf, nil
}
