package backend

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// FinishOnSignal watches for Ctrl-C (SIGINT) and SIGTERM for a whole run of a Lifecycle
// provider, not only while it sets up: on the first, it cancels the run's context so
// that what is under way stops, lets the provider clean up (Finish), and calls exit.
// Finish waits for a Setup still under way, which cleans up after itself when its
// context ends. stop ends the watch once the run has finished on its own.
func FinishOnSignal(lc Lifecycle, cancel context.CancelFunc, w io.Writer, exit func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(w, "\n%v: stopping the run and cleaning up\n", s)
			cancel()
			if _, err := lc.Finish(context.Background()); err != nil {
				fmt.Fprintf(w, "clean up after %v: %v\n", s, err)
			}
			exit()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
