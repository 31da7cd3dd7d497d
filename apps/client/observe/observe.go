// Package observe is the client app's one call and what it saw: the status and the
// headers that tell who answered, or the way the call failed, as an
// outcome.Observation. The client app runs it in the pod; tests run the same code
// against stand-ins. It only observes: Classify names how a call failed (an
// outcome.ErrorClass); outcome.Classify turns the Observation into a verdict, and
// harness/lab decides whether it was the one expected.
package observe

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/egresslab/egresslab/harness/outcome"
)

// BodyPrefixBytes is how much of the body the observation keeps: enough to tell a JSON
// todo from an HTML error page, short enough for one line.
const BodyPrefixBytes = 200

// Option changes how Call connects; the client app uses none.
type Option func(*options)

type options struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	tls  *tls.Config
}

// WithDial connects every call through dial, as iptables sends every connection of a
// pod to its sidecar.
func WithDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}

// ConnectTo connects to addr (an IP address) at the URL's port whatever the URL's host
// resolves to, as curl's --resolve: the request's Host and SNI stay the URL's.
func ConnectTo(addr string) Option {
	return WithDial(func(ctx context.Context, network, hostport string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(addr, port))
	})
}

// WithRootCAs trusts these roots instead of the system's.
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.tls = &tls.Config{RootCAs: pool} }
}

// Call makes one GET to url and reports what it saw. It never follows redirects and
// never uses a proxy from the environment: the point is what the sidecar does with
// exactly this request.
func Call(ctx context.Context, url string, timeout time.Duration, opts ...Option) outcome.Observation {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	obs := outcome.Observation{URL: url}
	start := time.Now()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		obs.ErrorClass, obs.Error = outcome.ErrOther, err.Error()
		return finish(&obs, start)
	}
	req.Header.Set("User-Agent", "egresslab-client")
	// A request id of the client's own, which Envoy keeps on a request from inside the
	// mesh and logs (%REQ(X-REQUEST-ID)%) at every proxy on the way: the sidecar's line
	// and an egress gateway's name the same call by it.
	obs.RequestID = newRequestID()
	req.Header.Set("X-Request-Id", obs.RequestID)
	dial := o.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	// The connection's own address is what the sidecar logs as the downstream remote
	// address (%DOWNSTREAM_REMOTE_ADDRESS%), the one field that names a call's line in
	// every case, a catch-all's included.
	recordAddress := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			obs.ClientAddress = c.LocalAddr().String()
		}
		return c, err
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			ForceAttemptHTTP2: false,
			DialContext:       recordAddress,
			TLSClientConfig:   o.tls,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
		return finish(&obs, start)
	}
	defer resp.Body.Close()
	obs.Status = resp.StatusCode
	obs.Server = resp.Header.Get("Server")
	obs.UpstreamServiceTime = resp.Header.Get("X-Envoy-Upstream-Service-Time")
	body, err := io.ReadAll(io.LimitReader(resp.Body, BodyPrefixBytes))
	obs.BodyPrefix = printable(body)
	if err != nil {
		// The response came: the call was not refused. Say what broke, without a class
		// that would turn an answered call into a blocked one.
		obs.Error = "reading the body: " + err.Error()
	}
	return finish(&obs, start)
}

// newRequestID is a random UUID (version 4), the form Envoy generates.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	s := hex.EncodeToString(b)
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

func finish(obs *outcome.Observation, start time.Time) outcome.Observation {
	obs.DurationMillis = time.Since(start).Milliseconds()
	return *obs
}

// printable keeps the valid UTF-8 of a body prefix (a cut may split a character).
func printable(b []byte) string {
	s := string(b)
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
