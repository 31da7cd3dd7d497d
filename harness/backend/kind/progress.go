package kind

import (
	"fmt"
	"io"
	"time"
)

// tick is how often a long step says it is still going.
var tick = 15 * time.Second

// step announces a long step and returns the func that reports its end with the elapsed
// time; while it runs, it says every tick that it is still going, so a five-minute image
// pull does not look like a hang.
func step(w io.Writer, name string) func(error) {
	start := time.Now()
	fmt.Fprintf(w, "▸ %s\n", name)
	stop, stopped := make(chan struct{}), make(chan struct{})
	every := tick
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Fprintf(w, "  … %s (%s)\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func(err error) {
		close(stop)
		<-stopped
		took := time.Since(start).Round(100 * time.Millisecond)
		if err != nil {
			fmt.Fprintf(w, "✗ %s: failed after %s\n", name, took)
			return
		}
		fmt.Fprintf(w, "✓ %s (%s)\n", name, took)
	}
}
