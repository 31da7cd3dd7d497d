package proxy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Bootstrap is what the stand-in reads from the bootstrap pilot-agent writes for Envoy
// (etc/istio/proxy/envoy-rev.json): the node it presents to istiod, the admin address,
// the XDS socket the agent serves, and the static listeners that route plain HTTP to a
// static cluster (the kubelet's health port 15021 to the agent, 15090 to the admin's
// Prometheus stats). Only those parts are read: the stand-in does not pretend to
// implement the rest.
type Bootstrap struct {
	Path  string
	Node  *core.Node
	Admin string // host:port
	// XDS is the gRPC target of the ADS cluster, "unix:///abs/path" for the agent's socket.
	XDS string
	// SDS is the gRPC target of the agent's secret service (the static cluster
	// "sds-grpc"): the workload certificate and Istio's root for mutual TLS; "" when the
	// bootstrap has none.
	SDS    string
	Static []StaticListener
}

// StaticListener is a bootstrap listener whose HTTP connection manager routes path
// prefixes to static clusters.
type StaticListener struct {
	Name    string
	Address string // host:port
	Routes  []StaticRoute
}

// StaticRoute sends requests whose path starts with Prefix to Upstream (host:port).
type StaticRoute struct {
	Prefix   string
	Upstream string
}

// The subset of Envoy's bootstrap JSON the stand-in reads.
type jsonAddress struct {
	SocketAddress *struct {
		Address   string `json:"address"`
		PortValue int    `json:"port_value"`
	} `json:"socket_address"`
	Pipe *struct {
		Path string `json:"path"`
	} `json:"pipe"`
}

type jsonBootstrap struct {
	Node  json.RawMessage `json:"node"`
	Admin struct {
		Address jsonAddress `json:"address"`
	} `json:"admin"`
	DynamicResources struct {
		AdsConfig struct {
			GrpcServices []struct {
				EnvoyGrpc struct {
					ClusterName string `json:"cluster_name"`
				} `json:"envoy_grpc"`
			} `json:"grpc_services"`
		} `json:"ads_config"`
	} `json:"dynamic_resources"`
	StaticResources struct {
		Clusters []struct {
			Name           string `json:"name"`
			LoadAssignment struct {
				Endpoints []struct {
					LbEndpoints []struct {
						Endpoint struct {
							Address jsonAddress `json:"address"`
						} `json:"endpoint"`
					} `json:"lb_endpoints"`
				} `json:"endpoints"`
			} `json:"load_assignment"`
		} `json:"clusters"`
		Listeners []struct {
			Name         string      `json:"name"`
			Address      jsonAddress `json:"address"`
			FilterChains []struct {
				Filters []struct {
					Name        string `json:"name"`
					TypedConfig struct {
						RouteConfig struct {
							VirtualHosts []struct {
								Routes []struct {
									Match struct {
										Prefix string `json:"prefix"`
									} `json:"match"`
									Route struct {
										Cluster string `json:"cluster"`
									} `json:"route"`
								} `json:"routes"`
							} `json:"virtual_hosts"`
						} `json:"route_config"`
					} `json:"typed_config"`
				} `json:"filters"`
			} `json:"filter_chains"`
		} `json:"listeners"`
	} `json:"static_resources"`
}

func (a jsonAddress) hostPort() string {
	if a.SocketAddress == nil {
		return ""
	}
	return net.JoinHostPort(a.SocketAddress.Address, strconv.Itoa(a.SocketAddress.PortValue))
}

// sdsCluster is the bootstrap's static cluster for pilot-agent's secret service.
const sdsCluster = "sds-grpc"

// grpcTarget is the address as a gRPC target: "unix:///abs/path" for a pipe, relative
// paths taken from the current directory as Envoy (started by pilot-agent in /) takes them.
func (a jsonAddress) grpcTarget() (string, error) {
	if a.Pipe == nil {
		return a.hostPort(), nil
	}
	p, err := filepath.Abs(a.Pipe.Path)
	if err != nil {
		return "", fmt.Errorf("socket %s: %w", a.Pipe.Path, err)
	}
	return "unix://" + p, nil
}

// LoadBootstrap reads the bootstrap file; relative socket paths are taken from the
// current directory, as Envoy (started by pilot-agent in /) takes them.
func LoadBootstrap(path string) (*Bootstrap, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read Envoy's bootstrap: %w", err)
	}
	var jb jsonBootstrap
	if err := json.Unmarshal(raw, &jb); err != nil {
		return nil, fmt.Errorf("read Envoy's bootstrap %s: %w", path, err)
	}
	b := &Bootstrap{Path: path, Node: &core.Node{}, Admin: jb.Admin.Address.hostPort()}
	if len(jb.Node) > 0 {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(jb.Node, b.Node); err != nil {
			return nil, fmt.Errorf("read the node in Envoy's bootstrap %s: %w", path, err)
		}
	}
	if b.Node.GetId() == "" {
		return nil, fmt.Errorf("Envoy's bootstrap %s: node.id is empty: istiod needs it to know the proxy", path)
	}
	if b.Admin == "" {
		return nil, fmt.Errorf("Envoy's bootstrap %s: admin.address.socket_address is missing", path)
	}
	clusters := map[string]jsonAddress{}
	for _, c := range jb.StaticResources.Clusters {
		for _, e := range c.LoadAssignment.Endpoints {
			for _, lb := range e.LbEndpoints {
				if _, seen := clusters[c.Name]; !seen {
					clusters[c.Name] = lb.Endpoint.Address
				}
			}
		}
	}
	if gs := jb.DynamicResources.AdsConfig.GrpcServices; len(gs) > 0 {
		name := gs[0].EnvoyGrpc.ClusterName
		a, ok := clusters[name]
		if !ok {
			return nil, fmt.Errorf("Envoy's bootstrap %s: the ADS cluster %q has no static endpoint", path, name)
		}
		if b.XDS, err = a.grpcTarget(); err != nil {
			return nil, fmt.Errorf("Envoy's bootstrap %s: ADS: %w", path, err)
		}
	}
	if a, ok := clusters[sdsCluster]; ok {
		if b.SDS, err = a.grpcTarget(); err != nil {
			return nil, fmt.Errorf("Envoy's bootstrap %s: SDS: %w", path, err)
		}
	}
	if b.XDS == "" {
		return nil, fmt.Errorf("Envoy's bootstrap %s: dynamic_resources.ads_config names no gRPC service", path)
	}
	for _, l := range jb.StaticResources.Listeners {
		sl := StaticListener{Name: l.Name, Address: l.Address.hostPort()}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				for _, vh := range f.TypedConfig.RouteConfig.VirtualHosts {
					for _, r := range vh.Routes {
						if up := clusters[r.Route.Cluster].hostPort(); up != "" && r.Match.Prefix != "" {
							sl.Routes = append(sl.Routes, StaticRoute{Prefix: r.Match.Prefix, Upstream: up})
						}
					}
				}
			}
		}
		if sl.Address != "" && len(sl.Routes) > 0 {
			b.Static = append(b.Static, sl)
		}
	}
	return b, nil
}
