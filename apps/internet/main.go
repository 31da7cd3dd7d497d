// Command internet is the stand-in internet: it serves the site package
// (jsonplaceholder's answers) over HTTP and HTTPS, a database's port over plain TCP for
// the labs' own database hosts, and a company's HTTPS proxy. It runs outside the mesh,
// in its own namespace; the cluster's DNS names it as the labs' own hosts on every run,
// and offline as jsonplaceholder.typicode.com too.
//
//	internet [--http=:80] [--https=:443] [--tcp=5432[,PORT...]] [--proxy=:3128] [--cert=FILE --key=FILE]
//
// Without --cert it makes its own certificate, which no client trusts. Each --tcp port
// answers one line with one line (site.ServeTCP); --tcp= answers none. --proxy is where
// the http-proxy lab's company proxy tunnels HTTPS with CONNECT (site.ServeProxy); it
// dials the targets with the pod's own resolver, so the cluster's DNS names them and a
// tunnel to jsonplaceholder.typicode.com ends here too; --proxy= runs none.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
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
	tcpPorts := fs.String("tcp", strconv.Itoa(site.DatabasePort), "the ports, comma-separated, where to answer plain TCP as a database would (none if empty)")
	proxyAddr := fs.String("proxy", ":"+strconv.Itoa(site.ProxyPort), "where to serve as a company's HTTPS proxy, CONNECT only (none if empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports, err := parsePorts(*tcpPorts)
	if err != nil {
		return err
	}
	var cert tls.Certificate
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
	// The TCP servers and the proxy stop with ctx, and with run whatever ends it; run
	// waits for them (deferred before cancel, so it runs after), so that nothing answers
	// after it returned.
	var tcp sync.WaitGroup
	defer tcp.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3+len(ports))
	for _, port := range ports {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("listen for TCP on port %d: %w", port, err)
		}
		tcp.Go(func() {
			if err := site.ServeTCP(ctx, l, os.Stdout); err != nil {
				errc <- err
			}
		})
	}
	proxying := "no proxy"
	if *proxyAddr != "" {
		l, err := net.Listen("tcp", *proxyAddr)
		if err != nil {
			return fmt.Errorf("listen for the proxy on %s: %w", *proxyAddr, err)
		}
		tcp.Go(func() {
			if err := site.ServeProxy(ctx, l, (&net.Dialer{}).DialContext, os.Stdout); err != nil {
				errc <- err
			}
		})
		proxying = "a proxy (CONNECT) on " + *proxyAddr
	}
	go func() { errc <- servers[0].ListenAndServe() }()
	go func() { errc <- servers[1].ListenAndServeTLS("", "") }()
	fmt.Printf("the stand-in internet answers for %s on %s (http) and %s (https), plain TCP on %s, and %s\n",
		strings.Join(site.Hosts, ", "), *httpAddr, *httpsAddr, portList(ports), proxying)
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

// parsePorts reads --tcp: ports separated by commas, none if empty.
func parsePorts(list string) ([]int, error) {
	var ports []int
	for _, field := range strings.Split(list, ",") {
		if field = strings.TrimSpace(field); field == "" {
			continue
		}
		port, err := strconv.Atoi(field)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("--tcp=%s: %q is not a port (1 to 65535), e.g. --tcp=5432,9092", list, field)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

func portList(ports []int) string {
	if len(ports) == 0 {
		return "no port"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}
