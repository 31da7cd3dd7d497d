// Command client is the lab's client app: the workload inside the mesh whose calls the
// istio-proxy sidecar lets out or refuses.
//
//	client call [--timeout=10s] URL   make one GET and print what happened as ONE JSON line
//	client serve [--listen=:8080]     stay up (the pod's main process) and answer /healthz
//
// The JSON line is outcome.Observation: the status, the `server` and
// `x-envoy-upstream-service-time` headers (they say whether Envoy answered itself or
// reached an upstream), the first bytes of the body, and, when there was no response,
// the error class (reset, refused, dns, timeout, tls). The harness classifies it.
//
// A tcp://HOST:PORT URL (a database outside the mesh) makes one TCP exchange instead:
// the client writes observe.Ping and the line holds the reply's first bytes as the body.
//
// --proxy=http://HOST:PORT sends an https:// call through a company's HTTP proxy, as
// curl's --proxy does: a CONNECT tunnel to the URL's host inside a connection to the
// proxy, which is all the sidecar sees (the http-proxy lab). --method=POST makes the
// request with that method and no body, as curl -X does (the egress-authz lab).
//
// It is built as a static binary (CGO_ENABLED=0) and runs as the only file of its
// image; see harness/appimage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/harness/outcome"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  client call [--timeout=10s] [--method=GET] [--address=IP | --proxy=http://HOST:PORT] URL
                                    make one GET (or --method's request, with no body),
                                    print one JSON line; --address connects
                                    to IP instead of the host's address (curl's --resolve);
                                    --proxy sends an https:// URL through that HTTP proxy
                                    with CONNECT (curl's --proxy); URL tcp://HOST:PORT
                                    writes a line over plain TCP and reads the reply
                                    instead (a database's port)
  client serve [--listen=:8080]     answer /healthz until stopped`

// run is main without the process: it returns the exit code. A call that fails is
// still a successful run (exit 0): the failure is the observation.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "call":
		fs := flag.NewFlagSet("call", flag.ContinueOnError)
		fs.SetOutput(stderr)
		timeout := fs.Duration("timeout", 10*time.Second, "give up on the call after this long")
		address := fs.String("address", "", "connect to this IP address instead of the one DNS gives the URL's host (Host and SNI stay the URL's)")
		proxy := fs.String("proxy", "", "send the https:// call through this HTTP proxy (http://HOST:PORT), in a CONNECT tunnel")
		method := fs.String("method", "GET", "make the HTTP request with this method, with no body (curl's -X)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "client call: give exactly one URL, e.g. client call http://jsonplaceholder.typicode.com/todos/1")
			return 2
		}
		// A tcp:// URL that names no port is the caller's mistake, not an observation.
		if outcome.IsTCP(fs.Arg(0)) {
			if _, err := observe.TCPAddress(fs.Arg(0)); err != nil {
				fmt.Fprintf(stderr, "client call: %v\n", err)
				return 2
			}
		}
		var opts []observe.Option
		if err := observe.CheckMethod(*method); err != nil {
			fmt.Fprintf(stderr, "client call: %v\n", err)
			return 2
		}
		if *method != http.MethodGet {
			if outcome.IsTCP(fs.Arg(0)) {
				fmt.Fprintf(stderr, "client call: --method %s with a tcp:// URL: a TCP connection carries no HTTP request\n", *method)
				return 2
			}
			opts = append(opts, observe.WithMethod(*method))
		}
		switch {
		case *address != "" && *proxy != "":
			fmt.Fprintln(stderr, "client call: --address and --proxy do not go together: the call connects to the proxy, which finds the URL's host itself; give one of them")
			return 2
		case *address != "":
			if _, err := netip.ParseAddr(*address); err != nil {
				fmt.Fprintf(stderr, "client call: --address %q is not an IP address, e.g. 10.20.30.40\n", *address)
				return 2
			}
			opts = append(opts, observe.ConnectTo(*address))
		case *proxy != "":
			u, err := observe.ProxyURL(*proxy, fs.Arg(0))
			if err != nil {
				fmt.Fprintf(stderr, "client call: %v\n", err)
				return 2
			}
			opts = append(opts, observe.ViaProxy(u))
		}
		obs := observe.Call(ctx, fs.Arg(0), *timeout, opts...)
		if err := json.NewEncoder(stdout).Encode(obs); err != nil {
			fmt.Fprintf(stderr, "client call: write the observation: %v\n", err)
			return 1
		}
		return 0
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		listen := fs.String("listen", ":8080", "address to answer /healthz on")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if err := Serve(ctx, *listen); err != nil {
			fmt.Fprintf(stderr, "client serve: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "client: unknown command %q\n%s\n", args[0], usage)
	return 2
}

// Serve answers /healthz on addr until ctx ends, so the pod stays up between calls and
// its readiness probe passes.
func Serve(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", addr, err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("stop serving on %s: %w", addr, err)
		}
		return nil
	}
}
