package kind

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/egresslab/egresslab/harness/outcome"
)

// FilterConfigDump keeps, from Envoy's /config_dump, what decides a call to host:port:
// the listener for the port and the catch-all virtualOutbound, the virtual hosts of the
// port's route config that name the host (and the catch-alls block_all and allow_any),
// and the clusters for host:port with BlackHoleCluster and PassthroughCluster. The
// whole dump runs to megabytes; this is the part a person reads.
func FilterConfigDump(dump []byte, host string, port int) (string, error) {
	var d struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(dump, &d); err != nil {
		return "", fmt.Errorf("read Envoy's config_dump: %w", err)
	}
	p := strconv.Itoa(port)
	out := struct {
		Listeners    []any `json:"listeners"`
		RouteConfigs []any `json:"routeConfigs"`
		Clusters     []any `json:"clusters"`
	}{Listeners: []any{}, RouteConfigs: []any{}, Clusters: []any{}}
	for _, c := range d.Configs {
		var typ string
		_ = json.Unmarshal(c["@type"], &typ)
		switch {
		case strings.HasSuffix(typ, ".ListenersConfigDump"):
			for _, l := range listeners(c) {
				name, _ := l["name"].(string)
				if name == "virtualOutbound" || strings.HasSuffix(name, "_"+p) {
					out.Listeners = append(out.Listeners, l)
				}
			}
		case strings.HasSuffix(typ, ".RoutesConfigDump"):
			for _, rc := range routeConfigs(c) {
				if rc["name"] != p && rc["name"] != host+":"+p {
					continue
				}
				rc["virtual_hosts"] = relevantHosts(rc["virtual_hosts"], host, p)
				out.RouteConfigs = append(out.RouteConfigs, rc)
			}
		case strings.HasSuffix(typ, ".ClustersConfigDump"):
			for _, cl := range clusters(c) {
				name, _ := cl["name"].(string)
				if name == outcome.BlackHoleCluster || name == outcome.PassthroughCluster ||
					strings.HasSuffix(name, "|"+p+"||"+host) {
					out.Clusters = append(out.Clusters, cl)
				}
			}
		}
	}
	raw, err := yaml.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("write the sidecar's config as YAML: %w", err)
	}
	return string(raw), nil
}

// listeners are the dump's static and dynamic (active) listeners.
func listeners(c map[string]json.RawMessage) []map[string]any {
	var out []map[string]any
	var static []struct {
		Listener map[string]any `json:"listener"`
	}
	_ = json.Unmarshal(c["static_listeners"], &static)
	for _, s := range static {
		out = append(out, s.Listener)
	}
	var dynamic []struct {
		ActiveState struct {
			Listener map[string]any `json:"listener"`
		} `json:"active_state"`
	}
	_ = json.Unmarshal(c["dynamic_listeners"], &dynamic)
	for _, d := range dynamic {
		if d.ActiveState.Listener != nil {
			out = append(out, d.ActiveState.Listener)
		}
	}
	return out
}

func routeConfigs(c map[string]json.RawMessage) []map[string]any {
	var out []map[string]any
	for _, key := range []string{"static_route_configs", "dynamic_route_configs"} {
		var rcs []struct {
			RouteConfig map[string]any `json:"route_config"`
		}
		_ = json.Unmarshal(c[key], &rcs)
		for _, r := range rcs {
			if r.RouteConfig != nil {
				out = append(out, r.RouteConfig)
			}
		}
	}
	return out
}

func clusters(c map[string]json.RawMessage) []map[string]any {
	var out []map[string]any
	for _, key := range []string{"static_clusters", "dynamic_active_clusters"} {
		var cls []struct {
			Cluster map[string]any `json:"cluster"`
		}
		_ = json.Unmarshal(c[key], &cls)
		for _, cl := range cls {
			if cl.Cluster != nil {
				out = append(out, cl.Cluster)
			}
		}
	}
	return out
}

// relevantHosts keeps the virtual hosts whose domains name host (with or without the
// port), and Envoy's catch-alls.
func relevantHosts(v any, host, port string) []any {
	vhs, _ := v.([]any)
	out := []any{}
	for _, vh := range vhs {
		m, _ := vh.(map[string]any)
		name, _ := m["name"].(string)
		if name == outcome.BlockAllHost || name == outcome.AllowAnyHost {
			out = append(out, vh)
			continue
		}
		domains, _ := m["domains"].([]any)
		if slices.ContainsFunc(domains, func(d any) bool { return d == host || d == host+":"+port }) {
			out = append(out, vh)
		}
	}
	return out
}
