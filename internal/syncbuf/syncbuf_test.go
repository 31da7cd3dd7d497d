package syncbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Writes from many goroutines while another reads lose nothing (run with -race: make
// test does, for this package).
func TestConcurrentWritesAndReads(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
		_ = b.String()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 50 {
		t.Fatalf("%d lines, want 50", n)
	}
}
