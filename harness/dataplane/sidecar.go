package dataplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pilot/pkg/simulation"
	dnsProto "istio.io/istio/pkg/dns/proto"
	"istio.io/istio/pkg/model"
	"istio.io/istio/pkg/wellknown"
)

// The xDS resource types the stand-in sidecar asks for: what Envoy needs to match a
// call, and the endpoints of its EDS clusters (where a call to an in-mesh Service, such
// as an egress gateway, is sent). Endpoints do not decide the match, so the config is
// complete without them; secrets (SDS) are not asked for.
const (
	listenerType = model.ListenerType
	clusterType  = model.ClusterType
	routeType    = model.RouteType
	endpointType = model.EndpointType
	// nameTableType is NDS: the DNS name table, which istio-agent asks for only when it
	// captures DNS (pkg/istio-agent/xds_proxy.go), to answer the app's queries itself.
	nameTableType = model.NameTableType
)

// IstioProxyVersion is the Istio version the stand-in sidecar claims, as an
// istio-proxy of the same release as istiod would.
const IstioProxyVersion = "1.31.0"

// Sidecar stands in for a pod's istio-proxy: it connects to istiod over ADS with that
// pod's identity and node metadata, as Envoy started by istio-agent would, and keeps
// the latest listeners, clusters and routes istiod pushes. Nothing listens; the
// simulator matches calls against what it holds.
type Sidecar struct {
	id     string
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	listeners []*listener.Listener
	clusters  []*cluster.Cluster
	routes    map[string]*route.RouteConfiguration
	wantRDS   []string // the route names last asked for
	endpoints map[string]*endpoint.ClusterLoadAssignment
	wantEDS   []string // the EDS service names last asked for
	names     *Names   // the DNS name table, for a sidecar that captures DNS
	received  map[string]int
	updated   time.Time // when the last response arrived
	changed   chan struct{}
	err       error // why the stream ended
}

// Connect opens the ADS stream to istiod at addr and asks for clusters and listeners,
// as Envoy does; routes are asked for as listeners name them. The stand-in for Envoy's
// process connects this way (istio-agent, real there, asks for the name table itself).
func Connect(addr string, node *core.Node) (*Sidecar, error) {
	return connect(addr, node, false)
}

// ConnectAgent is Connect for a stand-in of the whole istio-proxy container, Envoy and
// istio-agent (the local backend): when the node captures DNS it also asks for the
// name table, as the agent does (Names).
func ConnectAgent(addr string, node *core.Node) (*Sidecar, error) {
	return connect(addr, node, capturesDNS(node))
}

func connect(addr string, node *core.Node, names bool) (*Sidecar, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("stand-in sidecar: connect to istiod at %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, fmt.Errorf("stand-in sidecar: open ADS stream to istiod at %s: %w", addr, err)
	}
	s := &Sidecar{
		id: node.Id, conn: conn, cancel: cancel, done: make(chan struct{}),
		routes: map[string]*route.RouteConfiguration{}, endpoints: map[string]*endpoint.ClusterLoadAssignment{},
		received: map[string]int{}, changed: make(chan struct{}),
	}
	// Envoy asks for clusters first, then listeners; the node goes on the first request.
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: clusterType}); err != nil {
		s.Close()
		return nil, fmt.Errorf("stand-in sidecar: send CDS request: %w", err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: listenerType}); err != nil {
		s.Close()
		return nil, fmt.Errorf("stand-in sidecar: send LDS request: %w", err)
	}
	if names {
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: nameTableType}); err != nil {
			s.Close()
			return nil, fmt.Errorf("stand-in sidecar: send NDS request: %w", err)
		}
	}
	go s.receive(stream)
	return s, nil
}

// capturesDNS reports whether the node's metadata says its agent captures DNS
// (DNS_CAPTURE, as NodeFor sets it from the pod).
func capturesDNS(node *core.Node) bool {
	return node.GetMetadata().GetFields()["DNS_CAPTURE"].GetStringValue() == "true"
}

// Names is the DNS name table istiod last sent, nil when the sidecar does not capture
// DNS: how its app's names resolve.
func (s *Sidecar) Names() *Names {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names
}

// Ended reports whether the stream from istiod has ended.
func (s *Sidecar) Ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Done is closed when the stream from istiod has ended.
func (s *Sidecar) Done() <-chan struct{} { return s.done }

// Close ends the stream.
func (s *Sidecar) Close() {
	s.cancel()
	_ = s.conn.Close()
}

// receive takes in every push, keeps it, and acknowledges it as Envoy does.
func (s *Sidecar) receive(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	defer close(s.done)
	for {
		resp, err := stream.Recv()
		if err != nil {
			s.mu.Lock()
			s.err = fmt.Errorf("stand-in sidecar: xDS stream from istiod ended: %w", err)
			s.notify()
			s.mu.Unlock()
			return
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
		var ask *discovery.DiscoveryRequest // a new RDS or EDS subscription, when listeners or clusters name others
		s.mu.Lock()
		switch resp.TypeUrl {
		case clusterType:
			s.clusters = decodeAll[cluster.Cluster](resp.Resources)
			if names := edsNames(s.clusters); !slices.Equal(names, s.wantEDS) {
				s.wantEDS = names
				ask = &discovery.DiscoveryRequest{TypeUrl: endpointType, ResourceNames: names}
				forgetAllBut(s.endpoints, names)
			}
		case listenerType:
			s.listeners = decodeAll[listener.Listener](resp.Resources)
			if names := routeNames(s.listeners); !slices.Equal(names, s.wantRDS) {
				s.wantRDS = names
				ask = &discovery.DiscoveryRequest{TypeUrl: routeType, ResourceNames: names}
				forgetAllBut(s.routes, names)
			}
		case routeType:
			for _, rc := range decodeAll[route.RouteConfiguration](resp.Resources) {
				s.routes[rc.GetName()] = rc
			}
			ack.ResourceNames = s.wantRDS
		case endpointType:
			for _, la := range decodeAll[endpoint.ClusterLoadAssignment](resp.Resources) {
				s.endpoints[la.GetClusterName()] = la
			}
			ack.ResourceNames = s.wantEDS
		case nameTableType:
			if tables := decodeAll[dnsProto.NameTable](resp.Resources); len(tables) > 0 {
				s.names = NewNames(tables[0])
			}
		}
		s.received[resp.TypeUrl]++
		s.updated = time.Now()
		s.notify()
		s.mu.Unlock()

		if err := stream.Send(ack); err == nil && ask != nil {
			err = stream.Send(ask)
		}
	}
}

// forgetAllBut drops the resources no longer asked for (routes no listener names,
// endpoints of clusters gone), as Envoy forgets them.
func forgetAllBut[V any](m map[string]V, names []string) {
	maps.DeleteFunc(m, func(n string, _ V) bool { return !slices.Contains(names, n) })
}

// notify wakes whoever waits for a change; s.mu is held.
func (s *Sidecar) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func decodeAll[T any, P interface {
	*T
	proto.Message
}](resources []*anypb.Any) []P {
	out := make([]P, 0, len(resources))
	for _, r := range resources {
		m := P(new(T))
		if err := r.UnmarshalTo(m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// routeNames lists the route configurations the listeners' HTTP connection managers
// load over RDS, sorted.
func routeNames(ls []*listener.Listener) []string {
	var names []string
	for _, l := range ls {
		for _, fc := range FilterChains(l) {
			for _, f := range fc.GetFilters() {
				if f.GetName() != wellknown.HTTPConnectionManager {
					continue
				}
				h := &hcm.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					continue
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" && !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// edsNames lists the names EDS clusters load their endpoints under (the cluster's
// service_name, else its own name), sorted.
func edsNames(cs []*cluster.Cluster) []string {
	var names []string
	for _, c := range cs {
		if c.GetType() != cluster.Cluster_EDS {
			continue
		}
		if n := edsName(c); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Endpoints is the load assignment istiod sent for an EDS cluster; nil when none has
// arrived (Envoy would have no host to send to).
func (s *Sidecar) Endpoints(c *cluster.Cluster) *endpoint.ClusterLoadAssignment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoints[edsName(c)]
}

// edsName is the name an EDS cluster loads its endpoints under: its service_name,
// else its own name.
func edsName(c *cluster.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// errNoConfig is returned until the sidecar holds a complete configuration.
var errNoConfig = errors.New("the stand-in sidecar has not received its full configuration from istiod yet")

// Simulation is the sidecar's configuration as it stands, for the simulator: the
// latest listeners and clusters, and the routes they name. Until every named route
// has arrived the configuration is incomplete (Envoy would not yet serve the listener
// either), and errNoConfig says so.
func (s *Sidecar) Simulation() (*simulation.Simulation, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, time.Time{}, s.err
	}
	if s.received[listenerType] == 0 || s.received[clusterType] == 0 {
		return nil, time.Time{}, errNoConfig
	}
	sim := &simulation.Simulation{Listeners: s.listeners, Clusters: s.clusters}
	for _, n := range s.wantRDS {
		rc, ok := s.routes[n]
		if !ok {
			return nil, time.Time{}, fmt.Errorf("%w (route configuration %q)", errNoConfig, n)
		}
		sim.Routes = append(sim.Routes, rc)
	}
	return sim, s.updated, nil
}

// WaitConfig waits until the sidecar holds a complete configuration.
func (s *Sidecar) WaitConfig(ctx context.Context) error {
	for {
		// The channel is taken before the config is looked at: taken after, a push that
		// completed the config in between would close the channel looked past, and the
		// wait would last until the next push, which may never come (a stand-in pod
		// stayed PRE_INITIALIZING until its rollout timed out).
		ch := s.Changed()
		_, _, err := s.Simulation()
		if err == nil || !errors.Is(err, errNoConfig) {
			return err
		}
		configLookedAt()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, context.Cause(ctx))
		case <-ch:
		}
	}
}

// configLookedAt is called by WaitConfig between looking at an incomplete config and
// waiting for the next push: a test puts the push that completes it there.
var configLookedAt = func() {}

// WaitSettled waits until no push has arrived for quiet: the config a newly connected
// sidecar first gets comes from istiod's last push context, which may predate objects
// applied just before (the client's own Service); istiod pushes again once its
// debounce (100ms by default) has passed. A real pod takes longer than that to start.
func (s *Sidecar) WaitSettled(ctx context.Context, quiet time.Duration) error {
	for {
		s.mu.Lock()
		since, ch, err := time.Since(s.updated), s.changed, s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if since >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		case <-time.After(quiet - since):
		}
	}
}

// Changed is closed at the next push that arrives (or when the stream ends).
func (s *Sidecar) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Summary counts what the sidecar holds, for narration.
func (s *Sidecar) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d listeners, %d clusters, %d route configurations", len(s.listeners), len(s.clusters), len(s.routes))
}

// Updates counts the cluster and listener pushes received (Envoy's
// cluster_manager.cds.update_success and listener_manager.lds.update_success: the
// stand-in accepts every push).
func (s *Sidecar) Updates() (clusters, listeners int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[clusterType], s.received[listenerType]
}

// ID is the node ID the sidecar presented to istiod.
func (s *Sidecar) ID() string { return s.id }
