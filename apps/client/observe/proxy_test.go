package observe_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/syncbuf"
)

// companyProxy runs the stand-in internet's proxy on loopback until the test ends,
// dialling with dial.
func companyProxy(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*url.URL, *syncbuf.Buffer) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	log := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- site.ServeProxy(ctx, l, dial, log) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, log
}

// tlsSite is an HTTPS server on loopback and the roots that trust it.
func tlsSite(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *x509.CertPool) {
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

// The call goes through the proxy's tunnel to the site, TLS end to end, and the address
// it records is the one the proxy saw the connection come from.
func TestCallThroughTheProxy(t *testing.T) {
	var host string
	srv, pool := tlsSite(t, func(w http.ResponseWriter, r *http.Request) {
		host = r.Host
		w.Header().Set("Server", "cloudflare")
		_, _ = w.Write([]byte(`{"id":1}`))
	})
	proxy, log := companyProxy(t, (&net.Dialer{}).DialContext)
	o := observe.Call(context.Background(), srv.URL+"/todos/1", 5*time.Second, observe.ViaProxy(proxy), observe.WithRootCAs(pool))
	require.Equal(t, outcome.ErrNone, o.ErrorClass, "error: %s", o.Error)
	assert.Equal(t, 200, o.Status)
	assert.Equal(t, "cloudflare", o.Server)
	assert.Equal(t, `{"id":1}`, o.BodyPrefix)
	assert.Equal(t, strings.TrimPrefix(srv.URL, "https://"), host)
	require.NotEmpty(t, o.ClientAddress)
	assert.Contains(t, log.String(), " CONNECT "+srv.Listener.Addr().String()+" from "+o.ClientAddress+" 200\n")
	assert.Equal(t, outcome.Allowed, outcome.Classify(o).Kind)
}

// A proxy connection that the sidecar resets (BlackHoleCluster: accepted, closed with
// the CONNECT unread or unanswered) is a reset, as a direct call's is.
func TestCallThroughAProxyThatHangsUpIsAReset(t *testing.T) {
	srv, pool := tlsSite(t, func(http.ResponseWriter, *http.Request) {
		t.Error("the site must not be reached")
	})
	for name, tc := range map[string]struct{ read, reset bool }{
		"close at once":                {false, false},
		"close with RST at once":       {false, true},
		"close after the CONNECT":      {true, false},
		"close with RST after CONNECT": {true, true},
	} {
		t.Run(name, func(t *testing.T) {
			port := listener(t, func(c net.Conn) {
				if tc.read {
					_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
					_, _ = c.Read(make([]byte, 4096))
				}
				if tc.reset {
					_ = c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			})
			proxy := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
			o := observe.Call(context.Background(), srv.URL+"/todos/1", 5*time.Second, observe.ViaProxy(proxy), observe.WithRootCAs(pool))
			t.Logf("error: %s", o.Error)
			assert.Equal(t, outcome.ErrReset, o.ErrorClass, "error: %s", o.Error)
			if tc.read {
				// At once, the reset can beat the dial itself (connect: connection reset
				// by peer): then there was no connection and no address to record.
				assert.NotEmpty(t, o.ClientAddress, "the connection to the proxy was made")
			}
			v := outcome.Classify(o)
			assert.Equal(t, outcome.Blocked, v.Kind)
			assert.Equal(t, outcome.ReasonBlackHole, v.Reason)
		})
	}
}

// A proxy that is not there is refused, as a site that is not there is.
func TestCallThroughAClosedProxyIsRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	proxy := &url.URL{Scheme: "http", Host: l.Addr().String()}
	require.NoError(t, l.Close())
	o := observe.Call(context.Background(), "https://jsonplaceholder.typicode.com/todos/1", 5*time.Second, observe.ViaProxy(proxy))
	assert.Equal(t, outcome.ErrRefused, o.ErrorClass, "error: %s", o.Error)
	assert.Contains(t, o.Error, "proxyconnect tcp: ")
}

// The proxy's own 502 to CONNECT has no response for the call to report: net/http
// returns the status text as the call's error, which is not a sign of the mesh.
func TestCallThroughAProxyThatCannotReachTheSite(t *testing.T) {
	proxy, log := companyProxy(t, func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("dial tcp: lookup jsonplaceholder.typicode.com: no such host")
	})
	o := observe.Call(context.Background(), "https://jsonplaceholder.typicode.com/todos/1", 5*time.Second, observe.ViaProxy(proxy))
	t.Logf("error: %s", o.Error)
	assert.Equal(t, outcome.ErrOther, o.ErrorClass)
	assert.Equal(t, `Get "https://jsonplaceholder.typicode.com/todos/1": Bad Gateway`, o.Error)
	assert.Zero(t, o.Status)
	assert.NotEmpty(t, o.ClientAddress)
	assert.Contains(t, log.String(), " CONNECT jsonplaceholder.typicode.com:443 from "+o.ClientAddress+" 502 ")
	assert.Equal(t, outcome.Unreachable, outcome.Classify(o).Kind)
}

func TestProxyURL(t *testing.T) {
	const call = "https://jsonplaceholder.typicode.com/todos/1"
	for _, raw := range []string{"http://proxy.corp.example:3128", "http://10.1.2.3:3128/", "http://[fd00::1]:3128"} {
		u, err := observe.ProxyURL(raw, call)
		require.NoError(t, err, raw)
		assert.Equal(t, strings.TrimSuffix(raw, "/"), u.String())
	}
	for raw, fix := range map[string]string{
		"proxy.corp.example:3128":            "give http://HOST:PORT",
		"https://proxy.corp.example:3128":    "is not an http:// URL",
		"http://proxy.corp.example":          "give http://proxy.corp.example:PORT, e.g. http://proxy.corp.example:3128",
		"http://:3128":                       "names no host",
		"http://proxy.corp.example:3128/x":   "give http://proxy.corp.example:3128",
		"http://u:p@proxy.corp.example:3128": "give http://proxy.corp.example:3128",
		"http://proxy.corp.example:3128?a=b": "give http://proxy.corp.example:3128",
		"http://proxy.corp.example:99999":    "is not a number from 1 to 65535",
	} {
		_, err := observe.ProxyURL(raw, call)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), fix, raw)
	}
	for _, notHTTPS := range []string{"http://jsonplaceholder.typicode.com/todos/1", "tcp://db.postgres.example:5432"} {
		_, err := observe.ProxyURL("http://proxy.corp.example:3128", notHTTPS)
		require.Error(t, err, notHTTPS)
		assert.Contains(t, err.Error(), "give an https:// URL", notHTTPS)
	}
}
