package site

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// DatabasePort is the database port the stand-in answers by default: Postgres's.
const DatabasePort = 5432

const (
	// maxLine bounds what a connection may send before it is answered: the client's
	// first line is short, and a stand-in must not buffer what a stranger streams.
	maxLine = 1024
	// lineTimeout bounds how long a connection may take, so a client that connects and
	// says nothing does not hold it open.
	lineTimeout = 10 * time.Second
)

// ServeTCP answers every connection l accepts as a database's port answers a client
// that speaks first: it reads one line (at most maxLine bytes, within lineTimeout),
// writes back
//
//	egresslab stand-in server on port PORT: got "LINE"
//
// (LINE trimmed and quoted, PORT the listener's) and closes. A reply that names the
// port and echoes the client's own line shows that the bytes crossed the mesh both
// ways, unchanged. Each connection is logged to log as it comes: time, "tcp", port and
// the peer's address, which is the address a client's sidecar connected from.
//
// It returns when ctx ends (nil), after closing l and the connections in flight, or
// when l fails.
func ServeTCP(ctx context.Context, l net.Listener, log io.Writer) error {
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		return fmt.Errorf("read the port of %s: %w", l.Addr(), err)
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on port %s: %w", port, err)
		}
		// Logged here, in the one goroutine of the listener, so that lines to log never
		// interleave.
		fmt.Fprintf(log, "%s tcp %s from %s\n", time.Now().UTC().Format(time.RFC3339), port, c.RemoteAddr())
		conns.Go(func() { answer(ctx, c, port) })
	}
}

// answer reads the client's line and writes the reply; ctx ending ends it early.
func answer(ctx context.Context, c net.Conn, port string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(lineTimeout))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxLine), maxLine).ReadString('\n')
	// EOF is the client's half-close or the bound: answer what came. Anything else (the
	// deadline, a reset) leaves no one to answer, or no time to.
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	_, _ = io.WriteString(c, Reply(port, line)+"\n")
}

// Reply is what the stand-in answers on port to a client's line (without the newline
// it ends with): the text a handout shows the client print.
func Reply(port, line string) string {
	return fmt.Sprintf("egresslab stand-in server on port %s: got %q", port, strings.TrimSpace(line))
}
