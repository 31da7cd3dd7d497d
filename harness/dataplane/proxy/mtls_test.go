package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/require"
)

// meshCA stands in for istiod's CA, and secrets for pilot-agent's SDS with it: "ROOTCA"
// is the CA, "default" a workload certificate it signs for one SPIFFE identity, for
// client and server use, as istiod issues each workload its own.
type meshCA struct {
	t     *testing.T
	key   *ecdsa.PrivateKey
	ca    *x509.Certificate
	caDER []byte
}

func newMeshCA(t *testing.T) *meshCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &meshCA{t: t, key: key, ca: ca, caDER: der}
}

// secrets is the SDS of a workload whose certificate names identity (its URI SAN).
func (m *meshCA) secrets(identity string) func(context.Context, string) (*tlsv3.Secret, error) {
	t := m.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	u, err := url.Parse(identity)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, m.ca, &key.PublicKey, m.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	inline := func(typ string, der []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})}}
	}
	return func(_ context.Context, name string) (*tlsv3.Secret, error) {
		switch name {
		case "default":
			return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline("CERTIFICATE", leafDER), PrivateKey: inline("PRIVATE KEY", keyDER)}}}, nil
		case "ROOTCA":
			return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline("CERTIFICATE", m.caDER)}}}, nil
		}
		return nil, fmt.Errorf("the test's SDS has no secret %q", name)
	}
}

// The identities of the lab's client and egress gateway, as istiod's CA names them.
const (
	clientIdentity  = "spiffe://cluster.local/ns/egresslab/sa/client"
	gatewayIdentity = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway"
)
