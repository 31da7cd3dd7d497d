package main

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freePort is a loopback port nothing listens on.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// Every --tcp port answers, directly and through the --proxy, and Ctrl-C stops them
// with the HTTP servers.
func TestRunAnswersTCPUntilStopped(t *testing.T) {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http=127.0.0.1:0", "--https=127.0.0.1:0",
			"--tcp=" + strconv.Itoa(ports[0]) + "," + strconv.Itoa(ports[1]),
			"--proxy=127.0.0.1:" + strconv.Itoa(ports[2])})
	}()
	dial := func(port int) net.Conn {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var c net.Conn
		require.Eventually(t, func() bool {
			var err error
			c, err = net.Dial("tcp", addr)
			return err == nil
		}, 5*time.Second, 20*time.Millisecond)
		require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
		return c
	}
	for _, port := range ports[:2] {
		c := dial(port)
		_, err := io.WriteString(c, "egresslab ping\n")
		require.NoError(t, err)
		reply, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Equal(t, "egresslab stand-in server on port "+strconv.Itoa(port)+": got \"egresslab ping\"\n", string(reply))
		c.Close()
	}
	// The proxy tunnels to the first port, with the ping sent behind the CONNECT.
	c := dial(ports[2])
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	_, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\negresslab ping\n")
	require.NoError(t, err)
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 200 Connection established\r\n\r\n"+
		"egresslab stand-in server on port "+strconv.Itoa(ports[0])+": got \"egresslab ping\"\n", string(reply))
	c.Close()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop when its context ended")
	}
	for _, port := range ports {
		_, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		assert.Error(t, err, "port %d still answers after run returned", port)
	}
}

func TestRunRejectsABadTCPPort(t *testing.T) {
	for _, list := range []string{"postgres", "0", "5432,70000"} {
		err := run(context.Background(), []string{"--tcp=" + list})
		require.Error(t, err, list)
		assert.Contains(t, err.Error(), "is not a port", list)
	}
}
