package handout

import (
	"fmt"
	"math"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Diagram is a Mermaid flowchart of the call's path: the app container, then each proxy
// on the way as a box of its own (the client's sidecar, and the egress gateway's pod when
// the call goes through one) with the hops it matches, top to bottom (listener → route
// config → virtual host → cluster for a call the proxy routes by HTTP; listener → cluster
// for one it only reads the port or SNI of), then where the call ends. Every call of a
// kind shows the same hops, named as far as the expectation names them; the hops stop at
// the one that decided. Styles (docs/handouts.md): the hop that stopped the call and its
// ending are "stop", one that let it out "out", one that let it out by a mistake (a
// cluster of another host, or of a wildcard) "mistake", a cluster the proxy lacks
// "missing" (dashed), a hand-off to another workload of the mesh "next".
//
// The chart runs left to right (app | sidecar | ending) when that fits a forge's text
// column (maxWidth) with its text at minTextPx or more, and top to bottom otherwise:
// always for a call through a gateway.
func Diagram(e outcome.Expect, c backend.Call) string {
	return draw(e, c).mermaid()
}

// The classes a node can have, each with explicit fill, stroke and text colours: light
// fills with dark text, legible on a forge's light and dark themes alike.
const (
	classOut     = "out"
	classStop    = "stop"
	classMistake = "mistake"
	classMissing = "missing"
	classNext    = "next"
)

var classDefs = map[string]string{
	classOut:     "fill:#dcfce7,stroke:#15803d,stroke-width:2px,color:#14532d",
	classStop:    "fill:#fee2e2,stroke:#b91c1c,stroke-width:2px,color:#7f1d1d",
	classMistake: "fill:#fef3c7,stroke:#b45309,stroke-width:3px,color:#713f12",
	classMissing: "fill:#f9fafb,stroke:#b91c1c,stroke-width:2px,stroke-dasharray:6 4,color:#7f1d1d",
	classNext:    "fill:#dbeafe,stroke:#1d4ed8,stroke-width:2px,color:#1e3a8a",
}

// classOrder is the order the classes are declared and used in, for a stable text.
var classOrder = []string{classOut, classStop, classMistake, classMissing, classNext}

const (
	sidecarTitle = "the client's sidecar (istio-proxy)"
	gatewayTitle = "the egress gateway's pod"
	// virtualOutbound is the sidecar's catch-all listener, which only reads the port.
	virtualOutbound = "virtualOutbound"
)

type node struct {
	id    string
	lines []string // already escaped; the first says what the hop is
	class string
}

func (n node) String() string {
	return fmt.Sprintf(`%s["%s"]`, n.id, strings.Join(n.lines, "<br/>"))
}

// proxy is one proxy on the call's way, with the hops it matched in order. When
// missing is set, the last hop is what the proxy was told to use and lacks.
type proxy struct {
	id, title string
	hops      []node
	missing   bool
}

type chart struct {
	direction string // "LR" or "TB"
	app       node
	proxies   []proxy
	fate      node
}

// hop is one hop of a proxy's path: what it is and its name, "" when the expectation
// does not name it.
func hop(id, what, name string) node {
	n := node{id: id, lines: []string{escape(what)}}
	if name != "" {
		n.lines = append(n.lines, escape(name))
	}
	return n
}

// route is the hops a proxy matches, named as far as h names them: the listener, then
// for a call it routes by HTTP the route config and the virtual host, then the cluster
// (with the TLS it originates, if any).
func route(prefix string, h outcome.Hop, sni string, http bool) []node {
	hops := []node{hop(prefix+"l", "listener", h.Listener)}
	if http {
		hops = append(hops, hop(prefix+"r", "route config", h.RouteConfig), hop(prefix+"v", "virtual host", h.VirtualHost))
	}
	c := hop(prefix+"c", "cluster", h.Cluster)
	if sni != "" {
		c.lines = append(c.lines, escape("originates TLS, SNI "+sni))
	}
	return append(hops, c)
}

// decide marks the hop of p, the proxy that decided the call, that decided it: the
// virtual host that answered itself (block_all, no route) or after which the RBAC
// filter denied the request, with nothing after it; the
// cluster that let the call out, by a mistake or not, or reset it; the cluster the
// proxy lacks (dashed), after the virtual host whose route names it. A hop the
// decision names by definition (block_all, BlackHoleCluster...) gets that name when the
// expectation leaves it out.
func decide(p *proxy, who string, e outcome.Expect, c backend.Call) {
	find := func(suffix string) int {
		for i, h := range p.hops {
			if strings.HasSuffix(h.id, suffix) {
				return i
			}
		}
		return -1
	}
	name := func(i int, n string) {
		if len(p.hops[i].lines) == 1 && n != "" {
			p.hops[i].lines = append(p.hops[i].lines, escape(n))
		}
	}
	if v := find("v"); v >= 0 && e.Kind == outcome.Denied {
		// The RBAC filter runs once the route is found and before the router would
		// connect: the route's cluster is never reached.
		p.hops = p.hops[:v+1]
		p.hops[v].class = classStop
		p.hops[v].lines = append(p.hops[v].lines, escape("then the RBAC filter: 403, the route's cluster never reached"))
		return
	}
	if v := find("v"); v >= 0 && (e.Reason == outcome.ReasonBlockAll || e.Reason == outcome.ReasonNoRoute) {
		if e.Reason == outcome.ReasonBlockAll {
			name(v, outcome.BlockAllHost)
		}
		p.hops = p.hops[:v+1]
		p.hops[v].class = classStop
		return
	}
	last := len(p.hops) - 1
	name(last, map[string]string{
		outcome.ReasonBlackHole:   outcome.BlackHoleCluster,
		outcome.ReasonPassthrough: outcome.PassthroughCluster,
		outcome.ReasonDynamicDNS:  outcome.AllowAnyDynamicDNSCluster,
	}[e.Reason])
	switch {
	case e.Reason == outcome.ReasonNoCluster:
		p.missing = true
		p.hops[last].class = classMissing
		p.hops[last].lines = append(p.hops[last].lines, escape("missing: "+who+" has no such cluster"))
		if last > 0 {
			p.hops[last-1].class = classStop
		}
	case leakedThrough(e, c) != "":
		p.hops[last].class = classMistake
	default:
		p.hops[last].class = fateClass(e)
	}
}

// draw lays the call's path out.
func draw(e outcome.Expect, c backend.Call) chart {
	ch := chart{app: node{id: "app", lines: []string{"app container", escape(c.URL.Scheme + " call to " + c.HostPort())}}}
	if c.Proxy != nil {
		ch.app.lines = append(ch.app.lines, escape("through the proxy "+c.Proxy.Host))
	}
	// A call the sidecar reads as HTTP (route config, virtual host): plain HTTP, on a
	// listener of its port; not TLS, a TCP connection, or a proxy's tunnel.
	readsHTTP := !c.HTTPS() && !c.TCP()
	// A proxy reads the Host header on an HTTP listener; it matches an HTTPS call (TLS
	// from the app), a port no listener knows (virtualOutbound) or a connection it resets
	// (BlackHoleCluster) by port and SNI alone.
	gateway := e.Gateway != nil
	reset := e.Reason == outcome.ReasonBlackHole
	own := outcome.Hop{Listener: e.Listener, RouteConfig: e.RouteConfig, VirtualHost: e.VirtualHost, Cluster: e.Cluster}
	sidecar := proxy{id: "sidecar", title: sidecarTitle,
		hops: route("", own, e.UpstreamSNI, readsHTTP && e.Listener != virtualOutbound && !(reset && !gateway))}
	if !gateway {
		decide(&sidecar, "the sidecar", e, c)
	}
	ch.proxies = append(ch.proxies, sidecar)
	if gateway {
		gw := proxy{id: "gateway", title: gatewayTitle, hops: route("g", *e.Gateway, "", readsHTTP && !reset)}
		decide(&gw, "the gateway", e, c)
		ch.proxies = append(ch.proxies, gw)
	}
	label, class := ending(e, c)
	ch.fate = node{id: "fate", lines: []string{escape(label)}, class: class} // not "end": a Mermaid keyword
	ch.direction = direction(gateway, ch.widthLR())
	return ch
}

// direction is the chart's: left to right when a call through one proxy fits the
// column that way (widthLR, estimated) with its text at minTextPx or more, top to bottom
// otherwise, and always through a gateway.
func direction(gateway bool, widthLR float64) string {
	if !gateway && widthLR <= maxWidth*defaultTextPx/minTextPx {
		return "LR"
	}
	return "TB"
}

// The rule for the direction: a forge shows a diagram in a text column about maxWidth
// px wide and scales a wider one down to fit, text and all; Mermaid's text is
// defaultTextPx. A chart runs left to right only when its estimated width keeps its text
// at minTextPx or more (hack/diagrams-check.sh measures the real thing, and fails under
// 11 px).
const (
	maxWidth      = 890.0
	defaultTextPx = 16.0
	minTextPx     = 12.0
	// Mermaid 11's layout, measured in Chromium with a wide sans-serif (DejaVu Sans,
	// wider than most) and rounded up: a character's width, the width past which a
	// label wraps at spaces, a node's padding, a box's padding around its widest hop and
	// around its title, the gap between ranks, and the diagram's margins.
	charPx     = 8.8
	wrapPx     = 200.0
	nodePadPx  = 60.0
	boxPadPx   = 70.0
	titlePadPx = 10.0
	rankGapPx  = 50.0
	marginPx   = 16.0
)

// widthLR estimates the chart's width laid out left to right: the app, each proxy's
// box around its widest hop, the ending, and the gaps between them.
func (ch chart) widthLR() float64 {
	w := nodeWidth(ch.app) + nodeWidth(ch.fate)
	for _, p := range ch.proxies {
		box := textWidth(p.title) + titlePadPx
		for _, h := range p.hops {
			box = math.Max(box, nodeWidth(h)+boxPadPx)
		}
		w += box
	}
	return w + rankGapPx*float64(len(ch.proxies)+1) + marginPx
}

func nodeWidth(n node) float64 {
	w := 0.0
	for _, l := range n.lines {
		w = math.Max(w, textWidth(l))
	}
	return w + nodePadPx
}

// textWidth is a line's width once Mermaid wraps it at spaces past wrapPx: a word
// longer than that keeps its width.
func textWidth(s string) float64 {
	s = strings.NewReplacer("#quot;", `"`, "#124;", "|").Replace(s)
	w := charPx * float64(len([]rune(s)))
	if w <= wrapPx {
		return w
	}
	w = wrapPx
	for _, word := range strings.Fields(s) {
		w = math.Max(w, charPx*float64(len([]rune(word))))
	}
	return w
}

// mermaid is the chart as Mermaid's flowchart text: the app, each proxy's box (a
// subgraph) with its hops and the arrows between them, the ending, the arrows from box to
// box, then each class used with the nodes that have it.
func (ch chart) mermaid() string {
	lines := []string{"flowchart " + ch.direction, "  " + ch.app.String()}
	var edges []string
	classes := map[string][]string{}
	mark := func(n node) {
		if n.class != "" {
			classes[n.class] = append(classes[n.class], n.id)
		}
	}
	mark(ch.app)
	for _, p := range ch.proxies {
		lines = append(lines, fmt.Sprintf(`  subgraph %s["%s"]`, p.id, escape(p.title)), "    direction TB")
		chain := ""
		for i, h := range p.hops {
			lines = append(lines, "    "+h.String())
			mark(h)
			switch {
			case i == 0:
				chain = h.id
			case p.missing && i == len(p.hops)-1:
				chain += " -.-> " + h.id
			default:
				chain += " --> " + h.id
			}
		}
		lines = append(lines, "    "+chain)
		lines = append(lines, "  end")
		edges = append(edges, p.id)
	}
	lines = append(lines, "  "+ch.fate.String())
	mark(ch.fate)
	lines = append(lines, "  app --> "+strings.Join(edges, " --> ")+" --> fate")
	for _, c := range classOrder {
		if ids := classes[c]; len(ids) > 0 {
			lines = append(lines, fmt.Sprintf("  classDef %s %s", c, classDefs[c]), fmt.Sprintf("  class %s %s", strings.Join(ids, ","), c))
		}
	}
	return strings.Join(lines, "\n")
}

// leakedThrough is the host of the cluster an allowed call left the mesh through (the
// gateway's, when it goes through one) when that is a mistake: another host's cluster,
// or a wildcard's, so that the entry behind it lets more than this host out; "" when
// the call did not get out that way.
func leakedThrough(e outcome.Expect, c backend.Call) string {
	cluster := e.Cluster
	if e.Gateway != nil {
		cluster = e.Gateway.Cluster
	}
	svc, _, ok := dataplane.OutboundService(cluster)
	dialed, _ := c.Dialed() // through a proxy, the proxy's cluster is the intended one
	if e.Kind != outcome.Allowed || !ok || svc == c.Host() || svc == dialed {
		return ""
	}
	return svc
}

// fateClass is the class of a call's ending, and of the hop that decided it.
func fateClass(e outcome.Expect) string {
	switch {
	case e.Kind == outcome.Allowed || e.Kind == outcome.Unreachable:
		return classOut
	case e.Kind == outcome.InMesh:
		return classNext
	}
	return classStop
}

// ending is where the call ends, and its class: out of the mesh ("out"), out by a
// mistake ("mistake"), stopped ("stop"), or handed to another workload ("next").
func ending(e outcome.Expect, c backend.Call) (string, string) {
	who, where := "the sidecar", "the pod"
	if e.Gateway != nil {
		who, where = "the egress gateway", "the mesh"
	}
	switch {
	case e.Reason == outcome.ReasonBlockAll:
		return "502 from " + who + " itself: the call never leaves " + where, classStop
	case e.Reason == outcome.ReasonBlackHole:
		return "connection reset: nothing leaves " + where, classStop
	case e.Reason == outcome.ReasonNoCluster:
		return "503 from " + who + " itself (NC): no such cluster, nothing leaves " + where, classStop
	case e.Reason == outcome.ReasonNoRoute:
		return "404 from " + who + " itself (NR)", classStop
	case e.Kind == outcome.Denied:
		return "403 from " + who + " itself: an AuthorizationPolicy denies the request, nothing leaves " + where, classStop
	case e.Kind == outcome.InMesh:
		return "another workload of the mesh, whose proxy decides next", classNext
	}
	if svc := leakedThrough(e, c); strings.HasPrefix(svc, "*.") {
		return "out of the mesh to " + c.Host() + ", through the wildcard " + svc + ": every subdomain gets out", classMistake
	} else if svc != "" {
		return "out of the mesh, but through " + svc + "'s cluster: another host's entry lets this call out", classMistake
	}
	switch {
	case e.Reason == outcome.ReasonPassthrough:
		return "out to the original destination, " + c.Host(), classOut
	case e.Reason == outcome.ReasonDynamicDNS:
		return "out to what the sidecar resolves " + c.Host() + " to", classOut
	case e.Kind == outcome.Allowed && c.Proxy != nil:
		return "out of the mesh to the proxy " + c.Proxy.Host + ", which tunnels to " + c.HostPort(), classOut
	case e.Kind == outcome.Allowed && e.Gateway != nil:
		return "out of the mesh to " + c.Host() + ", from the egress gateway", classOut
	case e.Kind == outcome.Allowed:
		return "out of the mesh to " + c.Host(), classOut
	case e.Kind == outcome.Unreachable:
		return "out of the mesh, where the call fails", classOut
	}
	return string(e.Kind), classStop
}

// escape makes a label safe inside a quoted Mermaid label: quotes and the pipes of
// Istio's cluster names become Mermaid's entity codes.
func escape(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "|", "#124;").Replace(s)
}
