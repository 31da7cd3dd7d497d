package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// OnInterrupt is the context a command runs under: the first signal from sig (Ctrl-C,
// SIGTERM) cancels it, so that what is under way stops and cleans up; a second ends
// the program at once through exit, whatever it is doing, saying what may be left.
// stop ends the watch: once it returns, no signal is read any more.
func OnInterrupt(parent context.Context, sig <-chan os.Signal, w io.Writer, exit func(code int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case s := <-sig:
			fmt.Fprintf(w, "\n%v: stopping and cleaning up (press Ctrl-C again to quit at once)\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sig:
			fmt.Fprintf(w, "\n%v again: quitting without cleaning up; a kind cluster may be left (egresslab clean deletes it)\n", s)
			exit(ExitInterrupted)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			cancel()
			close(done)
			<-finished
		})
	}
}
