// Package observe is the client app's one call and what it saw: the status and the
// headers that tell who answered, or for a plain TCP call (tcp://HOST:PORT, a database
// outside the mesh) the bytes the far end wrote back, or the way the call failed, as an
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
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
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
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	tls    *tls.Config
	proxy  *url.URL
	method string
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

// ViaProxy sends an https:// call through the HTTP proxy at u (http://HOST:PORT; see
// ProxyURL), as an app behind a company proxy does (curl's --proxy, HTTPS_PROXY): the
// call connects to the proxy and asks it with CONNECT for a tunnel to the URL's host
// and port, and speaks TLS to that host inside. The app's sidecar sees one TCP
// connection to the proxy, not one to the URL's host. The connection to the proxy is
// the call's connection: its address is ClientAddress, and WithDial dials it.
//
// A plain http:// call through a proxy (the whole URL sent to the proxy, no tunnel) is
// another thing, which the labs do not model; a tcp:// call ignores the option.
func ViaProxy(u *url.URL) Option {
	return func(o *options) { o.proxy = u }
}

// ProxyURL reads the proxy for a call to callURL: an http:// URL with a host and a
// port and nothing else, e.g. http://proxy.corp.example:3128, and a call that is
// https:// (what such a proxy tunnels). Errors name the fix.
func ProxyURL(rawProxy, callURL string) (*url.URL, error) {
	const example = "http://proxy.corp.example:3128"
	u, err := url.Parse(rawProxy)
	if err != nil {
		return nil, fmt.Errorf("proxy %q: %w; give http://HOST:PORT, e.g. %s", rawProxy, err, example)
	}
	switch {
	case u.Scheme != "http":
		return nil, fmt.Errorf("proxy %q is not an http:// URL (the client speaks plain HTTP to the proxy; the tunnel inside carries the TLS): give http://HOST:PORT, e.g. %s", rawProxy, example)
	case u.Hostname() == "":
		return nil, fmt.Errorf("proxy %q names no host: give http://HOST:PORT, e.g. %s", rawProxy, example)
	case u.Port() == "":
		return nil, fmt.Errorf("proxy %q names no port: give http://%s:PORT, e.g. http://%s:3128", rawProxy, u.Hostname(), u.Hostname())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("proxy %q has more than a host and a port: give http://%s", rawProxy, u.Host)
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("proxy %q: port %s is not a number from 1 to 65535: give http://%s:PORT, e.g. http://%s:3128", rawProxy, u.Port(), u.Hostname(), u.Hostname())
	}
	call, err := url.Parse(callURL)
	if err != nil || call.Scheme != "https" {
		return nil, fmt.Errorf("%q through a proxy: the proxy tunnels HTTPS (CONNECT), so give an https:// URL, e.g. https://jsonplaceholder.typicode.com/todos/1", callURL)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// WithMethod makes the HTTP call with method m (see CheckMethod) instead of GET, with
// no body, as curl -X does.
func WithMethod(m string) Option {
	return func(o *options) { o.method = m }
}

// CheckMethod says whether m is an HTTP method as a request line carries it and an
// AuthorizationPolicy names it: an upper-case token, e.g. GET or POST.
func CheckMethod(m string) error {
	if m == "" || strings.IndexFunc(m, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
		return fmt.Errorf("method %q is not an HTTP method: give one in upper case, e.g. GET or POST", m)
	}
	return nil
}

// WithRootCAs trusts these roots instead of the system's.
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.tls = &tls.Config{RootCAs: pool} }
}

// Call makes one GET (or WithMethod's request) to url, or for a tcp:// URL one TCP exchange (see exchange), and
// reports what it saw. It never follows redirects and uses no proxy but the one
// ViaProxy names (none from the environment): the point is what the sidecar does with
// exactly this call.
func Call(ctx context.Context, url string, timeout time.Duration, opts ...Option) outcome.Observation {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	obs := outcome.Observation{URL: url}
	start := time.Now()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := o.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	// The connection's own address is what the sidecar logs as the downstream remote
	// address (%DOWNSTREAM_REMOTE_ADDRESS%), the one field that names a call's line in
	// every case, a catch-all's included.
	o.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			obs.ClientAddress = c.LocalAddr().String()
		}
		return c, err
	}
	if outcome.IsTCP(url) {
		exchange(ctx, &obs, o.dial)
	} else {
		get(ctx, &obs, o)
	}
	return finish(&obs, start)
}

// get makes the HTTP call: one GET, its status, the headers that say who answered and
// the body's first bytes.
func get(ctx context.Context, obs *outcome.Observation, o options) {
	method := o.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, obs.URL, nil)
	if err != nil {
		obs.ErrorClass, obs.Error = outcome.ErrOther, err.Error()
		return
	}
	req.Header.Set("User-Agent", "egresslab-client")
	// A request id of the client's own, which Envoy keeps on a request from inside the
	// mesh and logs (%REQ(X-REQUEST-ID)%) at every proxy on the way: the sidecar's line
	// and an egress gateway's name the same call by it.
	obs.RequestID = newRequestID()
	req.Header.Set("X-Request-Id", obs.RequestID)
	var proxy func(*http.Request) (*url.URL, error)
	if o.proxy != nil {
		// For an https:// URL, a CONNECT tunnel through the connection DialContext makes
		// to the proxy.
		proxy = http.ProxyURL(o.proxy)
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             proxy,
			DisableKeepAlives: true,
			ForceAttemptHTTP2: false,
			DialContext:       o.dial,
			TLSClientConfig:   o.tls,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
		return
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
}

// Ping is the line a TCP call writes as soon as it connects. A database's client speaks
// first (Postgres's startup message, Kafka's first request), so the sidecar sees bytes
// from the client before any from the server, as it would in the lab's real case.
const Ping = "egresslab ping\n"

// TCPAddress is the HOST:PORT a tcp:// URL names. The port is required (TCP has no
// default one) and there is no path: a TCP call carries no request, only bytes.
func TCPAddress(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	switch {
	case u.Scheme != "tcp":
		return "", fmt.Errorf("%q is not a tcp:// URL", rawURL)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q names no host: give tcp://HOST:PORT, e.g. tcp://db.postgres.example:5432", rawURL)
	case u.Port() == "":
		return "", fmt.Errorf("%q names no port, and TCP has no default one: give tcp://%s:PORT, e.g. tcp://%s:5432", rawURL, u.Hostname(), u.Hostname())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", fmt.Errorf("%q has more than a host and a port, which a TCP call cannot carry: give tcp://%s", rawURL, u.Host)
	}
	return u.Host, nil
}

// exchange makes the TCP call: it connects, writes Ping at once and reads the reply
// until the server closes the connection (or BodyPrefixBytes came), within ctx. There is
// no status and no header: the reply's bytes are the only sign that something answered.
// A connection closed before any byte of a reply is ErrReset, as Classify has it:
// Envoy's BlackHoleCluster accepts and closes with the client's bytes unread.
func exchange(ctx context.Context, obs *outcome.Observation, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	addr, err := TCPAddress(obs.URL)
	if err != nil {
		obs.ErrorClass, obs.Error = outcome.ErrOther, err.Error()
		return
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
		return
	}
	defer c.Close()
	// The connection has no context of its own: when ctx ends (the timeout, or the client
	// stopped), a deadline in the past ends the write or read in progress.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, Ping); err != nil {
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
		return
	}
	reply, err := io.ReadAll(io.LimitReader(c, BodyPrefixBytes))
	if err == nil && len(reply) == 0 {
		err = io.EOF // ReadAll takes the close for success; here it is the absence of a reply
	}
	if err != nil {
		err = fmt.Errorf("reading the reply: %w", err)
	}
	obs.BodyPrefix = printable(reply)
	switch {
	case err == nil:
	case len(reply) > 0:
		// Part of a reply came: something answered. Say what broke after, without a class
		// that would turn an answered call into a blocked one (as get does for a body).
		obs.Error = err.Error()
	default:
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
	}
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
