// Command envoy-standin stands in for the Envoy process in the offline proxyv2 image,
// installed where pilot-agent starts Envoy (/usr/local/bin/envoy) and started with
// Envoy's command line. Everything is in harness/dataplane/proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/egresslab/egresslab/harness/dataplane/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(proxy.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
