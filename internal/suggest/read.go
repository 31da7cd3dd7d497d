// Package suggest answers `egresslab suggest`: which ServiceEntries keep working, under
// REGISTRY_ONLY, every call the sidecars let out through PassthroughCluster under
// ALLOW_ANY? It reads the sidecars' access logs in Istio's default format (TEXT or
// JSON) line by line, keeping only a count per destination, never the lines; writes
// one ServiceEntry per host with the ports and protocols the calls used, validated
// with Istio's own validation (harness/manifest); lists what no entry can cover and
// why; and asks internal/check to replay each call under REGISTRY_ONLY with the
// entries applied before anything is written.
//
// A log says where a passed-through call went only as far as the listener that took
// it could read: the Host of an HTTP request where an HTTP listener read it
// (%REQ(:AUTHORITY)%), the SNI where a TLS inspector read the ClientHello
// (%REQUESTED_SERVER_NAME%; the catch-all listener virtualOutbound runs none), and
// otherwise only the address and port the app connected to (%DOWNSTREAM_LOCAL_ADDRESS%).
package suggest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/egresslab/egresslab/harness/accesslog"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Source is one access log: the name it is known by (a path, or "-" for standard
// input) and, when the user says so, the workload whose sidecar wrote it. Only a log
// with a workload tells which namespaces call a host (an entry's exportTo).
type Source struct {
	Name     string
	Workload *backend.Workload
	// Quiet: the log may hold no access-log line and be no mistake (a pod read from a
	// cluster that made no call yet); one given by name must hold some.
	Quiet bool
}

// caller is who made a call: the workload, when its log names one, else the log.
type caller struct {
	workload backend.Workload
	file     string
}

func (c caller) known() bool { return c.workload.Name != "" }

func (c caller) String() string {
	if c.known() {
		return c.workload.String()
	}
	return c.file
}

// MaxLineBytes bounds one line: Envoy writes a line per call, a few hundred bytes with
// long headers; a longer one is not an access log.
const MaxLineBytes = 1 << 20

// Problem is an input that cannot be read: the file, the line (0 for the file as a
// whole), what is wrong and how to fix it.
type Problem struct {
	File   string
	Line   int
	Reason string
	Fix    string

	kind string // lines with the same kind of problem are reported as one, at the first
}

func (p *Problem) Error() string {
	where := p.File
	if p.Line > 0 {
		where = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Fix == "" {
		return where + ": " + p.Reason
	}
	return where + ": " + p.Reason + "\n  fix: " + p.Fix
}

// Problems are every problem found in the logs; any one refuses the whole run.
type Problems []*Problem

func (ps Problems) Error() string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// problemsShown bounds the problems kept per file and reason: the first few say what is
// wrong; a count says how often.
const problemsShown = 5

// Counts are what the lines of the logs were.
type Counts struct {
	Lines       int // every line read, blank ones too
	Text, JSON  int // access-log lines, by format
	Passthrough int // calls out through PassthroughCluster (or AllowAnyDynamicDNSCluster)
	Registered  int // calls to an outbound|PORT|SUBSET|HOST cluster: already in the registry
	Blocked     int // BlackHoleCluster or block_all: refused already, under any mode
	Inbound     int // a sidecar's inbound listener: calls into the workload, not out
	Gateway     int // a gateway's lines: not a sidecar's outbound
	Other       int // no cluster (Envoy answered itself: NR, NC) or another of Envoy's own
	NotLog      int // lines that are not access-log lines (pilot-agent's own), skipped
}

// Skipped is a kind of line a log holds that was skipped, not refused: how many, and
// the first few, by line number.
type Skipped struct {
	File     string
	Reason   string
	Count    int
	Examples []Example
}

// Example is one line, by its number.
type Example struct {
	Line int
	Text string
}

// Observations are what the logs read so far say, per destination: bounded by the
// number of destinations and callers, whatever the number of lines.
type Observations struct {
	Counts  Counts
	Sources []Source
	Skipped []*Skipped

	dests  map[destKey]*dest
	fields []string // the fields of the TEXT line being read: one slice for every line
	// names are the hosts each address was seen to serve, by name (an HTTP request's
	// Host, a TLS SNI): what a call seen only by that address may have been.
	names map[netip.Addr]map[string]bool
}

// destKey is a destination: a host name and port, or an address and port when the
// log named none.
type destKey struct {
	host      string // lower case; an address's text when byAddress
	port      int
	byAddress bool
}

// dest is what the calls to one destination were.
type dest struct {
	host                  string // the key's, copied out of the line it was first read from
	http, http2, tls, tcp int    // calls by what the sidecar read of them
	callers               map[caller]int
	first                 position
	addr                  netip.Addr // the lowest address a call went to: the one a replay uses
}

// position is a line of a log; logs are ordered as they were read.
type position struct {
	file   string
	source int // the log's place among those read
	line   int
}

func (p position) before(q position) bool {
	return p.source < q.source || p.source == q.source && p.line < q.line
}

func (p position) String() string { return fmt.Sprintf("%s:%d", p.file, p.line) }

// NewObservations is an empty set of observations.
func NewObservations() *Observations {
	return &Observations{dests: map[destKey]*dest{}, names: map[netip.Addr]map[string]bool{}}
}

// Read reads one log, line by line, to its end. A line that is not an access-log line
// at all (pilot-agent's own, between Envoy's) is skipped and counted; a line of the
// format that cannot be read whole (cut short, or with fields the format does not
// have) is a Problem, since it may be a call no entry would then cover. The returned
// error is Problems for bad input; a read error or ctx's otherwise.
func (o *Observations) Read(ctx context.Context, src Source, r io.Reader) error {
	o.Sources = append(o.Sources, src)
	who := caller{file: src.Name}
	if src.Workload != nil {
		who = caller{workload: *src.Workload}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var (
		problems = map[string]*problemRun{}
		order    []string
		skipped  = map[string]*Skipped{}
		n, read  int // lines, and access-log lines, of this file
		first    string
	)
	note := func(p *Problem, line int) {
		kind := cmp.Or(p.kind, p.Reason)
		if problems[kind] == nil {
			p.File, p.Line = src.Name, line
			problems[kind] = &problemRun{first: p}
			order = append(order, kind)
		}
		problems[kind].add(line)
	}
	for sc.Scan() {
		n++
		o.Counts.Lines++
		if n%(1<<16) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if first == "" {
			first = line
		}
		rec, kind, why := o.parseLine(line)
		switch kind {
		case notLog:
			o.Counts.NotLog++
			skip(skipped, src.Name, "not an access-log line (pilot-agent's or Envoy's own message)", n, line)
			continue
		case unreadable:
			note(why, n)
			continue
		}
		read++
		if rec.json {
			o.Counts.JSON++
		} else {
			o.Counts.Text++
		}
		if other, p := o.add(rec, who, position{src.Name, len(o.Sources), n}); p != nil {
			note(p, n)
		} else if other != "" {
			skip(skipped, src.Name, other, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Problems{{File: src.Name, Line: n + 1, Reason: fmt.Sprintf("the line is longer than %d bytes: not a line Envoy's access log writes", MaxLineBytes),
				Fix: "give the sidecar's log as kubectl logs POD -c istio-proxy writes it"}}
		}
		return fmt.Errorf("read %s: %w", src.Name, err)
	}
	// In the order a reader of the log meets them.
	runs := slices.SortedFunc(maps.Values(skipped), func(a, b *Skipped) int { return a.Examples[0].Line - b.Examples[0].Line })
	o.Skipped = append(o.Skipped, runs...)
	switch {
	case src.Quiet && read == 0 && len(order) == 0:
		return nil
	case n == 0 || first == "":
		return Problems{{File: src.Name, Reason: "is empty: it holds no access-log lines",
			Fix: "capture the sidecar's log after it has made calls: kubectl logs POD -c istio-proxy > FILE (meshConfig.accessLogFile must be set, e.g. /dev/stdout)"}}
	case read == 0 && len(order) == 0:
		return Problems{{File: src.Name, Line: 1, Reason: fmt.Sprintf("no line is in Istio's default access-log format, TEXT or JSON; the first reads %q", clip(first)),
			Fix: "give istio-proxy's log with access logging on in the default format (meshConfig.accessLogFile: /dev/stdout, " +
				"accessLogEncoding TEXT or JSON, no accessLogFormat); a log of another proxy or format cannot be read"}}
	}
	var out Problems
	for _, kind := range order {
		out = append(out, problems[kind].problem())
	}
	if len(out) > 0 {
		return out
	}
	return nil
}

// problemRun is the lines of one file with the same kind of problem, and the first.
type problemRun struct {
	first *Problem
	lines []int
	count int
}

func (r *problemRun) add(line int) {
	r.count++
	if len(r.lines) < problemsShown {
		r.lines = append(r.lines, line)
	}
}

// problem is the run as one Problem: the first, naming the other lines.
func (r *problemRun) problem() *Problem {
	p := r.first
	if r.count > 1 {
		more := make([]string, 0, len(r.lines)-1)
		for _, l := range r.lines[1:] {
			more = append(more, fmt.Sprint(l))
		}
		p.Reason += fmt.Sprintf(" (%d lines like it: also line %s", r.count, strings.Join(more, ", "))
		if r.count > len(r.lines) {
			p.Reason += ", …"
		}
		p.Reason += ")"
	}
	return p
}

func skip(skipped map[string]*Skipped, file, reason string, line int, text string) {
	s := skipped[reason]
	if s == nil {
		s = &Skipped{File: file, Reason: reason}
		skipped[reason] = s
	}
	s.Count++
	if len(s.Examples) < 3 {
		s.Examples = append(s.Examples, Example{line, clip(text)})
	}
}

// clip shortens a line for a message.
func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

// lineKind is what a line is.
type lineKind int

const (
	accessLog  lineKind = iota
	notLog              // not an access-log line: skipped
	unreadable          // a line of the format that cannot be read whole: refused
)

// record is what this package reads of an access-log line, in either format; "-" and
// null are "".
type record struct {
	json bool

	method, protocol string // "" for a TCP connection
	authority        string
	cluster          string
	upstreamLocal    string
	downstreamLocal  string
	sni, route       string
}

// parseLine reads one line, in whichever of Istio's two default formats it is: TEXT
// starts with its start time in brackets, JSON is an object with its keys.
func (o *Observations) parseLine(line string) (record, lineKind, *Problem) {
	trimmed := strings.TrimSpace(line)
	switch {
	case len(trimmed) > 1 && trimmed[0] == '[' && trimmed[1] >= '0' && trimmed[1] <= '9':
		o.fields = accesslog.AppendFields(o.fields[:0], trimmed)
		return parseText(o.fields)
	case trimmed[0] == '{':
		return parseJSON(trimmed)
	}
	return record{}, notLog, nil
}

// parseText reads the fields of a line that starts as Istio's TEXT format does.
func parseText(f []string) (record, lineKind, *Problem) {
	var rec record
	switch {
	case !strings.HasSuffix(f[accesslog.StartTime], "]"):
		return rec, notLog, nil // "[1…" but no start time in brackets: another program's
	case len(f) < accesslog.NumFields:
		return rec, unreadable, &Problem{kind: "cut short",
			Reason: fmt.Sprintf("the line is cut short: it has %d of the %d fields of Istio's default TEXT format, the last in the place of %s",
				len(f), accesslog.NumFields, accesslog.Operators[len(f)-1]),
			Fix: "capture the log again with whole lines (kubectl logs POD -c istio-proxy > FILE); " +
				"or delete the line, if you know which call it was and that it needs no entry"}
	case len(f) > accesslog.NumFields:
		return rec, unreadable, &Problem{kind: "too many fields",
			Reason: fmt.Sprintf("the line has %d fields, where Istio's default TEXT format has %d: a custom meshConfig.accessLogFormat, "+
				"or a quote inside a quoted field", len(f), accesslog.NumFields),
			Fix: "use Istio's default format (no meshConfig.accessLogFormat), or its JSON encoding (meshConfig.accessLogEncoding: JSON), " +
				"which quotes each value; or delete the line, if you know which call it was"}
	}
	rec.method, rec.protocol = splitRequest(f[accesslog.Request])
	rec.authority = dash(f[accesslog.Authority])
	rec.cluster = dash(f[accesslog.Cluster])
	rec.upstreamLocal = dash(f[accesslog.UpstreamLocal])
	rec.downstreamLocal = dash(f[accesslog.DownstreamLocal])
	rec.sni = dash(f[accesslog.SNI])
	rec.route = dash(f[accesslog.Route])
	return rec, accessLog, nil
}

// splitRequest is the method and protocol of "METHOD PATH PROTOCOL"; "" and "" for a
// TCP connection's "- - -".
func splitRequest(req string) (method, protocol string) {
	method, _, _ = strings.Cut(req, " ")
	if i := strings.LastIndexByte(req, ' '); i >= 0 {
		protocol = req[i+1:]
	}
	return dash(method), dash(protocol)
}

func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// jsonLine is the keys of Istio's default JSON format (model.EnvoyJSONLogFormatIstio)
// this package reads. Envoy writes a value it does not have as null, a number as a
// number; the stand-in for Envoy writes "-" and strings.
type jsonLine struct {
	StartTime        jsonValue `json:"start_time"`
	Method           jsonValue `json:"method"`
	Protocol         jsonValue `json:"protocol"`
	Authority        jsonValue `json:"authority"`
	UpstreamCluster  jsonValue `json:"upstream_cluster"`
	UpstreamLocal    jsonValue `json:"upstream_local_address"`
	DownstreamLocal  jsonValue `json:"downstream_local_address"`
	DownstreamRemote jsonValue `json:"downstream_remote_address"`
	SNI              jsonValue `json:"requested_server_name"`
	Route            jsonValue `json:"route_name"`
}

// jsonValue is one value, whatever its JSON type, and whether the key was there.
type jsonValue struct {
	s       string
	present bool
}

func (v *jsonValue) UnmarshalJSON(b []byte) error {
	v.present = true
	switch {
	case string(b) == "null":
		v.s = ""
	case len(b) > 1 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0:
		v.s = dash(string(b[1 : len(b)-1])) // no escapes: the bytes between the quotes
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v.s = dash(s)
	default:
		v.s = string(b) // a number or a boolean
	}
	return nil
}

func parseJSON(line string) (record, lineKind, *Problem) {
	var j jsonLine
	if err := json.Unmarshal([]byte(line), &j); err != nil {
		var probe any
		if derr := json.NewDecoder(strings.NewReader(line)).Decode(&probe); errors.Is(derr, io.ErrUnexpectedEOF) {
			return record{}, unreadable, &Problem{
				Reason: "the JSON line is cut short (it ends inside its object)",
				Fix: "capture the log again with whole lines (kubectl logs POD -c istio-proxy > FILE); " +
					"or delete the line, if you know which call it was and that it needs no entry"}
		}
		return record{}, notLog, nil
	}
	// Every line of Istio's default JSON format has these keys, even with
	// omit_empty_values: Envoy always knows when, and between which addresses, a
	// connection was. A JSON object without them is another program's message.
	if !j.StartTime.present || !j.DownstreamLocal.present || !j.DownstreamRemote.present {
		return record{}, notLog, nil
	}
	return record{json: true, method: j.Method.s, protocol: j.Protocol.s, authority: j.Authority.s,
		cluster: j.UpstreamCluster.s, upstreamLocal: j.UpstreamLocal.s, downstreamLocal: j.DownstreamLocal.s,
		sni: j.SNI.s, route: j.Route.s}, accessLog, nil
}

// add counts one access-log line; a passed-through call is added to its destination.
// It says why a line of another listener or proxy is skipped, and returns a Problem for
// a passed-through call it cannot place.
func (o *Observations) add(rec record, who caller, at position) (skipped string, _ *Problem) {
	if reason, gateway := notSidecarOutbound(rec); reason != "" {
		if gateway {
			o.Counts.Gateway++
		} else {
			o.Counts.Inbound++
		}
		return reason, nil
	}
	switch {
	case rec.cluster == outcome.PassthroughCluster || rec.cluster == outcome.AllowAnyDynamicDNSCluster:
	case rec.cluster == outcome.BlackHoleCluster || rec.route == outcome.BlockAllHost:
		o.Counts.Blocked++
		return "", nil
	default:
		if _, _, ok := dataplane.OutboundService(rec.cluster); ok {
			o.Counts.Registered++
		} else {
			o.Counts.Other++
		}
		return "", nil
	}
	dst, err := netip.ParseAddrPort(rec.downstreamLocal)
	if err != nil {
		return "", &Problem{kind: "no destination", Reason: fmt.Sprintf("a call through %s whose %s, where it was going, is %q, not an address and port",
			rec.cluster, accesslog.Operators[accesslog.DownstreamLocal], orDash(rec.downstreamLocal)),
			Fix: "give the sidecar's log as Envoy wrote it"}
	}
	o.Counts.Passthrough++
	addr := dst.Addr().Unmap()
	key := destKey{port: int(dst.Port())}
	switch host := hostOf(rec.authority); {
	case rec.method != "" && host != "" && !isAddress(host):
		key.host = host
	case rec.method == "" && rec.sni != "":
		key.host = strings.TrimSuffix(strings.ToLower(rec.sni), ".")
	default: // a TCP connection without SNI, or HTTP to an address
		key.host, key.byAddress = addr.String(), true
	}
	d := o.dests[key]
	if d == nil {
		key.host = strings.Clone(key.host)
		d = &dest{host: key.host, callers: map[caller]int{}, first: at, addr: addr}
		o.dests[key] = d
	}
	d.callers[who]++
	if addr.Less(d.addr) {
		d.addr = addr
	}
	switch {
	case key.byAddress:
		d.tcp++
	case rec.method == "":
		d.tls++
	case rec.protocol == "HTTP/2":
		d.http2++
	default:
		d.http++
	}
	if !key.byAddress {
		names := o.names[addr]
		if names == nil {
			names = map[string]bool{}
			o.names[addr] = names
		}
		names[d.host] = true
	}
	return "", nil
}

// notSidecarOutbound says why a line is not a sidecar's outbound call, "" when it may be
// one. Istio's cluster names tell an inbound listener's (inbound|PORT||,
// InboundPassthroughCluster, a waypoint's inbound-vip|) and a gateway's SNI-DNAT
// cluster (outbound_.PORT_._.HOST). A gateway's other lines look like a sidecar's
// outbound, but a gateway is called at its own address: the address the call came to
// (%DOWNSTREAM_LOCAL_ADDRESS%) is the proxy's own, the one it connects out from
// (%UPSTREAM_LOCAL_ADDRESS%). A sidecar's outbound call came to somewhere else, the
// original destination iptables redirected from. Gateways have no PassthroughCluster
// at all (BuildClusters in pilot/pkg/networking/core/cluster.go: "Gateways do not
// require the default passthrough cluster").
func notSidecarOutbound(rec record) (reason string, gateway bool) {
	switch c := rec.cluster; {
	case strings.HasPrefix(c, "inbound|"), strings.HasPrefix(c, "inbound-vip|"), strings.HasPrefix(c, "InboundPassthroughCluster"):
		return "an inbound listener's line (cluster inbound…): a call into the workload, not out of it", false
	case strings.HasPrefix(c, "outbound_."):
		return "a gateway's line (an SNI-DNAT cluster, outbound_.PORT_._.HOST): not a sidecar's outbound call", true
	}
	if rec.upstreamLocal != "" && rec.downstreamLocal != "" && ipOf(rec.upstreamLocal) == ipOf(rec.downstreamLocal) {
		return "a gateway's line: the call came to the proxy's own address (%DOWNSTREAM_LOCAL_ADDRESS% and " +
			"%UPSTREAM_LOCAL_ADDRESS% share it), where a sidecar's outbound call goes to its original destination", true
	}
	return "", false
}

// ipOf is the address part of "ADDRESS:PORT".
func ipOf(hostPort string) string {
	if i := strings.LastIndexByte(hostPort, ':'); i >= 0 {
		return hostPort[:i]
	}
	return hostPort
}

// hostOf is the host of an HTTP authority (a Host header): without its port, in lower
// case, without a final dot.
func hostOf(authority string) string {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func isAddress(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
