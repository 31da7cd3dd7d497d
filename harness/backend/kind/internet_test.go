package kind

import (
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/egresslab/egresslab/apps/internet/site"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"math/big"
	"time"
)

// The offline Corefile answers every host of the stand-in internet with its pod, lets
// every other name fall through to the cluster's own zone (without fallthrough CoreDNS
// answered SERVFAIL for every cluster name, and pilot-agent could not find istiod), and
// forwards nothing off the machine.
func TestTheOfflineCorefileNamesEveryInternetHostAndForwardsNothing(t *testing.T) {
	c := Corefile("10.244.0.9", site.Hosts, false)
	require.Greater(t, len(site.Hosts), 1)
	assert.Contains(t, c, "10.244.0.9 "+strings.Join(site.Hosts, " "))
	hosts := c[strings.Index(c, "hosts {"):]
	hosts = hosts[:strings.Index(hosts, "}")]
	assert.Contains(t, hosts, "fallthrough")
	assert.NotContains(t, c, "forward")
}

// Online, the labs' own hosts are named and every other name is forwarded as kubeadm's
// Corefile forwards it: the public hosts are the real ones.
func TestTheOnlineCorefileNamesTheLabsOwnHostsAndForwardsTheRest(t *testing.T) {
	c := Corefile("10.244.0.9", site.LabHosts, true)
	assert.Contains(t, c, "10.244.0.9 "+strings.Join(site.LabHosts, " "))
	assert.NotContains(t, c, site.Host)
	assert.Contains(t, c, "forward . /etc/resolv.conf")
	assert.Less(t, strings.Index(c, "hosts {"), strings.Index(c, "forward ."), "hosts answers before anything is forwarded")
}

// A kept cluster's certificate made before a host was added is found out, not used.
func TestAKeptCertificateMustCoverEveryInternetHost(t *testing.T) {
	cert, _, _, err := site.Certificate(site.Host)
	require.NoError(t, err)
	old := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	assert.Equal(t, site.Hosts[1:], uncovered(old, site.Hosts))
	cert, _, _, err = site.Certificate(site.Hosts...)
	require.NoError(t, err)
	assert.Empty(t, uncovered(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), site.Hosts))
}

// Offline, the site's certificate is signed by the run's fixed CA, the one the proxy
// image trusts (as a real proxy image trusts the public roots of the real site); a kept
// cluster's certificate from another CA is replaced, or the sidecar's TLS origination
// would fail against it.
func TestTheSitesCertificateIsSignedByTheGivenCA(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	require.NoError(t, err)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	ctx := context.Background()
	k := kubefake.NewClientset()
	// A kept cluster's certificate, from a CA of its own.
	_, err = internetCertificate(ctx, k, nil, nil)
	require.NoError(t, err)
	got, err := internetCertificate(ctx, k, caPEM, keyPEM)
	require.NoError(t, err)
	assert.Equal(t, caPEM, got)
	s, err := k.CoreV1().Secrets(InternetNamespace).Get(ctx, internetSecret, metav1.GetOptions{})
	require.NoError(t, err)
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	for _, host := range site.Hosts {
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
		assert.NoError(t, err, host)
	}
	// The same CA again: the certificate is kept.
	again, err := internetCertificate(ctx, k, caPEM, keyPEM)
	require.NoError(t, err)
	assert.Equal(t, caPEM, again)
	s2, err := k.CoreV1().Secrets(InternetNamespace).Get(ctx, internetSecret, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, s.Data[corev1.TLSCertKey], s2.Data[corev1.TLSCertKey])
}
