// Package proxy stands in for the Envoy process in a pod's istio-proxy container, where
// no Envoy can be had (the offline kind cluster). pilot-agent starts it as it would
// start Envoy, with the bootstrap it wrote; the stand-in then:
//
//   - connects to istiod over ADS through the agent's XDS socket, with the node the
//     bootstrap names, and keeps the listeners, clusters and routes pushed
//     (dataplane.Sidecar, the same code the local backend uses);
//   - serves what the agent and the kubelet read from Envoy: the admin stats the
//     readiness probe checks, /server_info, /config_dump, /quitquitquit, and the
//     bootstrap's static listeners (15021 health, 15090 Prometheus);
//   - takes the connections istio-init's iptables rules redirect, reads each one's
//     original destination, TLS SNI or HTTP Host, and decides what happens with
//     Istio's own simulator (pilot/pkg/simulation) on the config it holds; then does
//     what Envoy does with that match: a direct response (block_all's 502), a reset
//     (BlackHoleCluster), a relay to the original destination (PassthroughCluster) or
//     to the cluster's endpoint (its own, or from EDS), TLS where the cluster
//     originates it, and an access-log line where the config asks for one;
//   - in a gateway's pod (node type router), serves the Gateway's listeners as they
//     come, matching each connection as a gateway does (no capture).
//
// It is not Envoy and says so wherever it identifies itself. Where the config asks for
// something it does not do (filters, retries, Istio mutual TLS), it does less than
// Envoy, never more, and its log says which (docs/standin-fidelity.md).
package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/dataplane"
)

// Version is what the stand-in reports as its version: never an Envoy version.
const Version = "egresslab-envoy-standin/" + dataplane.IstioProxyVersion + " (a stand-in for Envoy, not Envoy)"

// Process is one running stand-in.
type Process struct {
	boot    *Bootstrap
	stdout  io.Writer // where /dev/stdout access logs go
	logw    io.Writer // Envoy's own log (stderr)
	started time.Time

	// OriginalDst reads where a redirected connection was going (SO_ORIGINAL_DST).
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// Dial connects to upstreams; Resolve looks up a DNS cluster's hostname.
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Resolve func(ctx context.Context, host string) ([]string, error)
	// Roots are the proxy's trusted roots for the TLS it originates; nil is the
	// system's (the image's CA bundle, which pilot-agent serves as "file-root:system").
	Roots *x509.CertPool
	// Secret fetches an SDS secret by name ("default", "ROOTCA") from pilot-agent.
	Secret func(ctx context.Context, name string) (*tlsv3.Secret, error)

	// held, when set, replaces the config from istiod (tests); decided, when set, is told
	// every decision (tests).
	held          func() (*simulation.Simulation, error)
	heldEndpoints func(*cluster.Cluster) *endpoint.ClusterLoadAssignment
	decided       func(Decision)

	mu        sync.Mutex
	sidecar   *dataplane.Sidecar
	live      bool // capture listeners are bound: Envoy's server.state LIVE
	listeners []net.Listener
	quit      chan struct{}
	quitOnce  sync.Once
	logMu     sync.Mutex
}

// New prepares a stand-in for the bootstrap.
func New(boot *Bootstrap, stdout, stderr io.Writer) *Process {
	d := &net.Dialer{}
	p := &Process{
		boot: boot, stdout: stdout, logw: stderr, started: time.Now(), quit: make(chan struct{}),
		OriginalDst: originalDst,
		Dial:        d.DialContext,
		Resolve:     net.DefaultResolver.LookupHost,
	}
	p.Secret = p.sdsSecret
	return p
}

// logf writes one line of the stand-in's own log, in Envoy's layout.
func (p *Process) logf(level, format string, args ...any) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	fmt.Fprintf(p.logw, "[%s][standin][%s] %s\n", time.Now().UTC().Format("2006-01-02 15:04:05.000"), level, fmt.Sprintf(format, args...))
}

// Main runs the stand-in with Envoy's command line, as pilot-agent starts it, until
// ctx ends or /quitquitquit is called. It returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	path := ""
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-c", "--config-path":
			if i+1 < len(args) {
				path = args[i+1]
				i++
			}
		case "--version":
			fmt.Fprintln(stdout, Version)
			return 0
		}
	}
	if path == "" {
		fmt.Fprintln(stderr, "envoy stand-in: no bootstrap: start it as pilot-agent starts Envoy, with -c etc/istio/proxy/envoy-rev.json")
		return 1
	}
	boot, err := LoadBootstrap(path)
	if err != nil {
		fmt.Fprintf(stderr, "envoy stand-in: %v\n", err)
		return 1
	}
	p := New(boot, stdout, stderr)
	p.logf("info", "%s starting, node %s; the rest of Envoy's command line is ignored: %q", Version, boot.Node.GetId(), args)
	if err := p.Run(ctx); err != nil {
		p.logf("critical", "%v", err)
		return 1
	}
	return 0
}

// Run serves the admin and static listeners, follows istiod over ADS and binds the
// capture listeners once the config has arrived, until ctx ends or /quitquitquit.
func (p *Process) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	admin, err := net.Listen("tcp", p.boot.Admin)
	if err != nil {
		return fmt.Errorf("listen on the admin address %s: %w", p.boot.Admin, err)
	}
	p.track(admin)
	go p.serveAdmin(admin)
	for _, sl := range p.boot.Static {
		l, err := net.Listen("tcp", sl.Address)
		if err != nil {
			p.closeAll()
			return fmt.Errorf("listen on the bootstrap's listener %s (%s): %w", sl.Name, sl.Address, err)
		}
		p.track(l)
		go p.serveStatic(l, sl)
	}
	defer p.closeAll()
	p.followIstiod(ctx)
	p.logf("info", "shutting down")
	return nil
}

func (p *Process) track(l net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listeners = append(p.listeners, l)
}

func (p *Process) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		_ = l.Close()
	}
	p.listeners = nil
	if p.sidecar != nil {
		p.sidecar.Close()
	}
}

// Quit stops the process, as /quitquitquit does.
func (p *Process) Quit() { p.quitOnce.Do(func() { close(p.quit) }) }

// followIstiod keeps an ADS stream open through the agent, reconnecting as Envoy does
// when it ends, and binds the capture listeners once a full config has arrived.
func (p *Process) followIstiod(ctx context.Context) {
	for ctx.Err() == nil {
		s, err := dataplane.Connect(p.boot.XDS, p.boot.Node)
		if err != nil {
			p.logf("warning", "%v; retrying", err)
			sleep(ctx, time.Second)
			continue
		}
		p.mu.Lock()
		p.sidecar = s
		p.mu.Unlock()
		if err := s.WaitConfig(ctx); err == nil {
			p.logf("info", "config from istiod: %s", s.Summary())
			if err := p.bindCapture(s); err != nil {
				p.logf("critical", "%v", err)
			}
		} else if ctx.Err() == nil {
			p.logf("warning", "%v; reconnecting", err)
		}
		select {
		case <-ctx.Done():
		case <-s.Done():
		}
		if ctx.Err() == nil {
			_, _, err := s.Simulation()
			p.logf("warning", "ADS stream ended (%v); reconnecting", err)
			s.Close()
			sleep(ctx, time.Second)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// bindCapture listens where istiod's virtualOutbound and virtualInbound listeners say
// (the ports istio-init redirects to), once.
func (p *Process) bindCapture(s *dataplane.Sidecar) error {
	p.mu.Lock()
	live := p.live
	p.mu.Unlock()
	if live {
		return nil
	}
	if strings.HasPrefix(p.boot.Node.GetId(), string(model.Router)+"~") {
		// A gateway's proxy captures nothing: it serves the listeners of the Gateways
		// selecting it, which come and go with them.
		p.mu.Lock()
		p.live = true
		p.mu.Unlock()
		if s != nil { // nil: a config held by a test, which serves a gateway's connections itself
			go p.followGatewayListeners(s)
		}
		return nil
	}
	sim, _, err := s.Simulation()
	if err != nil {
		return err
	}
	bound := 0
	for _, want := range []struct {
		name  string
		serve func(net.Conn)
	}{
		{model.VirtualOutboundListenerName, p.outbound},
		{model.VirtualInboundListenerName, p.inbound},
	} {
		addr := listenerAddress(sim.Listeners, want.name)
		if addr == "" {
			p.logf("warning", "istiod sent no %s listener: its connections are not taken", want.name)
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for %s on %s: %w", want.name, addr, err)
		}
		p.track(l)
		go acceptLoop(l, want.serve)
		p.logf("info", "listener %s on %s", want.name, addr)
		bound++
	}
	if bound == 0 {
		return errors.New("no capture listener in istiod's config")
	}
	p.mu.Lock()
	p.live = true
	p.mu.Unlock()
	return nil
}

// followGatewayListeners binds every listener istiod sends a gateway's proxy (one per
// Gateway server port: 0.0.0.0_80) as it arrives, and closes those that go, as Envoy's
// listener manager adds and drains them, until the ADS stream ends.
func (p *Process) followGatewayListeners(s *dataplane.Sidecar) {
	bound := map[string]net.Listener{} // by listener name
	defer func() {
		for _, l := range bound {
			_ = l.Close()
		}
	}()
	for {
		changed := s.Changed()
		if sim, _, err := s.Simulation(); err == nil {
			want := map[string]string{}
			for _, l := range sim.Listeners {
				if addr := socketAddress(l); addr != "" {
					want[l.GetName()] = addr
				}
			}
			for name, l := range bound {
				if _, ok := want[name]; !ok {
					_ = l.Close()
					delete(bound, name)
					p.logf("info", "gateway listener %s removed", name)
				}
			}
			for name, addr := range want {
				if bound[name] != nil {
					continue
				}
				l, err := net.Listen("tcp", addr)
				if err != nil {
					p.logf("error", "gateway listener %s on %s: %v", name, addr, err)
					continue
				}
				bound[name] = l
				go acceptLoop(l, p.atGateway)
				p.logf("info", "gateway listener %s on %s", name, addr)
			}
		}
		select {
		case <-changed:
		case <-s.Done():
			return
		}
	}
}

// listenerAddress is the socket address of the listener named, "" for none.
func listenerAddress(ls []*listener.Listener, name string) string {
	for _, l := range ls {
		if l.GetName() == name {
			return socketAddress(l)
		}
	}
	return ""
}

// socketAddress is where a listener binds, "" when it binds no socket address.
func socketAddress(l *listener.Listener) string {
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
}

func acceptLoop(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

// config is the sidecar's config now, for one decision.
func (p *Process) config() (*simulation.Simulation, error) {
	if p.held != nil {
		return p.held()
	}
	p.mu.Lock()
	s := p.sidecar
	p.mu.Unlock()
	if s == nil {
		return nil, errors.New("no config from istiod yet")
	}
	sim, _, err := s.Simulation()
	return sim, err
}

// state is Envoy's server.state (0 LIVE, 2 PRE_INITIALIZING) and the update counters.
func (p *Process) state() (live bool, cds, lds int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.sidecar != nil:
		cds, lds = p.sidecar.Updates()
	case p.held != nil:
		cds, lds = 1, 1 // a held config stands for one push of each
	}
	return p.live, cds, lds
}

// accessLogWriter opens an access log's path: /dev/stdout and /dev/stderr are the
// process's own, as they are Envoy's.
func (p *Process) accessLogWriter(path string) (io.Writer, func(), error) {
	if path == "/dev/stdout" {
		return p.stdout, func() {}, nil
	}
	if path == "/dev/stderr" {
		return p.logw, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}
