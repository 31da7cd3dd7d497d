package observe_test

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

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/outcome"
)

// standIn runs the stand-in internet's database port on loopback; stop ends it and
// returns what it logged.
func standIn(t *testing.T) (port int, stop func() string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- site.ServeTCP(ctx, l, &log) }()
	stop = func() string {
		cancel()
		require.NoError(t, <-done)
		return log.String()
	}
	t.Cleanup(func() { cancel() })
	return l.Addr().(*net.TCPAddr).Port, stop
}

// listener runs handle on every connection a loopback listener accepts.
func listener(t *testing.T, handle func(net.Conn)) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestTCPCallKeepsTheReply(t *testing.T) {
	port, stop := standIn(t)
	o := observe.Call(context.Background(), "tcp://127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	// The stand-in echoes the line it got: the client wrote observe.Ping first.
	assert.Equal(t, fmt.Sprintf("egresslab stand-in server on port %d: got \"egresslab ping\"\n", port), o.BodyPrefix)
	assert.Equal(t, outcome.ErrNone, o.ErrorClass)
	assert.Empty(t, o.Error)
	assert.Zero(t, o.Status)
	assert.Empty(t, o.RequestID, "no HTTP, no request id")
	// The address the client recorded is the one the far end saw the call come from.
	require.NotEmpty(t, o.ClientAddress)
	assert.Contains(t, stop(), " tcp "+strconv.Itoa(port)+" from "+o.ClientAddress+"\n")
	v := outcome.Classify(o)
	assert.Equal(t, outcome.Allowed, v.Kind)
	assert.Equal(t, outcome.ReasonUpstream, v.Reason)
}

// BlackHoleCluster accepts and closes with the client's bytes unread: the kernel
// answers them with a reset, or the client reads the close before it.
func TestTCPCallClosedUnansweredIsAReset(t *testing.T) {
	for name, reset := range map[string]bool{"close": false, "close with RST": true} {
		t.Run(name, func(t *testing.T) {
			port := listener(t, func(c net.Conn) {
				if reset {
					_ = c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			})
			o := observe.Call(context.Background(), "tcp://127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			assert.Equal(t, outcome.ErrReset, o.ErrorClass, "error: %s", o.Error)
			assert.Empty(t, o.BodyPrefix)
			v := outcome.Classify(o)
			assert.Equal(t, outcome.Blocked, v.Kind)
			assert.Equal(t, outcome.ReasonBlackHole, v.Reason)
		})
	}
}

// --address for a database: the URL's name resolves nowhere, the call reaches the IP.
func TestTCPCallConnectsToTheAddressGiven(t *testing.T) {
	port, _ := standIn(t)
	o := observe.Call(context.Background(), "tcp://db.postgres.example:"+strconv.Itoa(port), 5*time.Second, observe.ConnectTo("127.0.0.1"))
	assert.Equal(t, outcome.ErrNone, o.ErrorClass, "error: %s", o.Error)
	assert.Contains(t, o.BodyPrefix, `got "egresslab ping"`)
	assert.True(t, strings.HasPrefix(o.ClientAddress, "127.0.0.1:"), o.ClientAddress)
}

// Part of a reply came and then nothing: the bytes are kept and the call stays answered.
func TestTCPCallKeepsAPartialReply(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	port := listener(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.WriteString(c, "FATAL:  ")
		<-release
	})
	o := observe.Call(context.Background(), "tcp://127.0.0.1:"+strconv.Itoa(port), 300*time.Millisecond)
	assert.Equal(t, "FATAL:  ", o.BodyPrefix)
	assert.Equal(t, outcome.ErrNone, o.ErrorClass)
	assert.Contains(t, o.Error, "reading the reply")
	assert.Equal(t, outcome.Allowed, outcome.Classify(o).Kind)
}

func TestTCPCallTimesOut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	port := listener(t, func(c net.Conn) {
		defer c.Close()
		<-release
	})
	o := observe.Call(context.Background(), "tcp://127.0.0.1:"+strconv.Itoa(port), 300*time.Millisecond)
	assert.Equal(t, outcome.ErrTimeout, o.ErrorClass, "error: %s", o.Error)
	assert.GreaterOrEqual(t, o.DurationMillis, int64(300))
	assert.Less(t, o.DurationMillis, int64(5000))
}

func TestTCPCallKeepsOnlyAReplyPrefix(t *testing.T) {
	port := listener(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.WriteString(c, strings.Repeat("x", 10*observe.BodyPrefixBytes))
	})
	o := observe.Call(context.Background(), "tcp://127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	assert.Len(t, o.BodyPrefix, observe.BodyPrefixBytes)
}

func TestTCPAddress(t *testing.T) {
	addr, err := observe.TCPAddress("tcp://db.postgres.example:5432/")
	require.NoError(t, err)
	assert.Equal(t, "db.postgres.example:5432", addr)
	addr, err = observe.TCPAddress("TCP://[::1]:5432")
	require.NoError(t, err)
	assert.Equal(t, "[::1]:5432", addr)
	for url, fix := range map[string]string{
		"tcp://db.postgres.example":            "tcp://db.postgres.example:5432",
		"tcp://db.postgres.example:5432/app":   "give tcp://db.postgres.example:5432",
		"tcp://db.postgres.example:5432?ssl=1": "give tcp://db.postgres.example:5432",
		"tcp://:5432":                          "names no host",
		"http://db.postgres.example:5432":      "is not a tcp:// URL",
	} {
		_, err := observe.TCPAddress(url)
		require.Error(t, err, url)
		assert.Contains(t, err.Error(), fix, url)
		o := observe.Call(context.Background(), url, time.Second)
		if outcome.IsTCP(url) {
			assert.Equal(t, outcome.ErrOther, o.ErrorClass, url)
			assert.Empty(t, o.ClientAddress, "%s: nothing dialled", url)
		}
	}
}
