package handout

import (
	"fmt"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Diagram is a Mermaid flowchart of the call's path through the sidecar, as far as the
// expectation names it: listener → route config → virtual host → cluster → where it ends.
func Diagram(e outcome.Expect, c backend.Call) string {
	var lines []string
	node := func(id, label string) string { return fmt.Sprintf(`%s["%s"]`, id, escape(label)) }
	path := []string{node("app", "app: "+c.URL.Scheme+" call to "+c.HostPort())}
	add := func(id, what, name string) {
		if name != "" {
			path = append(path, node(id, what+" "+name))
		}
	}
	add("l", "listener", e.Listener)
	add("r", "route config", e.RouteConfig)
	add("v", "virtual host", e.VirtualHost)
	add("c", "cluster", e.Cluster)
	add("t", "TLS originated, SNI", e.UpstreamSNI)
	if g := e.Gateway; g != nil {
		add("gl", "egress gateway: listener", g.Listener)
		add("gr", "route config", g.RouteConfig)
		add("gv", "virtual host", g.VirtualHost)
		add("gc", "cluster", g.Cluster)
	}
	end, class := ending(e, c)
	path = append(path, node("fate", end)) // not "end": a Mermaid keyword
	lines = append(lines, "flowchart LR")
	lines = append(lines, "  "+strings.Join(path, " --> "))
	lines = append(lines, "  classDef out fill:#d4f7d4,stroke:#2a2", "  classDef stop fill:#f7d4d4,stroke:#a22", "  class fate "+class)
	return strings.Join(lines, "\n")
}

// ending is where the call ends, and whether it left the mesh ("out") or not ("stop").
func ending(e outcome.Expect, c backend.Call) (string, string) {
	switch {
	case e.Reason == outcome.ReasonBlockAll:
		return "502 from the sidecar itself: the call never leaves the pod", "stop"
	case e.Reason == outcome.ReasonBlackHole:
		return "connection reset: nothing leaves the pod", "stop"
	case e.Reason == outcome.ReasonNoCluster:
		return "503 from the proxy itself (NC): no such cluster, nothing leaves", "stop"
	case e.Reason == outcome.ReasonNoRoute:
		return "404 from the sidecar itself (NR)", "stop"
	case e.Kind == outcome.InMesh:
		return "another workload of the mesh, whose proxy decides next", "stop"
	case e.Reason == outcome.ReasonPassthrough:
		return "out to the original destination, " + c.Host(), "out"
	case e.Reason == outcome.ReasonDynamicDNS:
		return "out to what the sidecar resolves " + c.Host() + " to", "out"
	case e.Kind == outcome.Allowed:
		return "out of the mesh to " + c.Host(), "out"
	case e.Kind == outcome.Unreachable:
		return "out of the mesh, where the call fails", "out"
	}
	return string(e.Kind), "stop"
}

// escape makes a label safe inside a quoted Mermaid label: quotes and the pipes of
// Istio's cluster names become Mermaid's entity codes.
func escape(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "|", "#124;").Replace(s)
}
