package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/egresslab/egresslab/harness/outcome"
)

// Classify names the way a call failed. The order matters: a DNS failure can also be a
// timeout (the resolver timed out), and it is the DNS failure that explains it; a reset
// during a TLS handshake surfaces inside a TLS error, and it is the reset that says the
// sidecar refused (BlackHoleCluster).
func Classify(err error) outcome.ErrorClass {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case err == nil:
		return outcome.ErrNone
	case errors.As(err, &dnsErr):
		return outcome.ErrDNS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return outcome.ErrTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return outcome.ErrRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return outcome.ErrReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The peer closed the connection before answering: in the handshake or before the
		// response. Envoy's BlackHoleCluster does exactly this; so does a reset that the
		// kernel reported as an orderly close.
		return outcome.ErrReset
	case isTLS(err):
		return outcome.ErrTLS
	case strings.Contains(err.Error(), "connection reset by peer"):
		// Some paths (net/http's persistConn) flatten the syscall error into text.
		return outcome.ErrReset
	}
	return outcome.ErrOther
}

func isTLS(err error) bool {
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &alert) || errors.As(err, &verify) || errors.As(err, &record) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		strings.Contains(err.Error(), "tls: ")
}
