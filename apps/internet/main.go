// Command internet is the stand-in internet of offline runs: it serves the site
// package (jsonplaceholder's answers) over HTTP and HTTPS. The cluster's DNS names it as
// jsonplaceholder.typicode.com; it runs outside the mesh, in its own namespace.
//
//	internet [--http=:80] [--https=:443] [--cert=FILE --key=FILE]
//
// Without --cert it makes its own certificate, which no client trusts.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/egresslab/egresslab/apps/internet/site"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "internet: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("internet", flag.ContinueOnError)
	httpAddr := fs.String("http", ":80", "where to answer plain HTTP")
	httpsAddr := fs.String("https", ":443", "where to answer HTTPS")
	certFile := fs.String("cert", "", "the certificate for "+strings.Join(site.Hosts, ", ")+" (PEM)")
	keyFile := fs.String("key", "", "its key (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cert tls.Certificate
	var err error
	if *certFile != "" {
		cert, err = tls.LoadX509KeyPair(*certFile, *keyFile)
	} else {
		cert, _, _, err = site.Certificate(site.Hosts...)
	}
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stdout, "%s %s %s%s from %s\n", time.Now().UTC().Format(time.RFC3339), r.Method, r.Host, r.URL.Path, r.RemoteAddr)
		site.Handler().ServeHTTP(w, r)
	})
	servers := []*http.Server{
		{Addr: *httpAddr, Handler: logged, ReadHeaderTimeout: 10 * time.Second},
		{Addr: *httpsAddr, Handler: logged, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}},
	}
	errc := make(chan error, 2)
	go func() { errc <- servers[0].ListenAndServe() }()
	go func() { errc <- servers[1].ListenAndServeTLS("", "") }()
	fmt.Printf("the stand-in internet answers for %s on %s (http) and %s (https)\n", strings.Join(site.Hosts, ", "), *httpAddr, *httpsAddr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	for _, s := range servers {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel()
			return err
		}
		cancel()
	}
	return nil
}
