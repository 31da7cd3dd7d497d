package proxy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	admin "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// serveAdmin answers the admin endpoints pilot-agent, the kubelet (through the
// static listeners) and the lab read. Anything else is a 404 that says so.
func (p *Process) serveAdmin(l net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", p.adminStats)
	mux.HandleFunc("/stats/prometheus", p.adminPrometheus)
	mux.HandleFunc("/server_info", p.adminServerInfo)
	mux.HandleFunc("/config_dump", p.adminConfigDump)
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if live, _, _ := p.state(); !live {
			http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "LIVE")
	})
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "OK")
		p.logf("info", "/quitquitquit: exiting")
		p.Quit()
	})
	// The agent asks Envoy to drain before it stops it; the stand-in holds no
	// long-lived connections worth draining.
	mux.HandleFunc("/drain_listeners", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the Envoy stand-in does not serve "+r.URL.Path, http.StatusNotFound)
	})
	_ = http.Serve(l, mux)
}

// stats are the counters and gauges the stand-in keeps, under Envoy's names.
func (p *Process) stats() map[string]int {
	live, cds, lds := p.state()
	state, workers := 2, 0 // PRE_INITIALIZING
	if live {
		state, workers = 0, 1
	}
	return map[string]int{
		"server.state":                         state,
		"listener_manager.workers_started":     workers,
		"cluster_manager.cds.update_success":   cds,
		"cluster_manager.cds.update_rejected":  0,
		"listener_manager.lds.update_success":  lds,
		"listener_manager.lds.update_rejected": 0,
		"server.uptime":                        int(time.Since(p.started).Seconds()),
	}
}

// adminStats is Envoy's /stats text format, "name: value" lines, with ?filter=REGEX.
func (p *Process) adminStats(w http.ResponseWriter, r *http.Request) {
	var re *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, "Invalid re2 regex", http.StatusBadRequest)
			return
		}
	}
	st := p.stats()
	for _, n := range sortedNames(st) {
		if re == nil || re.MatchString(n) {
			fmt.Fprintf(w, "%s: %d\n", n, st[n])
		}
	}
}

func (p *Process) adminPrometheus(w http.ResponseWriter, _ *http.Request) {
	st := p.stats()
	for _, n := range sortedNames(st) {
		m := "envoy_" + strings.ReplaceAll(n, ".", "_")
		fmt.Fprintf(w, "# TYPE %s gauge\n%s %d\n", m, m, st[n])
	}
}

func sortedNames(st map[string]int) []string {
	names := slices.Collect(maps.Keys(st))
	slices.Sort(names)
	return names
}

func (p *Process) adminServerInfo(w http.ResponseWriter, _ *http.Request) {
	live, _, _ := p.state()
	state := "PRE_INITIALIZING"
	if live {
		state = "LIVE"
	}
	node, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(p.boot.Node)
	up := fmt.Sprintf("%ds", int(time.Since(p.started).Seconds()))
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(map[string]any{
		"version":              Version,
		"state":                state,
		"hot_restart_version":  "disabled",
		"command_line_options": map[string]any{"config_path": p.boot.Path},
		"node":                 json.RawMessage(node),
		"uptime_current_epoch": up,
		"uptime_all_epochs":    up,
	})
}

// adminConfigDump is Envoy's ConfigDump of what the stand-in holds: the dynamic
// listeners, clusters and route configurations istiod pushed.
func (p *Process) adminConfigDump(w http.ResponseWriter, _ *http.Request) {
	raw, err := p.ConfigDump()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

// ConfigDump renders the held config as Envoy's admin.v3.ConfigDump JSON.
func (p *Process) ConfigDump() ([]byte, error) {
	sim, err := p.config()
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	ls := &admin.ListenersConfigDump{}
	for _, l := range sim.Listeners {
		a, err := anypb.New(l)
		if err != nil {
			return nil, err
		}
		ls.DynamicListeners = append(ls.DynamicListeners, &admin.ListenersConfigDump_DynamicListener{
			Name: l.GetName(), ActiveState: &admin.ListenersConfigDump_DynamicListenerState{Listener: a}})
	}
	cs := &admin.ClustersConfigDump{}
	for _, c := range sim.Clusters {
		a, err := anypb.New(c)
		if err != nil {
			return nil, err
		}
		cs.DynamicActiveClusters = append(cs.DynamicActiveClusters, &admin.ClustersConfigDump_DynamicCluster{Cluster: a})
	}
	rs := &admin.RoutesConfigDump{}
	for _, r := range sim.Routes {
		a, err := anypb.New(r)
		if err != nil {
			return nil, err
		}
		rs.DynamicRouteConfigs = append(rs.DynamicRouteConfigs, &admin.RoutesConfigDump_DynamicRouteConfig{RouteConfig: a})
	}
	dump := &admin.ConfigDump{}
	for _, m := range []proto.Message{cs, ls, rs} {
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		dump.Configs = append(dump.Configs, a)
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true, Indent: " "}.Marshal(dump)
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	return out, nil
}

// serveStatic serves a bootstrap listener: a request goes to the static cluster of
// the first route whose prefix it has, as the listener's HTTP connection manager
// would send it; no route is a 404.
func (p *Process) serveStatic(l net.Listener, sl StaticListener) {
	proxies := make([]*httputil.ReverseProxy, len(sl.Routes))
	for i, r := range sl.Routes {
		proxies[i] = httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: r.Upstream})
		proxies[i].ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("Server", "envoy")
			http.Error(w, "upstream connect error: "+err.Error(), http.StatusServiceUnavailable)
		}
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for i, r := range sl.Routes {
			if strings.HasPrefix(req.URL.Path, r.Prefix) {
				proxies[i].ServeHTTP(w, req)
				return
			}
		}
		w.Header().Set("Server", "envoy")
		w.WriteHeader(http.StatusNotFound)
	}))
}
