package dataplane

import (
	"encoding/json"
	"fmt"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	sigsyaml "sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/simulation"
)

// Dump renders what r matched in sim's configuration.
func Dump(sim *simulation.Simulation, r simulation.Result) (string, error) {
	var doc struct {
		Listener    string         `json:"listener,omitempty"`
		FilterChain map[string]any `json:"filterChain,omitempty"`
		RouteConfig string         `json:"routeConfig,omitempty"`
		VirtualHost map[string]any `json:"virtualHost,omitempty"`
		Cluster     map[string]any `json:"cluster,omitempty"`
	}
	doc.Listener = r.ListenerMatched
	doc.RouteConfig = r.RouteConfigMatched
	for _, l := range sim.Listeners {
		if l.GetName() != r.ListenerMatched {
			continue
		}
		for _, fc := range FilterChains(l) {
			if fc.GetName() == r.FilterChainMatched {
				doc.FilterChain = asMap(fc)
				break
			}
		}
	}
	for _, rc := range sim.Routes {
		if rc.GetName() != r.RouteConfigMatched {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == r.VirtualHostMatched {
				doc.VirtualHost = asMap(vh)
			}
		}
	}
	if c := ClusterNamed(sim, r.ClusterMatched); c != nil {
		doc.Cluster = asMap(c)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("encode sidecar config: %w", err)
	}
	out, err := sigsyaml.JSONToYAML(raw)
	if err != nil {
		return "", fmt.Errorf("encode sidecar config: %w", err)
	}
	return string(out), nil
}

// FilterChains are all of a listener's filter chains: its matched chains and, last, its
// default chain (the one the simulator reports when no match applies).
func FilterChains(l *listener.Listener) []*listener.FilterChain {
	chains := append([]*listener.FilterChain{}, l.GetFilterChains()...)
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	return chains
}

func asMap(m proto.Message) map[string]any {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return out
}
