package observe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/outcome"
)

// Errors as net/http wraps them, for the cases local servers cannot produce on demand.
func TestClassifyWrappedErrors(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Get", URL: "http://h/", Err: err} }
	opErr := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	cases := map[string]struct {
		err  error
		want outcome.ErrorClass
	}{
		"resolver timed out is still DNS": {wrap(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "i/o timeout", Name: "h", IsTimeout: true}}), outcome.ErrDNS},
		"reset":                           {wrap(opErr(syscall.ECONNRESET)), outcome.ErrReset},
		"reset inside the TLS handshake":  {wrap(fmt.Errorf("tls handshake: %w", opErr(syscall.ECONNRESET))), outcome.ErrReset},
		"EOF inside the TLS handshake":    {wrap(fmt.Errorf("tls handshake: %w", io.EOF)), outcome.ErrReset},
		"broken pipe":                     {wrap(opErr(syscall.EPIPE)), outcome.ErrReset},
		"refused":                         {wrap(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), outcome.ErrRefused},
		"deadline":                        {wrap(context.DeadlineExceeded), outcome.ErrTimeout},
		"TLS alert from the server":       {wrap(tls.AlertError(40)), outcome.ErrTLS},
		"TLS record from a non-TLS peer":  {wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), outcome.ErrTLS},
		"anything else":                   {wrap(errors.New("unsupported protocol scheme")), outcome.ErrOther},
		"none":                            {nil, outcome.ErrNone},
	}
	for name, tc := range cases {
		assert.Equal(t, tc.want, Classify(tc.err), name)
	}
}
