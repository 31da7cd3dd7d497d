// Package site is the stand-in internet's one site: it answers as
// jsonplaceholder.typicode.com does for the paths the labs call, over HTTP and HTTPS,
// so that offline runs see a real upstream answer without a byte leaving the machine.
// Like Istio's fake.external.com in its integration tests, it is a server in the
// cluster that the cluster's DNS names as the external host.
//
// It also answers a database's port (ServeTCP, Postgres's 5432 by default) over plain
// TCP, for the hosts the labs own as a database outside the mesh: TCP carries no host
// name, so one answer serves whichever name reached it.
package site

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Host is the external host the site answers for.
const Host = "jsonplaceholder.typicode.com"

// Hosts are every name the site answers for: Host, and a second public host of the same
// owner for the labs that call "another host" (the https lab's SNI and TCP lessons). Any
// name that is not in the mesh's registry would do; this one is real, so the labs read
// as they would on the internet.
var Hosts = []string{Host, "my-json-server.typicode.com"}

// LabHosts are the hosts that exist only in the labs: the databases outside the mesh
// of the tcp-egress lab, answered on DatabasePort, and the http-proxy lab's company
// proxy, on ProxyPort. No public server stands behind them, so egresslab serves them
// in the cluster on every run, online as offline, and the cluster's DNS names them;
// they are in the reserved .example domain (RFC 2606), which no real DNS answers.
var LabHosts = []string{"billing.db.example", "orders.db.example", ProxyHost}

// ProxyHost is the http-proxy lab's company proxy.
const ProxyHost = "proxy.corp.example"

// Todo is jsonplaceholder's /todos/1, as it answers it.
var Todo = map[string]any{"userId": 1, "id": 1, "title": "delectus aut autem", "completed": false}

// Handler answers GET /todos/N (1 ≤ N ≤ 200) with a todo in jsonplaceholder's shape,
// and anything else with jsonplaceholder's 404 ("{}"). The Server header is the one
// jsonplaceholder's CDN sends.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "cloudflare")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Egresslab-Site", "the stand-in internet, not the real "+Host)
		id, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/todos/"))
		if !strings.HasPrefix(r.URL.Path, "/todos/") || err != nil || id < 1 || id > 200 {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, "{}")
			return
		}
		todo := Todo
		if id != 1 {
			todo = map[string]any{"userId": (id-1)/20 + 1, "id": id, "title": fmt.Sprintf("todo %d", id), "completed": id%2 == 0}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(todo)
	})
}

// Certificate is a key pair for hosts signed by a new CA, and the pool that trusts
// that CA: what a client must be given to verify the site.
func Certificate(hosts ...string) (tls.Certificate, *x509.CertPool, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("generate the stand-in internet's CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egresslab stand-in internet CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("sign the stand-in internet's CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	cert, err := sign(ca, caKey, hosts)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return cert, pool, caDER, nil
}

// CertificateFrom is a key pair for hosts signed by the CA given in PEM (its
// certificate, and its key in PKCS #8): the offline run's fixed CA, which the offline
// proxy image trusts as a real proxy image trusts public roots.
func CertificateFrom(caCertPEM, caKeyPEM []byte, hosts ...string) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read the stand-in internet's CA: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read the stand-in internet's CA: %w", err)
	}
	if !ca.IsCA {
		return tls.Certificate{}, fmt.Errorf("the stand-in internet's CA certificate %q is not a CA", ca.Subject)
	}
	return sign(ca, pair.PrivateKey, hosts)
}

// sign issues a server certificate for hosts, with a new key, signed by ca.
func sign(ca *x509.Certificate, caKey any, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate the stand-in internet's key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign the stand-in internet's certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
