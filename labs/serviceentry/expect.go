package serviceentry

import "github.com/egresslab/egresslab/harness/outcome"

// What the lab's calls are expected to match, written once for the lab's own tests, the
// scenarios and the backends' tests. They are what Istio's config generator and
// simulator compute (sim) for the lab's manifests; the figures in design.md were
// measured the same way. Config fields are checked on backends that read the sidecar's
// configuration (sim, local); Status on backends that make the real call (kind).
var (
	// BlockedByBlockAll: the client's own Service on port 80 gives the sidecar an HTTP
	// listener there, and no virtual host on it matches the host.
	BlockedByBlockAll = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
		Listener: "0.0.0.0_80", RouteConfig: "80", VirtualHost: "block_all", Status: 502}
	// AllowedThroughTheEntry: the seed's entry gives the host a virtual host and a cluster.
	AllowedThroughTheEntry = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered,
		Listener: "0.0.0.0_80", RouteConfig: "80", VirtualHost: "jsonplaceholder.typicode.com:80",
		Cluster: "outbound|80||jsonplaceholder.typicode.com", Status: 200}
	// BlockedByBlackHole: no listener on 443, so the catch-all resets the connection.
	BlockedByBlackHole = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole,
		Listener: "virtualOutbound", Cluster: "BlackHoleCluster"}
	// AllowedByPassthrough: under ALLOW_ANY an unknown host passes through.
	AllowedByPassthrough = outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonPassthrough,
		Listener: "0.0.0.0_80", VirtualHost: "allow_any", Cluster: "PassthroughCluster", Status: 200}
)
