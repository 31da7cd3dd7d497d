package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/egresslab/egresslab/harness/dataplane"
)

// soOriginalDst is Linux's SO_ORIGINAL_DST (linux/netfilter_ipv4.h): where a
// connection redirected by iptables' REDIRECT was going.
const soOriginalDst = 80

// originalDst reads the destination a redirected IPv4 connection was sent to.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var addr netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		// struct sockaddr_in fits the 16 bytes of an IPv6 mreq: family, port, address.
		m, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IP, soOriginalDst)
		if err != nil {
			serr = err
			return
		}
		port := uint16(m.Multiaddr[2])<<8 | uint16(m.Multiaddr[3])
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Multiaddr[4:8])), port)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	return addr, nil
}

// sniffTimeout bounds the wait for a client's first bytes: a server-first protocol
// sends none, and is then taken as plain TCP.
const sniffTimeout = 5 * time.Second

// sniff reads what Envoy's listener filters read from the first bytes without taking
// them from r: a TLS ClientHello's SNI and ALPN (tls_inspector), or an HTTP/1.x
// request's Host and path (http_inspector, then the HTTP connection manager).
func sniff(c net.Conn, r *bufio.Reader, conn *dataplane.Connection) {
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	first, err := r.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 0x16 { // TLS handshake record
		if hello := peekClientHello(r); hello != nil {
			conn.TLS, conn.SNI, conn.ALPN = true, hello.ServerName, hello.SupportedProtos
		}
		return
	}
	head, ok := peekHTTPHead(r)
	if !ok {
		return
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return
	}
	conn.HTTP, conn.Host, conn.Path = true, req.Host, req.URL.RequestURI()
}

var methods = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "TRACE ", "CONNECT "}

// peekHTTPHead returns the request line and headers of an HTTP/1.x request at the
// start of r, without consuming them. It waits for more bytes only while what has
// arrived could still be such a request.
func peekHTTPHead(r *bufio.Reader) ([]byte, bool) {
	for {
		b, _ := r.Peek(r.Buffered())
		if !hasMethod(b) {
			return nil, false
		}
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			line := b[:bytes.IndexByte(b, '\n')]
			return b[:i+4], bytes.Contains(line, []byte(" HTTP/1."))
		}
		if len(b) == r.Size() {
			return nil, false
		}
		if _, err := r.Peek(len(b) + 1); err != nil {
			return nil, false
		}
	}
}

func hasMethod(b []byte) bool {
	for _, m := range methods {
		if strings.HasPrefix(string(b), m) || strings.HasPrefix(m, string(b)) {
			return true
		}
	}
	return false
}

// peekClientHello parses the ClientHello at the start of r without consuming it.
func peekClientHello(r *bufio.Reader) *tls.ClientHelloInfo {
	head, err := r.Peek(5)
	if err != nil {
		return nil
	}
	n := 5 + (int(head[3])<<8 | int(head[4]))
	if n > r.Size() {
		return nil
	}
	rec, err := r.Peek(n)
	if err != nil {
		return nil
	}
	var hello *tls.ClientHelloInfo
	srv := tls.Server(readOnly{bytes.NewReader(rec)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = h
			return nil, errSniffed
		},
	})
	_ = srv.Handshake()
	return hello
}

var errSniffed = errors.New("sniffed")

// readOnly is a net.Conn that reads a recorded ClientHello and writes nowhere.
type readOnly struct{ r *bytes.Reader }

func (c readOnly) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (readOnly) Write(b []byte) (int, error)      { return len(b), nil }
func (readOnly) Close() error                     { return nil }
func (readOnly) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (readOnly) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (readOnly) SetDeadline(time.Time) error      { return nil }
func (readOnly) SetReadDeadline(time.Time) error  { return nil }
func (readOnly) SetWriteDeadline(time.Time) error { return nil }
