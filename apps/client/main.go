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
// It is built as a static binary (CGO_ENABLED=0) and runs as the only file of its
// image; see harness/clientimage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/egresslab/egresslab/harness/outcome"
)

// BodyPrefixBytes is how much of the body the observation keeps: enough to tell a JSON
// todo from an HTML error page, short enough for one line.
const BodyPrefixBytes = 200

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  client call [--timeout=10s] URL   make one GET, print one JSON line
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
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "client call: give exactly one URL, e.g. client call http://jsonplaceholder.typicode.com/todos/1")
			return 2
		}
		obs := Call(ctx, fs.Arg(0), *timeout)
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

// Call makes one GET to url and reports what it saw. It never follows redirects and
// never uses a proxy from the environment: the point is what the sidecar does with
// exactly this request.
func Call(ctx context.Context, url string, timeout time.Duration) outcome.Observation {
	obs := outcome.Observation{URL: url}
	start := time.Now()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		obs.ErrorClass, obs.Error = outcome.ErrOther, err.Error()
		return finish(&obs, start)
	}
	req.Header.Set("User-Agent", "egresslab-client")
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			ForceAttemptHTTP2: false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		obs.ErrorClass, obs.Error = Classify(err), err.Error()
		return finish(&obs, start)
	}
	defer resp.Body.Close()
	obs.Status = resp.StatusCode
	obs.Server = resp.Header.Get("Server")
	obs.UpstreamServiceTime = resp.Header.Get("X-Envoy-Upstream-Service-Time")
	body, err := io.ReadAll(io.LimitReader(resp.Body, BodyPrefixBytes))
	obs.BodyPrefix = printable(body)
	if err != nil {
		// The response came: the call was not refused. Say what broke, without a class
		// that would turn an answered call into a blocked one.
		obs.Error = "reading the body: " + err.Error()
	}
	return finish(&obs, start)
}

func finish(obs *outcome.Observation, start time.Time) outcome.Observation {
	obs.DurationMillis = time.Since(start).Milliseconds()
	return *obs
}

// printable keeps the valid UTF-8 of a body prefix (a cut may split a character).
func printable(b []byte) string {
	s := string(b)
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
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
