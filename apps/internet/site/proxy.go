package site

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ProxyPort is the port the stand-in company proxy listens on: Squid's, the proxy
// istio.io's task "Using an external HTTPS proxy" runs.
const ProxyPort = 3128

const (
	// maxProxyHead bounds a request's head (its line and headers): a CONNECT's is one
	// line and a few headers, and a stand-in must not buffer what a stranger streams.
	maxProxyHead = 8 << 10
	// proxyHeadTimeout bounds how long a client may take to send the head, so that a
	// client that connects and says nothing does not hold the connection open.
	proxyHeadTimeout = 10 * time.Second
	// proxyDialTimeout bounds the connection to the target: a target that does not
	// answer is a 502, not a client left waiting.
	proxyDialTimeout = 10 * time.Second
)

// ServeProxy is the company proxy of the http-proxy lab (istio.io's "Using an external
// HTTPS proxy"): an HTTP proxy for HTTPS only, as the task's Squid is used. The app
// asks it with CONNECT HOST:PORT for a tunnel and speaks TLS to the target inside, so
// the app's sidecar sees a TCP connection to the proxy, not one to the target (whose
// name travels only in the CONNECT line, which a TCP route does not read).
//
// For every connection l accepts it reads one request head (at most maxProxyHead bytes,
// within proxyHeadTimeout). A CONNECT to HOST:PORT is dialled with dial (within
// proxyDialTimeout; the stand-in internet passes the pod's own resolver, which the
// cluster's DNS answers) and answered
//
//	HTTP/1.1 200 Connection established
//
// after which the bytes are relayed both ways until both sides are done (see relay).
// A target it cannot reach is a 502 whose body names the target and the error; any
// other method is a 405 (a plain-HTTP request through a proxy is not modelled). Each
// request is logged to log as one line, when it is answered: time, method, target,
// "from" and the peer's address (the address the app's sidecar connected from), and
// the outcome (200, or the status and why).
//
// It returns when ctx ends (nil), after closing l and the tunnels in flight, or when l
// fails.
func ServeProxy(ctx context.Context, l net.Listener, dial func(ctx context.Context, network, addr string) (net.Conn, error), log io.Writer) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	var conns sync.WaitGroup
	defer conns.Wait()
	// Lines come from the connections' goroutines, as each request is answered: one
	// lock keeps them whole.
	var logMu sync.Mutex
	logf := func(method, target string, peer net.Addr, result string) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(log, "%s %s %s from %s %s\n", time.Now().UTC().Format(time.RFC3339), method, target, peer, result)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept proxy connections on %s: %w", l.Addr(), err)
		}
		conns.Go(func() { proxy(ctx, c, dial, logf) })
	}
}

// proxy answers one client: it reads the request's head and, for a CONNECT, opens the
// tunnel and relays it; ctx ending closes both connections.
func proxy(ctx context.Context, c net.Conn, dial func(ctx context.Context, network, addr string) (net.Conn, error), logf func(method, target string, peer net.Addr, result string)) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	peer := c.RemoteAddr()

	_ = c.SetReadDeadline(time.Now().Add(proxyHeadTimeout))
	head := &io.LimitedReader{R: c, N: maxProxyHead}
	br := bufio.NewReaderSize(head, maxProxyHead)
	req, err := http.ReadRequest(br)
	var netErr net.Error
	switch {
	case err != nil && head.N == 0:
		// The bound, not the client, ended the head (whatever ReadRequest made of it).
		logf("-", "-", peer, fmt.Sprintf("431 request head over %d bytes", maxProxyHead))
		refuse(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request's head is over %d bytes", maxProxyHead), nil)
		return
	case errors.Is(err, io.EOF):
		// Closed before a byte (a TCP probe): no request, nothing to log.
		return
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
		// The client left, or took too long: there is no one to answer.
		logf("-", "-", peer, "no request: "+err.Error())
		return
	case err != nil:
		logf("-", "-", peer, "400 "+err.Error())
		refuse(c, http.StatusBadRequest, err.Error(), nil)
		return
	}
	_ = c.SetReadDeadline(time.Time{})

	target := req.RequestURI
	if req.Method != http.MethodConnect {
		logf(req.Method, target, peer, "405 only CONNECT is served")
		refuse(c, http.StatusMethodNotAllowed, "this proxy only tunnels HTTPS: send CONNECT HOST:PORT", http.Header{"Allow": {http.MethodConnect}})
		return
	}
	// ReadRequest reads CONNECT's authority form into URL.Host; any other form leaves a
	// path.
	if host, port, err := net.SplitHostPort(req.URL.Host); err != nil || host == "" || port == "" || req.URL.Path != "" {
		logf(req.Method, target, peer, "400 not HOST:PORT")
		refuse(c, http.StatusBadRequest, fmt.Sprintf("CONNECT takes HOST:PORT, e.g. CONNECT %s:443, not %q", Host, target), nil)
		return
	}

	dialCtx, cancel := context.WithTimeout(ctx, proxyDialTimeout)
	up, err := dial(dialCtx, "tcp", target)
	cancel()
	if err != nil {
		logf(req.Method, target, peer, "502 "+err.Error())
		refuse(c, http.StatusBadGateway, fmt.Sprintf("cannot reach %s: %v", target, err), nil)
		return
	}
	defer up.Close()
	stopUp := context.AfterFunc(ctx, func() { up.Close() })
	defer stopUp()
	logf(req.Method, target, peer, "200")
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// What the client sent after its head (a ClientHello that did not wait for the
	// answer) is already in br: it is the tunnel's first bytes.
	relay(c, up, io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c))
}

// relay copies the bytes both ways, from the client (read from fromClient) to up and
// from up to the client, until both directions are done. A direction that ends (EOF) is
// passed on as a half-close, as TCP would carry it: a client that shuts its side after
// its request still gets the answer. A direction that fails closes both connections,
// which ends the other: no one is left on that side to answer or to read. The caller
// closes both at the end.
func relay(client, up net.Conn, fromClient io.Reader) {
	var dirs sync.WaitGroup
	pipe := func(dst net.Conn, src io.Reader) {
		if _, err := io.Copy(dst, src); err != nil {
			client.Close()
			up.Close()
			return
		}
		// A connection that cannot half-close (no CloseWrite) stays open: the other
		// side ends the tunnel when it closes.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	dirs.Go(func() { pipe(up, fromClient) })
	dirs.Go(func() { pipe(client, up) })
	dirs.Wait()
}

// refuse writes the proxy's own answer when it opens no tunnel: code, and body as a
// line of text. The caller closes the connection.
func refuse(c net.Conn, code int, body string, header http.Header) {
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "text/plain; charset=utf-8")
	body = "egresslab stand-in proxy: " + body + "\n"
	resp := &http.Response{
		StatusCode: code, ProtoMajor: 1, ProtoMinor: 1,
		Header:        header,
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(strings.NewReader(body)),
		Close:         true,
	}
	_ = resp.Write(c)
}
