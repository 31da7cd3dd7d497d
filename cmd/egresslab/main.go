// Command egresslab runs egresslab's labs and answers questions about mesh egress.
//
//	egresslab lab serviceentry [flags]   the narrated ServiceEntry lab
//	egresslab check [flags] URL          would a call to URL be allowed?
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/egresslab/egresslab/internal/cli"
)

func main() {
	// Ctrl-C cancels the context: backends stop waiting and clean up before exiting. A
	// second Ctrl-C quits at once.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ctx, stop := cli.OnInterrupt(context.Background(), sig, os.Stderr, os.Exit)
	code := cli.Run(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Env: os.Getenv})
	stop()
	os.Exit(code)
}
