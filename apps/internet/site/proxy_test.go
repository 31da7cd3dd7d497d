package site_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/internal/syncbuf"
)

// serveProxy runs ServeProxy on a loopback port, dialling with dial (a plain dialer if
// nil), until the test ends; stop ends it early and returns what it logged and returned.
func serveProxy(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (addr string, log *syncbuf.Buffer, stop func() error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	log = &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- site.ServeProxy(ctx, l, dial, log) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ServeProxy did not return when its context ended")
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return l.Addr().String(), log, stop
}

// request sends head to the proxy and reads its answer; the reader goes on with the
// tunnel's bytes.
func request(t *testing.T, proxy, head string) (net.Conn, *bufio.Reader, *http.Response) {
	c, err := net.Dial("tcp", proxy)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	// Well under the proxy's own 10 s: an answer must not wait for a deadline.
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	_, err = io.WriteString(c, head)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	return c, br, resp
}

func body(t *testing.T, resp *http.Response) string {
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func connect(target string) string {
	return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
}

var logTime = `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ `

// The tunnel carries the bytes both ways, and the client's half-close reaches the
// target: ServeTCP answers a line that ends without a newline only when it reads EOF.
func TestServeProxyTunnelsAndPassesTheHalfCloseOn(t *testing.T) {
	upstream, port, stopUpstream := serveTCP(t)
	proxy, log, stop := serveProxy(t, nil)
	c, br, resp := request(t, proxy, connect(upstream))
	assert.Equal(t, "200 Connection established", resp.Status)

	_, err := io.WriteString(c, "egresslab ping")
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	reply, err := io.ReadAll(br)
	require.NoError(t, err, "the target's close reaches the client")
	assert.Equal(t, fmt.Sprintf("egresslab stand-in server on port %d: got \"egresslab ping\"\n", port), string(reply))

	require.NoError(t, stop())
	assert.Regexp(t, logTime+`CONNECT `+upstream+` from `+c.LocalAddr().String()+" 200\n$", log.String())
	upstreamLog, err := stopUpstream()
	require.NoError(t, err)
	assert.Contains(t, upstreamLog, " tcp "+strconv.Itoa(port)+" from 127.0.0.1:", "the target saw the proxy's connection")
}

// Bytes the client sends right behind its CONNECT, before the answer, are the tunnel's.
func TestServeProxyKeepsBytesSentWithTheHead(t *testing.T) {
	upstream, port, _ := serveTCP(t)
	proxy, _, _ := serveProxy(t, nil)
	_, br, resp := request(t, proxy, connect(upstream)+"egresslab ping\n")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	reply, err := io.ReadAll(br)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("egresslab stand-in server on port %d: got \"egresslab ping\"\n", port), string(reply))
}

// A proxy for HTTPS only: a plain-HTTP request through it is refused, not forwarded.
func TestServeProxyAnswers405ToOtherMethods(t *testing.T) {
	proxy, log, stop := serveProxy(t, func(context.Context, string, string) (net.Conn, error) {
		t.Error("a GET must not be dialled")
		return nil, errors.New("not dialled")
	})
	url := "http://" + site.Host + "/todos/1"
	c, _, resp := request(t, proxy, "GET "+url+" HTTP/1.1\r\nHost: "+site.Host+"\r\n\r\n")
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "CONNECT", resp.Header.Get("Allow"))
	assert.Contains(t, body(t, resp), "only tunnels HTTPS")
	require.NoError(t, stop())
	assert.Regexp(t, logTime+`GET `+url+` from `+c.LocalAddr().String()+" 405 ", log.String())
}

func TestServeProxyAnswers502WhenTheTargetIsUnreachable(t *testing.T) {
	target := "nowhere.example:443"
	var dialled string
	proxy, log, stop := serveProxy(t, func(_ context.Context, network, addr string) (net.Conn, error) {
		dialled = network + " " + addr
		return nil, errors.New("dial tcp: lookup nowhere.example: no such host")
	})
	c, _, resp := request(t, proxy, connect(target))
	assert.Equal(t, "502 Bad Gateway", resp.Status)
	assert.Equal(t, "egresslab stand-in proxy: cannot reach nowhere.example:443: dial tcp: lookup nowhere.example: no such host\n", body(t, resp))
	assert.True(t, resp.Close, "the connection ends with the answer")
	require.NoError(t, stop())
	assert.Equal(t, "tcp "+target, dialled)
	assert.Regexp(t, logTime+`CONNECT `+target+` from `+c.LocalAddr().String()+" 502 dial tcp: lookup nowhere.example: no such host\n$", log.String())
}

func TestServeProxyRefusesAConnectWithoutHostAndPort(t *testing.T) {
	for _, target := range []string{site.Host, "/tunnel", ":443"} {
		proxy, _, _ := serveProxy(t, nil)
		_, _, resp := request(t, proxy, connect(target))
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, target)
		assert.Contains(t, body(t, resp), "CONNECT takes HOST:PORT", target)
	}
}

// A head that never ends is refused at the bound, not buffered without end.
func TestServeProxyBoundsTheHead(t *testing.T) {
	proxy, log, _ := serveProxy(t, nil)
	// Exactly the bound (8 KiB), so that nothing is left unread to turn the close into a
	// reset before the answer is read.
	head := "CONNECT " + site.Host + ":443 HTTP/1.1\r\nX-Padding: "
	head += strings.Repeat("x", 8<<10-len(head))
	_, _, resp := request(t, proxy, head)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	assert.Contains(t, log.String(), " 431 ")
}

// Ctrl-C must close an open tunnel, both its sides, and not wait for them to end: with
// bytes able to flow both ways, and after the client's half-close, when only the
// target's side is left to read (closing the client's side alone would not end it).
func TestServeProxyStopsWithItsContextWithATunnelOpen(t *testing.T) {
	for name, halfClosed := range map[string]bool{"open both ways": false, "the client's side done": true} {
		t.Run(name, func(t *testing.T) {
			upstream, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer upstream.Close()
			// The target reads what comes and never closes on its own (until the test ends).
			release := make(chan struct{})
			defer close(release)
			read := make(chan error, 1)
			go func() {
				c, err := upstream.Accept()
				if err != nil {
					read <- err
					return
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = io.Copy(io.Discard, c)
				read <- err
				<-release
			}()
			proxy, _, stop := serveProxy(t, nil)
			c, br, resp := request(t, proxy, connect(upstream.Addr().String()))
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
			if halfClosed {
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
				select {
				case err := <-read:
					require.NoError(t, err, "the half-close reached the target")
				case <-time.After(3 * time.Second):
					t.Fatal("the half-close did not reach the target")
				}
			}

			start := time.Now()
			require.NoError(t, stop(), "a stop is no error")
			assert.Less(t, time.Since(start), 5*time.Second)
			if !halfClosed {
				select {
				case err := <-read:
					assert.NoError(t, err, "the target's side was closed, not left to its deadline")
				case <-time.After(5 * time.Second):
					t.Fatal("the target's side is still open")
				}
			}
			_, err = br.ReadByte()
			assert.ErrorIs(t, err, io.EOF, "the client's side was closed")
			_, err = net.DialTimeout("tcp", proxy, time.Second)
			assert.Error(t, err, "the listener is closed")
		})
	}
}

// Nor must it wait for a client that connected and has not sent its request yet.
func TestServeProxyStopsWithItsContextBeforeARequest(t *testing.T) {
	proxy, log, stop := serveProxy(t, nil)
	c, err := net.Dial("tcp", proxy)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "CONNECT "+site.Host+":443 HTTP/1.1\r\n")
	require.NoError(t, err)
	// Give the proxy the time to read it, so that the request is in flight when ctx ends.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, _ = c.Read(make([]byte, 1))
	start := time.Now()
	require.NoError(t, stop())
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Contains(t, log.String(), " - - from "+c.LocalAddr().String()+" no request: ")
}
