package dataplane

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	envoylog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	file "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"

	"istio.io/istio/pilot/pkg/simulation"

	"github.com/egresslab/egresslab/harness/accesslog"
	"github.com/egresslab/egresslab/harness/backend"
)

// AccessLogLines are the lines the sidecar would write to its access logs (the matched
// chain's, in their formats: Istio's TEXT format on /dev/stdout by the mesh config) for
// the call it matched as r, as far as its config decides them: where the connection
// was going, the request's method, path and Host on an HTTP chain, the SNI where the
// listener runs a TLS inspector (InspectsTLS, the stand-in for Envoy's rule too), the
// route and the cluster. What only an exchange gives is "-" (accesslog.Entry.Simulated),
// and so is the app's own address and port. sim and local, where no proxy runs, say
// with them what a workload's sidecar logged (backend.SidecarLog).
func AccessLogLines(s *simulation.Simulation, c backend.Call, r simulation.Result, at time.Time) []string {
	conn := ConnectionFor(c)
	e := &accesslog.Entry{Start: at, Simulated: true, DownstreamLocal: net.JoinHostPort(conn.Address, strconv.Itoa(conn.Port))}
	if InspectsTLS(s, r.ListenerMatched, conn.Port) {
		e.SNI = conn.SNI
	}
	var logs []*envoylog.AccessLog
	if h := HTTPConnectionManager(s, r); h != nil {
		e.Req = &http.Request{Method: c.RequestMethod(), URL: &url.URL{Path: conn.Path}, Host: conn.Host,
			Proto: "HTTP/1.1", Header: http.Header{}}
		e.Route, e.Cluster = r.RouteMatched, r.ClusterMatched
		if ClusterNamed(s, r.ClusterMatched) == nil {
			// Envoy's router records the cluster once it has found it: "-" for NC (the
			// stand-in's respond says the same).
			e.Cluster = ""
		}
		logs = h.GetAccessLog()
	} else if t, _ := TCPProxy(s, r); t != nil {
		e.Cluster = t.GetCluster()
		logs = t.GetAccessLog()
	}
	var out []string
	for _, l := range logs {
		fal := &file.FileAccessLog{}
		if l.GetTypedConfig().UnmarshalTo(fal) == nil {
			out = append(out, e.Render(fal))
		}
	}
	return out
}

// AccessLogs are what the stand-in sidecars (sim's, local's) have written so far: each
// workload's calls' lines, with when each call was made. The zero value is empty and
// ready; safe for concurrent use.
type AccessLogs struct {
	mu    sync.Mutex
	calls map[backend.Workload][]loggedCall
}

type loggedCall struct {
	at    time.Time
	lines []string
}

// Add keeps the lines of a call w made at at.
func (l *AccessLogs) Add(w backend.Workload, at time.Time, lines []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls == nil {
		l.calls = map[backend.Workload][]loggedCall{}
	}
	l.calls[w] = append(l.calls[w], loggedCall{at: at, lines: lines})
}

// Since is w's log of the calls made at or after since, as one text.
func (l *AccessLogs) Since(w backend.Workload, since time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, c := range l.calls[w] {
		if !c.at.Before(since) {
			for _, line := range c.lines {
				b.WriteString(line)
			}
		}
	}
	return b.String()
}
