package site_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/apps/internet/site"
)

// serveTCP runs ServeTCP on a loopback port until the test ends; stop ends it early and
// returns what it logged and returned.
func serveTCP(t *testing.T) (addr string, port int, stop func() (string, error)) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- site.ServeTCP(ctx, l, &log) }()
	stopped := false
	stop = func() (string, error) {
		cancel()
		select {
		case err := <-done:
			stopped = true
			return log.String(), err
		case <-time.After(5 * time.Second):
			t.Fatal("ServeTCP did not return when its context ended")
			return "", nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			_, _ = stop()
		}
	})
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port, stop
}

// exchange writes send, then reads until the server closes.
func exchange(t *testing.T, addr, send string) string {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	// Well under the server's own 10 s: an answer must not wait for its deadline.
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	_, err = io.WriteString(c, send)
	require.NoError(t, err)
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(reply)
}

func TestServeTCPAnswersTheLineAndLogs(t *testing.T) {
	addr, port, stop := serveTCP(t)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	_, err = io.WriteString(c, "  egresslab ping\r\n")
	require.NoError(t, err)
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("egresslab stand-in server on port %d: got \"egresslab ping\"\n", port), string(reply))

	log, err := stop()
	require.NoError(t, err)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ tcp `+strconv.Itoa(port)+` from `+c.LocalAddr().String()+"\n$", log)
}

// A client that streams without a newline is answered after maxLine bytes, not at the
// deadline.
func TestServeTCPBoundsTheLine(t *testing.T) {
	addr, port, _ := serveTCP(t)
	long := strings.Repeat("x", 1024)
	assert.Equal(t, fmt.Sprintf("egresslab stand-in server on port %d: got %q\n", port, long), exchange(t, addr, long))
}

// Ctrl-C must not wait for a client that connected and said nothing.
func TestServeTCPStopsWithItsContext(t *testing.T) {
	addr, _, stop := serveTCP(t)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	// Give the server the time to accept it, so that it is in flight when ctx ends.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, _ = c.Read(make([]byte, 1))
	start := time.Now()
	_, err = stop()
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	_, err = net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "the listener is closed")
}
