package handout

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
)

// flowchart is what a test reads back from Diagram's Mermaid text.
type flowchart struct {
	direction string
	titles    map[string]string // subgraph id: its title
	box       map[string]string // node id: the subgraph it is in, "" outside any
	nodes     []string          // node ids, in the order they are declared
	labels    map[string]string // node id: its label, as written
	class     map[string]string // node id: its class
	classDefs map[string]string // class: its style
	edges     map[[2]string]string
}

var (
	nodeLine     = regexp.MustCompile(`^(\w+)\["([^"]*)"\]$`)
	subgraphLine = regexp.MustCompile(`^subgraph (\w+)\["([^"]*)"\]$`)
	arrow        = regexp.MustCompile(`\s+(-->|-\.->)\s+`)
)

func parse(t *testing.T, text string) flowchart {
	t.Helper()
	f := flowchart{titles: map[string]string{}, box: map[string]string{}, labels: map[string]string{}, class: map[string]string{},
		classDefs: map[string]string{}, edges: map[[2]string]string{}}
	lines := strings.Split(text, "\n")
	require.NotEmpty(t, lines)
	head := strings.Fields(lines[0])
	require.Len(t, head, 2, "first line %q", lines[0])
	require.Equal(t, "flowchart", head[0])
	f.direction = head[1]
	in := ""
	for _, raw := range lines[1:] {
		l := strings.TrimSpace(raw)
		switch m := subgraphLine.FindStringSubmatch(l); {
		case m != nil:
			require.Empty(t, in, "a subgraph inside another: %q", l)
			in = m[1]
			f.titles[in] = m[2]
		case l == "end":
			require.NotEmpty(t, in, "an end outside a subgraph")
			in = ""
		case l == "direction TB" || l == "direction LR":
		case strings.HasPrefix(l, "classDef "):
			p := strings.SplitN(l, " ", 3)
			require.Len(t, p, 3, l)
			f.classDefs[p[1]] = p[2]
		case strings.HasPrefix(l, "class "):
			p := strings.Fields(l)
			require.Len(t, p, 3, l)
			for _, id := range strings.Split(p[1], ",") {
				require.Empty(t, f.class[id], "node %s has two classes", id)
				f.class[id] = p[2]
			}
		case nodeLine.MatchString(l):
			m := nodeLine.FindStringSubmatch(l)
			require.NotContains(t, f.labels, m[1], "node %s declared twice", m[1])
			f.nodes = append(f.nodes, m[1])
			f.labels[m[1]] = m[2]
			f.box[m[1]] = in
		case arrow.MatchString(l):
			ids := arrow.Split(l, -1)
			arrows := arrow.FindAllStringSubmatch(l, -1)
			for i, a := range arrows {
				f.edges[[2]string{ids[i], ids[i+1]}] = a[1]
			}
		default:
			t.Fatalf("a line the test does not know: %q\n%s", l, text)
		}
	}
	require.Empty(t, in, "a subgraph without its end")
	for id := range f.class {
		require.Contains(t, f.labels, id, "class for an undeclared node %s", id)
	}
	return f
}

// hops is the first line (what the hop is) of each node in a box, in order.
func (f flowchart) hops(box string) []string {
	var out []string
	for _, id := range f.nodes {
		if f.box[id] == box {
			out = append(out, strings.Split(f.labels[id], "<br/>")[0])
		}
	}
	return out
}

func (f flowchart) styled(class string) []string {
	var out []string
	for _, id := range f.nodes {
		if f.class[id] == class {
			out = append(out, id)
		}
	}
	return out
}

func call(t *testing.T, raw string) backend.Call {
	t.Helper()
	c, err := backend.ParseCall(raw)
	require.NoError(t, err)
	return c
}

const (
	todo       = "http://jsonplaceholder.typicode.com/todos/1"
	todoTLS    = "https://jsonplaceholder.typicode.com/todos/1"
	otherTLS   = "https://my-json-server.typicode.com/typicode/demo/posts"
	other      = "http://my-json-server.typicode.com/typicode/demo/posts"
	todoHost   = "outbound|80||jsonplaceholder.typicode.com"
	todoHostTL = "outbound|443||jsonplaceholder.typicode.com"
	gwCluster  = "outbound|80|jsonplaceholder|istio-egressgateway.istio-system.svc.cluster.local"
)

var (
	blockAll = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll, Listener: "0.0.0.0_80", RouteConfig: "80",
		VirtualHost: outcome.BlockAllHost, Status: 502}
	registered = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "0.0.0.0_80", RouteConfig: "80",
		VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: todoHost, Status: 200}
	blackHole = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole, Listener: "virtualOutbound",
		Cluster: outcome.BlackHoleCluster}
	viaGateway = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "0.0.0.0_80",
		VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: gwCluster, Status: 200,
		Gateway: &outcome.Hop{Listener: "0.0.0.0_80", RouteConfig: "http.80", VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: todoHost}}
	gatewayNC = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonNoCluster, Listener: "0.0.0.0_80", Cluster: gwCluster, Status: 503,
		Gateway: &outcome.Hop{Listener: "0.0.0.0_80", VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: todoHost}}
	// TCP on 443 with no addresses: every 443 destination goes out through one entry's cluster.
	tcpOn443 = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "0.0.0.0_443", Cluster: todoHostTL}
	wildcard = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: "0.0.0.0_80",
		VirtualHost: "*.typicode.com:80", Cluster: "outbound|80||*.typicode.com"}
)

// Each proxy is a box of its own, the app and the ending outside it: the sidecar's,
// and the gateway's pod when the call goes through one, in the order the call meets them.
func TestDiagramDrawsEachProxyAsABox(t *testing.T) {
	f := parse(t, Diagram(registered, call(t, todo)))
	assert.Equal(t, map[string]string{"sidecar": "the client's sidecar (istio-proxy)"}, f.titles)
	assert.Equal(t, "", f.box["app"])
	assert.Equal(t, "", f.box["fate"])
	assert.Equal(t, []string{"listener", "route config", "virtual host", "cluster"}, f.hops("sidecar"))
	assert.Equal(t, "-->", f.edges[[2]string{"app", "sidecar"}])
	assert.Equal(t, "-->", f.edges[[2]string{"sidecar", "fate"}])
	assert.True(t, strings.HasPrefix(f.labels["app"], "app container<br/>http call to jsonplaceholder.typicode.com:80"), f.labels["app"])

	g := parse(t, Diagram(viaGateway, call(t, todo)))
	assert.Equal(t, map[string]string{"sidecar": "the client's sidecar (istio-proxy)", "gateway": "the egress gateway's pod"}, g.titles)
	assert.Equal(t, []string{"listener", "route config", "virtual host", "cluster"}, g.hops("sidecar"))
	assert.Equal(t, []string{"listener", "route config", "virtual host", "cluster"}, g.hops("gateway"))
	for _, e := range [][2]string{{"app", "sidecar"}, {"sidecar", "gateway"}, {"gateway", "fate"}} {
		assert.Equal(t, "-->", g.edges[e], "edge %v", e)
	}
	assert.NotContains(t, g.edges, [2]string{"sidecar", "fate"})
	// The sidecar's cluster is the gateway's, the gateway's the host's.
	assert.Equal(t, "cluster<br/>"+escape(gwCluster), g.labels["c"])
	assert.Equal(t, "cluster<br/>"+escape(todoHost), g.labels["gc"])
	assert.Equal(t, "gateway", g.box["gc"])
	assert.Equal(t, "sidecar", g.box["c"])
}

// Left to right only when it fits a forge's column with its text at minTextPx or more;
// top to bottom through a gateway, and when the names are long.
func TestDiagramDirection(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    outcome.Expect
		call string
		want string
	}{
		{"short names, one proxy", outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Cluster: "outbound|80||api.example.org"},
			"http://api.example.org/v1", "LR"},
		{"blocked by block_all", blockAll, todo, "LR"},
		{"reset by BlackHoleCluster", blackHole, todoTLS, "LR"},
		{"a long cluster name", registered, todo, "TB"},
		{"through a gateway", viaGateway, todo, "TB"},
		{"through a gateway, with short names", outcome.Expect{Kind: outcome.Allowed, Cluster: "outbound|80|x|gw.example",
			Gateway: &outcome.Hop{Cluster: "outbound|80||a.example"}}, "http://a.example/", "TB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := call(t, tc.call)
			assert.Equal(t, tc.want, parse(t, Diagram(tc.e, c)).direction)
			if tc.e.Gateway == nil {
				lr := draw(tc.e, c).widthLR() <= maxWidth*defaultTextPx/minTextPx
				assert.Equal(t, tc.want == "LR", lr, "width %.0f", draw(tc.e, c).widthLR())
			}
		})
	}
	// A gateway's path is long: top to bottom whatever its width.
	assert.Equal(t, "TB", direction(true, 100))
	assert.Equal(t, "LR", direction(false, 100))
	assert.Equal(t, "LR", direction(false, maxWidth*defaultTextPx/minTextPx))
	assert.Equal(t, "TB", direction(false, maxWidth*defaultTextPx/minTextPx+1))
	// The estimate follows the text: one more long word makes a chart wider.
	narrow := draw(blockAll, call(t, "http://a.example/"))
	wide := draw(blockAll, call(t, "http://"+strings.Repeat("a", 60)+".example/"))
	assert.Greater(t, wide.widthLR(), narrow.widthLR()+400)
	assert.Equal(t, "TB", wide.direction)
	assert.Equal(t, "LR", narrow.direction)
}

// The hop that stopped the call, and the ending, are "stop"; no hop after it is drawn.
func TestDiagramMarksWhereTheCallStopped(t *testing.T) {
	f := parse(t, Diagram(blockAll, call(t, todo)))
	assert.Equal(t, []string{"v", "fate"}, f.styled(classStop))
	assert.Equal(t, "virtual host<br/>block_all", f.labels["v"])
	assert.Equal(t, []string{"listener", "route config", "virtual host"}, f.hops("sidecar"), "no cluster after block_all")
	assert.Equal(t, "502 from the sidecar itself: the call never leaves the pod", f.labels["fate"])

	// block_all is the virtual host even when the lab does not name it.
	unnamed := blockAll
	unnamed.VirtualHost, unnamed.RouteConfig = "", ""
	u := parse(t, Diagram(unnamed, call(t, todo)))
	assert.Equal(t, "virtual host<br/>block_all", u.labels["v"])
	assert.Equal(t, []string{"v", "fate"}, u.styled(classStop))

	b := parse(t, Diagram(blackHole, call(t, todoTLS)))
	assert.Equal(t, []string{"c", "fate"}, b.styled(classStop))
	assert.Equal(t, "cluster<br/>BlackHoleCluster", b.labels["c"])
	assert.Equal(t, []string{"listener", "cluster"}, b.hops("sidecar"))
	assert.Contains(t, b.labels["fate"], "connection reset")

	nr := parse(t, Diagram(outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonNoRoute, Listener: "0.0.0.0_80",
		VirtualHost: "jsonplaceholder.typicode.com:80"}, call(t, todo)))
	assert.Equal(t, []string{"v", "fate"}, nr.styled(classStop))

	// What let the call out is "out", and nothing is "stop".
	o := parse(t, Diagram(registered, call(t, todo)))
	assert.Equal(t, []string{"c", "fate"}, o.styled(classOut))
	assert.Empty(t, o.styled(classStop))
	g := parse(t, Diagram(viaGateway, call(t, todo)))
	assert.Equal(t, []string{"gc", "fate"}, g.styled(classOut), "the gateway's cluster lets it out, not the sidecar's")
	assert.Equal(t, "out of the mesh to jsonplaceholder.typicode.com, from the egress gateway", g.labels["fate"])
}

// A cluster the gateway's route names but the gateway lacks is drawn dashed ("missing"),
// reached by a dashed edge; the virtual host that named it stopped the call.
func TestDiagramMarksWhatIsMissing(t *testing.T) {
	for name, e := range map[string]outcome.Expect{
		"literal":                       gatewayNC,
		"egress-gateway lab's 503 call": labs.Expect("egress-gateway", "the-gateway-answers-503"),
	} {
		t.Run(name, func(t *testing.T) {
			f := parse(t, Diagram(e, call(t, todo)))
			assert.Equal(t, []string{"gc"}, f.styled(classMissing))
			assert.Equal(t, "gateway", f.box["gc"])
			assert.Equal(t, []string{"gv", "fate"}, f.styled(classStop))
			assert.Equal(t, "-.->", f.edges[[2]string{"gv", "gc"}])
			assert.Equal(t, "-->", f.edges[[2]string{"gr", "gv"}])
			assert.Contains(t, f.labels["gc"], escape(todoHost)+"<br/>missing: the gateway has no such cluster")
			assert.Contains(t, f.classDefs[classMissing], "stroke-dasharray")
			assert.Empty(t, f.class["c"], "the sidecar's cluster, the gateway's, is there")
			assert.Equal(t, "503 from the egress gateway itself (NC): no such cluster, nothing leaves the mesh", f.labels["fate"])
		})
	}
	// Without a gateway, the sidecar lacks it.
	f := parse(t, Diagram(outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonNoCluster, Listener: "0.0.0.0_80",
		VirtualHost: "jsonplaceholder.typicode.com:80", Cluster: todoHost}, call(t, todo)))
	assert.Equal(t, []string{"c"}, f.styled(classMissing))
	assert.Equal(t, "-.->", f.edges[[2]string{"v", "c"}])
	assert.Contains(t, f.labels["c"], "missing: the sidecar has no such cluster")
	assert.Contains(t, f.labels["fate"], "503 from the sidecar itself")
}

// Allowed, but a mistake: the cluster the call left through is another host's, or a
// wildcard's. The call's own host's cluster, PassthroughCluster and a gateway's service
// are no mistake.
func TestDiagramMarksAMistake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		e       outcome.Expect
		call    string
		mistake bool
		fate    string
	}{
		{"TCP on 443 lets another host out through jsonplaceholder's cluster", tcpOn443, otherTLS, true,
			"out of the mesh, but through jsonplaceholder.typicode.com's cluster: another host's entry lets this call out"},
		{"the same entry, for its own host", tcpOn443, todoTLS, false, "out of the mesh to jsonplaceholder.typicode.com"},
		{"a wildcard lets another subdomain out", wildcard, other, true,
			"out of the mesh to my-json-server.typicode.com, through the wildcard *.typicode.com: every subdomain gets out"},
		{"a wildcard, for the host the lab is about", wildcard, todo, true,
			"out of the mesh to jsonplaceholder.typicode.com, through the wildcard *.typicode.com: every subdomain gets out"},
		{"the host's own entry", registered, todo, false, "out of the mesh to jsonplaceholder.typicode.com"},
		{"through the gateway, whose cluster is the host's", viaGateway, todo, false, ""},
		{"PassthroughCluster", outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough, Listener: "0.0.0.0_80",
			VirtualHost: outcome.AllowAnyHost, Cluster: outcome.PassthroughCluster}, todo, false, "out to the original destination, jsonplaceholder.typicode.com"},
		{"blocked, whatever the cluster", outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole, Listener: "0.0.0.0_443",
			Cluster: todoHostTL}, otherTLS, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := parse(t, Diagram(tc.e, call(t, tc.call)))
			if tc.mistake {
				assert.Equal(t, []string{"c", "fate"}, f.styled(classMistake))
				assert.Empty(t, f.styled(classOut))
			} else {
				assert.Empty(t, f.styled(classMistake))
				assert.NotContains(t, f.classDefs, classMistake)
			}
			if tc.fate != "" {
				assert.Equal(t, escape(tc.fate), f.labels["fate"])
			}
		})
	}
	// The mistake's colour is its own.
	f := parse(t, Diagram(tcpOn443, call(t, otherTLS)))
	o := parse(t, Diagram(registered, call(t, todo)))
	s := parse(t, Diagram(blockAll, call(t, todo)))
	assert.NotEqual(t, f.classDefs[classMistake], o.classDefs[classOut])
	assert.NotEqual(t, f.classDefs[classMistake], s.classDefs[classStop])
}

// The same kind of call shows the same hops, however much of them the lab names.
func TestDiagramSameHopsForSameKindOfCall(t *testing.T) {
	http := []string{"listener", "route config", "virtual host", "cluster"}
	for _, tc := range []struct {
		name  string
		a, b  outcome.Expect
		callA string
		callB string
		hops  []string
	}{
		{"HTTP through an entry: the lab names it all, or only the cluster", registered,
			outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Cluster: todoHost, Status: 200}, todo, todo, http},
		{"HTTP out through PassthroughCluster, or through an entry", outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough,
			Listener: "0.0.0.0_80", VirtualHost: outcome.AllowAnyHost, Cluster: outcome.PassthroughCluster}, registered, todo, todo, http},
		{"block_all, with or without the route config", blockAll, outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
			Listener: "0.0.0.0_80", VirtualHost: outcome.BlockAllHost}, todo, todo, []string{"listener", "route config", "virtual host"}},
		{"HTTPS: an SNI match, a reset on the catch-all listener", tcpOn443, blackHole, todoTLS, otherTLS, []string{"listener", "cluster"}},
		{"a port no listener knows, over HTTP or HTTPS", outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole,
			Listener: "virtualOutbound", Cluster: outcome.BlackHoleCluster}, blackHole, "http://jsonplaceholder.typicode.com:81/", todoTLS,
			[]string{"listener", "cluster"}},
		{"HTTP on 443 reset: the passthrough chain, no route", outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole,
			Listener: "0.0.0.0_443", Cluster: outcome.BlackHoleCluster}, blackHole, todoTLS, todoTLS, []string{"listener", "cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := parse(t, Diagram(tc.a, call(t, tc.callA)))
			b := parse(t, Diagram(tc.b, call(t, tc.callB)))
			assert.Equal(t, tc.hops, a.hops("sidecar"))
			assert.Equal(t, tc.hops, b.hops("sidecar"))
			assert.Equal(t, a.nodes, b.nodes)
		})
	}
	// Through a gateway: the same four hops in each proxy, allowed or not.
	for _, e := range []outcome.Expect{viaGateway, gatewayNC, labs.Expect("egress-gateway", "the-gateway-answers-503")} {
		f := parse(t, Diagram(e, call(t, todo)))
		assert.Equal(t, http, f.hops("sidecar"))
		assert.Equal(t, http, f.hops("gateway"))
	}
}

// Every class sets its fill, its stroke and its text's colour, so that a forge's dark
// theme does not put light text on a light box; and only the classes used are declared.
func TestDiagramClassesSetTheirColours(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range []struct {
		e    outcome.Expect
		call string
	}{
		{registered, todo}, {blockAll, todo}, {gatewayNC, todo}, {tcpOn443, otherTLS},
		{outcome.Expect{Kind: outcome.InMesh, Reason: outcome.ReasonInMesh, Cluster: "outbound|80||web.team-b.svc.cluster.local"}, "http://web.team-b/"},
	} {
		f := parse(t, Diagram(tc.e, call(t, tc.call)))
		used := map[string]bool{}
		for _, c := range f.class {
			used[c] = true
		}
		for c, style := range f.classDefs {
			seen[c] = true
			assert.True(t, used[c], "class %s declared, not used", c)
			for _, prop := range []string{"fill:#", "stroke:#", "color:#"} {
				assert.Contains(t, style, prop, "class %s", c)
			}
		}
	}
	assert.Equal(t, map[string]bool{classOut: true, classStop: true, classMistake: true, classMissing: true, classNext: true}, seen)
	assert.Len(t, classDefs, len(classOrder))
}

// Quotes and pipes in a name become Mermaid's entity codes, inside every label.
func TestDiagramEscapes(t *testing.T) {
	e := outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Listener: `a"b`, VirtualHost: `x"y:80`, Cluster: todoHost}
	text := Diagram(e, call(t, todo))
	f := parse(t, text)
	assert.Equal(t, "listener<br/>a#quot;b", f.labels["l"])
	assert.Equal(t, "virtual host<br/>x#quot;y:80", f.labels["v"])
	assert.Equal(t, "cluster<br/>outbound#124;80#124;#124;jsonplaceholder.typicode.com", f.labels["c"])
	for id, l := range f.labels {
		assert.NotContains(t, l, "|", "node %s", id)
	}
	assert.Equal(t, "a#124;b#quot;c", escape(`a|b"c`))
}

// Every call of every lab: a chart the test can read, left to right only when its
// estimate fits, its app and ending outside the boxes, and one hop styled as the decision.
func TestDiagramOfEveryLabCall(t *testing.T) {
	all, err := labs.All()
	require.NoError(t, err)
	calls := 0
	for _, l := range all {
		for _, s := range l.Steps {
			for _, a := range s.Actions {
				if a.Kind != labfile.MakeCall {
					continue
				}
				calls++
				e, c := a.Call.Expect, a.Call.URL
				f := parse(t, Diagram(e, c))
				where := l.Name + ": " + c.String()
				fits := draw(e, c).widthLR() <= maxWidth*defaultTextPx/minTextPx
				assert.Equal(t, fits && e.Gateway == nil, f.direction == "LR", where)
				assert.Contains(t, f.titles, "sidecar", where)
				assert.Equal(t, e.Gateway != nil, f.titles["gateway"] != "", where)
				assert.Equal(t, "", f.box["app"], where)
				assert.Equal(t, "", f.box["fate"], where)
				assert.NotEmpty(t, f.class["fate"], where)
				decided := 0
				for _, id := range f.nodes {
					if id != "fate" && f.class[id] != "" && f.class[id] != classMissing {
						decided++
					}
				}
				assert.Equal(t, 1, decided, "%s: one hop decides\n%s", where, Diagram(e, c))
			}
		}
	}
	assert.Greater(t, calls, 40)
}
