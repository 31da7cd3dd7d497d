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
	// Ctrl-C cancels the context: backends stop waiting and clean up before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := cli.Run(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Env: os.Getenv})
	stop()
	os.Exit(code)
}
