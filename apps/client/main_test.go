package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/outcome"
)

var localPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

var update = flag.Bool("update", false, "rewrite testdata/observations from the client's output against the local servers")

// envoyBlockAll answers as Istio's block_all virtual host does: a direct 502 from Envoy
// itself, with `server: envoy` and no x-envoy-upstream-service-time (no upstream was asked).
func envoyBlockAll(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "envoy")
		w.Header().Set("Date", "Mon, 01 Jun 2026 10:00:00 GMT")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/todos/1"
}

// envoyUpstream answers as a sidecar does after reaching jsonplaceholder.
func envoyUpstream(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "envoy")
		w.Header().Set("X-Envoy-Upstream-Service-Time", "87")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, `{"userId":1,"id":1,"title":"delectus aut autem","completed":false}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/todos/1"
}

// hangingUp accepts connections, waits for the client's first bytes (the request, or a
// TLS ClientHello) and hangs up: with reset, SO_LINGER 0 makes Close send RST; without,
// Close ends the connection in order (FIN), and a TLS handshake ends in EOF.
func hangingUp(t *testing.T, scheme string, reset bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Read(make([]byte, 4096))
			if reset {
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
		}
	}()
	return scheme + "://" + ln.Addr().String() + "/todos/1"
}

// closedPort is a port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr + "/todos/1"
}

// hanging accepts and never answers.
func hanging(t *testing.T) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL + "/todos/1"
}

// untrusted serves TLS with a certificate no root the client knows signed.
func untrusted(t *testing.T) string {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	return srv.URL + "/todos/1"
}

// unresolvable is in .invalid, which RFC 6761 reserves so that it never resolves.
func unresolvable(*testing.T) string { return "http://egresslab-nowhere.invalid/todos/1" }

var cases = []struct {
	name    string
	url     func(*testing.T) string
	timeout time.Duration
	want    outcome.Observation // the stable fields: status, headers, body, error class
}{
	{"envoy-502-block-all", envoyBlockAll, 5 * time.Second,
		outcome.Observation{Status: 502, Server: "envoy"}},
	{"envoy-200-upstream", envoyUpstream, 5 * time.Second,
		outcome.Observation{Status: 200, Server: "envoy", UpstreamServiceTime: "87",
			BodyPrefix: `{"userId":1,"id":1,"title":"delectus aut autem","completed":false}`}},
	{"reset", func(t *testing.T) string { return hangingUp(t, "http", true) }, 5 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrReset}},
	{"reset-in-tls-handshake", func(t *testing.T) string { return hangingUp(t, "https", true) }, 5 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrReset}},
	{"eof-in-tls-handshake", func(t *testing.T) string { return hangingUp(t, "https", false) }, 5 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrReset}},
	{"refused", closedPort, 5 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrRefused}},
	{"dns", unresolvable, 10 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrDNS}},
	{"timeout", hanging, 300 * time.Millisecond,
		outcome.Observation{ErrorClass: outcome.ErrTimeout}},
	{"tls-untrusted-certificate", untrusted, 5 * time.Second,
		outcome.Observation{ErrorClass: outcome.ErrTLS}},
}

func stable(o outcome.Observation) outcome.Observation {
	return outcome.Observation{Status: o.Status, Server: o.Server, UpstreamServiceTime: o.UpstreamServiceTime,
		BodyPrefix: o.BodyPrefix, ErrorClass: o.ErrorClass}
}

func TestCallAgainstLocalServers(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url(t)
			got := observe.Call(context.Background(), url, tc.timeout)
			assert.Equal(t, tc.want, stable(got), "error: %s", got.Error)
			assert.Equal(t, url, got.URL)
			if tc.want.ErrorClass != outcome.ErrNone {
				assert.NotEmpty(t, got.Error, "a failed call says how it failed")
			}
			if tc.name == "timeout" {
				assert.GreaterOrEqual(t, got.DurationMillis, int64(300))
				assert.Less(t, got.DurationMillis, int64(5000))
			}
		})
	}
}

// The observations in testdata are the client's own output against the local servers
// above; harness/backend/kind classifies them. This test keeps them in step with the
// client: run with -update to rewrite them.
func TestRecordedObservationsMatchTheClient(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			url := tc.url(t)
			code := run(context.Background(), []string{"call", "--timeout=" + tc.timeout.String(), url}, &out, &errOut)
			require.Equal(t, 0, code, errOut.String())
			path := filepath.Join("testdata", "observations", tc.name+".json")
			if *update {
				// Ports differ run to run; keep the files stable under -update.
				line := localPort.ReplaceAllString(out.String(), "127.0.0.1:PORT")
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, []byte(line), 0o644))
			}
			recorded, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./apps/client -run TestRecorded -update")
			var want, got outcome.Observation
			require.NoError(t, json.Unmarshal(recorded, &want))
			require.NoError(t, json.Unmarshal(out.Bytes(), &got))
			assert.Equal(t, stable(want), stable(got))
		})
	}
}

func TestCallPrintsExactlyOneJSONLine(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"call", envoyBlockAll(t)}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	assert.Empty(t, errOut.String())
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	require.Len(t, lines, 1, "output: %q", out.String())
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	var o outcome.Observation
	require.NoError(t, dec.Decode(&o))
	assert.Equal(t, 502, o.Status)
	assert.Equal(t, outcome.Blocked, outcome.Classify(o).Kind)
}

func TestCallDoesNotFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://elsewhere.invalid/", http.StatusMovedPermanently))
	defer srv.Close()
	o := observe.Call(context.Background(), srv.URL, 5*time.Second)
	assert.Equal(t, 301, o.Status)
	assert.Equal(t, outcome.ErrNone, o.ErrorClass)
}

func TestCallKeepsOnlyABodyPrefix(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, strings.Repeat("x", 10*observe.BodyPrefixBytes))
	}))
	defer srv.Close()
	o := observe.Call(context.Background(), srv.URL, 5*time.Second)
	assert.Len(t, o.BodyPrefix, observe.BodyPrefixBytes)
}

// --address connects to that address, as curl's --resolve does: the name in the URL
// resolves nowhere (.invalid), yet the call reaches the server, with the URL's Host.
func TestCallConnectsToTheAddressGiven(t *testing.T) {
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host = r.Host }))
	defer srv.Close()
	addr, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"call", "--address=" + addr, "http://api.example.invalid:" + port + "/v1"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var o outcome.Observation
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Equal(t, 200, o.Status, "observation: %+v", o)
	assert.Equal(t, "api.example.invalid:"+port, host)
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"fly"}, {"call"}, {"call", "a", "b"}, {"call", "--nope", "x"}, {"call", "--address=proxy.corp", "http://x/"}} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, run(context.Background(), args, &out, &errOut), "args %q", args)
		assert.Empty(t, out.String())
		assert.NotEmpty(t, errOut.String())
	}
	o := observe.Call(context.Background(), "http://bad host/", time.Second)
	assert.Equal(t, outcome.ErrOther, o.ErrorClass)
}

// A tcp:// URL without a port is the caller's to fix: no call, exit 2, and the fix named.
func TestCallRejectsATCPURLWithoutAPort(t *testing.T) {
	for args, fix := range map[string]string{
		"tcp://db.postgres.example":          "give tcp://db.postgres.example:PORT, e.g. tcp://db.postgres.example:5432",
		"tcp://db.postgres.example:5432/app": "give tcp://db.postgres.example:5432",
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, run(context.Background(), []string{"call", "--address=127.0.0.1", args}, &out, &errOut), args)
		assert.Empty(t, out.String(), "no observation for %s", args)
		assert.Contains(t, errOut.String(), fix, args)
	}
}

func TestServeAnswersHealthzUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() { done <- run(ctx, []string{"serve", "--listen=" + addr}, &bytes.Buffer{}, &errOut) }()

	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = http.Get("http://" + addr + "/healthz")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, 200, resp.StatusCode)
	resp.Body.Close()

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop when its context ended")
	}
}

func TestServeReportsABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var errOut bytes.Buffer
	assert.Equal(t, 1, run(context.Background(), []string{"serve", "--listen=" + ln.Addr().String()}, &bytes.Buffer{}, &errOut))
	assert.Contains(t, errOut.String(), "listen on "+ln.Addr().String())
}

// --proxy is checked before any call: a mistake is the caller's to fix, exit 2, and the
// fix named.
func TestCallRejectsABadProxy(t *testing.T) {
	const call = "https://jsonplaceholder.typicode.com/todos/1"
	for _, tc := range []struct {
		args []string
		fix  string
	}{
		{[]string{"--proxy=proxy.corp.example:3128", call}, "give http://HOST:PORT"},
		{[]string{"--proxy=https://proxy.corp.example:3128", call}, "is not an http:// URL"},
		{[]string{"--proxy=http://proxy.corp.example", call}, "give http://proxy.corp.example:PORT"},
		{[]string{"--proxy=http://proxy.corp.example:3128/squid", call}, "give http://proxy.corp.example:3128"},
		{[]string{"--proxy=http://u:p@proxy.corp.example:3128", call}, "give http://proxy.corp.example:3128"},
		{[]string{"--proxy=http://proxy.corp.example:3128", "http://jsonplaceholder.typicode.com/todos/1"}, "give an https:// URL"},
		{[]string{"--proxy=http://proxy.corp.example:3128", "tcp://db.postgres.example:5432"}, "give an https:// URL"},
		{[]string{"--proxy=http://proxy.corp.example:3128", "--address=127.0.0.1", call}, "--address and --proxy do not go together"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, run(context.Background(), append([]string{"call"}, tc.args...), &out, &errOut), "args %q", tc.args)
		assert.Empty(t, out.String(), "no observation for %q", tc.args)
		assert.Contains(t, errOut.String(), tc.fix, "args %q", tc.args)
	}
}

// --proxy reaches the proxy: it is asked for a tunnel to the URL's host and port. The
// site's certificate is the test server's, which the client does not trust: the TLS
// error shows that the tunnel carried the handshake to the site.
func TestCallGoesThroughTheProxyGiven(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- site.ServeProxy(ctx, l, (&net.Dialer{}).DialContext, &log) }()

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"call", "--proxy=http://" + l.Addr().String(), srv.URL + "/todos/1"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	cancel()
	require.NoError(t, <-done)
	var o outcome.Observation
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Equal(t, outcome.ErrTLS, o.ErrorClass, "error: %s", o.Error)
	assert.Contains(t, log.String(), " CONNECT "+srv.Listener.Addr().String()+" from "+o.ClientAddress+" 200\n")
}

// --method makes the request with that method and no body, as curl -X does: the server
// sees it, and the observation is the server's answer to it.
func TestCallUsesTheMethodGiven(t *testing.T) {
	var method string
	var length int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, length = r.Method, r.ContentLength
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"call", "--method=POST", srv.URL + "/todos"}, &out, &errOut), errOut.String())
	var o outcome.Observation
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Equal(t, http.StatusCreated, o.Status)
	assert.Equal(t, "POST", method)
	assert.Zero(t, length, "no body")
}

// A method that is no HTTP method, or one on a TCP call, is the caller's to fix: exit 2,
// no call.
func TestCallRejectsABadMethod(t *testing.T) {
	for _, tc := range []struct {
		args []string
		fix  string
	}{
		{[]string{"--method=post", "http://jsonplaceholder.typicode.com/todos/1"}, "give one in upper case"},
		{[]string{"--method=", "http://jsonplaceholder.typicode.com/todos/1"}, "give one in upper case"},
		{[]string{"--method=GET /", "http://jsonplaceholder.typicode.com/todos/1"}, "give one in upper case"},
		{[]string{"--method=POST", "tcp://billing.db.example:5432"}, "a TCP connection carries no HTTP request"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, run(context.Background(), append([]string{"call"}, tc.args...), &out, &errOut), "args %q", tc.args)
		assert.Empty(t, out.String(), "no observation for %q", tc.args)
		assert.Contains(t, errOut.String(), tc.fix, "args %q", tc.args)
	}
}
