// Package backend defines what a place to run the lab must do. A scenario applies
// objects, makes a call from the client and expects an outcome; the same scenario runs
// on every backend: sim (Istio's config generator and Envoy-matching simulator,
// offline) and the cluster backends (a real kind cluster; a local control plane).
package backend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Backend runs the lab's steps somewhere.
type Backend interface {
	// Name is the short name used on the command line: "sim", "kind".
	Name() string
	// Describe says in a few sentences what a verdict from this backend rests on.
	Describe() string

	// InstallMesh installs Istio with these values, or reconfigures it to them.
	InstallMesh(ctx context.Context, values manifest.MeshValues) error
	// Apply creates or updates every object of the set; a set is applied whole or not at all.
	Apply(ctx context.Context, set *manifest.Set) error
	// Delete removes every object of the set that exists.
	Delete(ctx context.Context, set *manifest.Set) error

	// Sidecar finds out whether the workload's pod runs with an istio-proxy sidecar, and
	// how the backend knows. An error means it could not find out (no such Deployment,
	// pods that never became ready); a pod without a sidecar is an answer, not an error.
	Sidecar(ctx context.Context, w Workload) (SidecarStatus, error)
	// Call makes the call from the workload and judges it.
	Call(ctx context.Context, w Workload, c Call) (outcome.Verdict, error)
	// SidecarConfig is the workload's sidecar configuration that decides the call, as YAML.
	SidecarConfig(ctx context.Context, w Workload, c Call) (string, error)
}

// SidecarStatus is what a backend found of a workload's sidecar. Wording is left to
// narration (narrate.Sidecar).
type SidecarStatus struct {
	// Pod is the pod looked at, "namespace/name".
	Pod string
	// Injected: the pod runs istio-proxy (or, where no pod runs containers, would).
	Injected bool
	// Rule is the injection rule that decided, or why no sidecar was injected and the fix.
	Rule string
	// Proxy is what runs as the pod's proxy: the istio-proxy container and its image on a
	// cluster, a stand-in where no Envoy runs. "" when Injected is false.
	Proxy string
}

// Missing is the error of a pod without a sidecar, nil when it has one: a call from
// such a pod proves nothing about the mesh.
func (s SidecarStatus) Missing() error {
	if s.Injected {
		return nil
	}
	return fmt.Errorf("pod %s runs without an istio-proxy sidecar, so it proves nothing about the mesh: %s", s.Pod, s.Rule)
}

// AccessLogger is a backend whose sidecars write Envoy's access log: the line of a
// call names the upstream cluster the sidecar chose, evidence from the data plane
// itself rather than from the config it holds.
type AccessLogger interface {
	// AccessLogEntry is the workload's sidecar's access-log line for the call made at or
	// after since from the client address client (the call's own connection, as the
	// verdict's evidence has it: what Envoy logs as %DOWNSTREAM_REMOTE_ADDRESS%).
	AccessLogEntry(ctx context.Context, w Workload, c Call, client string, since time.Time) (AccessLogEntry, error)
}

// SidecarLog is a backend that can say what a workload's sidecar has written to its
// access log: kind reads the istio-proxy container's log; sim and local, where no proxy
// runs, keep the lines the sidecar would have written for each call made so far, as far
// as its config decides them (dataplane.AccessLogLines). `egresslab suggest` reads them,
// in the migrate lab.
type SidecarLog interface {
	// SidecarAccessLog is what w's sidecar wrote to its access log at or after since:
	// the lines of the calls made since then (and, on kind, the proxy's other output).
	SidecarAccessLog(ctx context.Context, w Workload, since time.Time) (string, error)
}

// Limited is a backend whose data plane cannot do all that Envoy does: a call whose
// verdict depends on what it cannot do is skipped there, with the reason, rather than
// judged on behaviour that is not Envoy's.
type Limited interface {
	// Cannot says why the backend's sidecars cannot do what Envoy does for need, ""
	// when they can.
	Cannot(need Need) string
}

// Need is an Envoy behaviour a call's verdict depends on.
type Need string

// TLSOrigination: the sidecar opens a TLS session to the upstream on the app's behalf
// (a cluster with a TLS transport socket), checking the upstream's certificate.
const TLSOrigination Need = "TLS origination"

// EgressGateway: the call is followed through an egress gateway's proxy, and judged
// by what that proxy matched.
const EgressGateway Need = "an egress gateway followed hop by hop"

// CannotDo is why b cannot do need, "" when it can (or does not say it cannot).
func CannotDo(b Backend, need Need) string {
	if l, ok := b.(Limited); ok {
		return l.Cannot(need)
	}
	return ""
}

// AccessLogEntry is one line of a proxy's access log: the line, and the fields a
// verdict is checked against (Istio's default format: the response code,
// %RESPONSE_FLAGS%, %RESPONSE_CODE_DETAILS% and %UPSTREAM_CLUSTER_RAW%, "-" when the
// proxy answered itself).
type AccessLogEntry struct {
	Line    string
	Status  int
	Flags   string
	Details string
	Cluster string
	// Gateway is the egress gateway's line for the same call, when the sidecar sent it
	// to one (found by the x-request-id both log); GatewayName names that gateway.
	Gateway     *AccessLogEntry
	GatewayName string
}

// Logged is the entry as what a proxy on the call's way logged of it.
func (e AccessLogEntry) Logged() outcome.Logged {
	return outcome.Logged{Status: e.Status, Flags: e.Flags, Details: e.Details, Cluster: e.Cluster}
}

// Mismatch says how the logs of a call differ from the clusters want names: the
// sidecar's line's cluster, and, for a call through an egress gateway, the gateway's
// line's; "" when they agree. A real call's verdict does not name a cluster, so on a
// backend whose proxies log, this is how the expectation's clusters are checked.
//
// A line flagged NC (the route names a cluster the proxy does not have) logs no
// cluster: Envoy records the upstream cluster only once it has found it. There the
// cluster the route names is config, which only sim and local read; the log is checked
// for the flag instead (the verdict's reason, cluster_not_found, comes from it).
//
// The proxy that answered a call itself logs how: block_all's 502 is a
// direct_response with no cluster, a route to a missing cluster is flagged NC. Those
// are checked too, so that every call whose expectation names a cluster or one of
// those answers has its line checked, not only its status.
func (e AccessLogEntry) Mismatch(want outcome.Expect) string {
	decided := e // the proxy whose answer want's reason names: the gateway, for a call through one
	if want.Gateway != nil {
		if e.Gateway == nil {
			return "no egress gateway logged the call"
		}
		decided = *e.Gateway
	}
	switch {
	case want.Reason == outcome.ReasonBlockAll && (decided.Details != "direct_response" || decided.Cluster != "-"):
		return fmt.Sprintf("the access log says %s with cluster %q; block_all answers with a direct_response and no cluster",
			decided.Details, decided.Cluster)
	case want.Reason == outcome.ReasonRBAC && (decided.Status != 403 || !strings.HasPrefix(decided.Details, outcome.RBACDetailsPrefix)):
		return fmt.Sprintf("the access log says %d %s; an RBAC denial is Envoy's 403 %s…]", decided.Status, decided.Details, outcome.RBACDetailsPrefix)
	case want.Reason == outcome.ReasonNoCluster && !decided.noCluster():
		return fmt.Sprintf("the access log's flags are %q; a route to a cluster the proxy lacks is flagged NC", decided.Flags)
	}
	if want.Cluster != "" && !e.noCluster() && e.Cluster != want.Cluster {
		return fmt.Sprintf("the sidecar's access log names cluster %q, want %q", e.Cluster, want.Cluster)
	}
	if want.Gateway != nil && want.Gateway.Cluster != "" && !e.Gateway.noCluster() && e.Gateway.Cluster != want.Gateway.Cluster {
		return fmt.Sprintf("the egress gateway's access log names cluster %q, want %q", e.Gateway.Cluster, want.Gateway.Cluster)
	}
	return ""
}

// noCluster: the line is flagged NC, and so names no cluster.
func (e AccessLogEntry) noCluster() bool {
	return slices.Contains(strings.Split(e.Flags, ","), "NC")
}

// ChecksLog says whether want names something only a proxy's access log shows of a
// real call: a cluster, of the sidecar or of the gateway, or an answer the proxy gave
// itself (block_all, NC, an RBAC denial).
func ChecksLog(want outcome.Expect) bool {
	return want.Cluster != "" || want.Gateway != nil || want.Reason == outcome.ReasonBlockAll || want.Reason == outcome.ReasonNoCluster ||
		want.Reason == outcome.ReasonRBAC
}

// Provider opens a backend for one test or one lab run. sim gives each a fresh, empty
// world; a cluster backend gives each the same cluster, set up once. The release
// Open returns gives back what it took (it does not tear down a shared cluster).
type Provider interface {
	Name() string
	Open(ctx context.Context) (b Backend, release func(), err error)
}

// Workload names the Deployment a call is made from.
type Workload struct {
	Namespace string
	Name      string
}

func (w Workload) String() string { return w.Namespace + "/" + w.Name }

// Call is one request the client makes.
type Call struct {
	URL *url.URL
	// Address, when set, is the IP address the app connects to instead of the one DNS
	// gives the URL's host, as curl's --resolve: the Host header and the SNI are still
	// the URL's. A sidecar matches the connection by this address (a ServiceEntry's
	// addresses, a company proxy at its IP).
	Address string
	// Proxy, when set, is the HTTP proxy the app sends the call through, as HTTPS_PROXY
	// or curl's --proxy: the app connects to the proxy and asks it with CONNECT for a
	// tunnel to the URL's host and port. Its sidecar sees a connection to the proxy,
	// never one to the URL's host. Only an https:// call goes through one.
	Proxy *url.URL
	// Method is the HTTP request's method, "" for GET (curl's -X). A sidecar routes by
	// host and port whatever the method; an AuthorizationPolicy may allow one method and
	// not another.
	Method string
}

// Using is the call made with the HTTP method m (GET, POST, …; upper case, as an
// AuthorizationPolicy's methods and Envoy's :method are): an http:// or https:// call only.
func (c Call) Using(m string) (Call, error) {
	if c.TCP() {
		return Call{}, fmt.Errorf("call %s with method %s: a TCP connection carries no HTTP request", c, m)
	}
	if err := observe.CheckMethod(m); err != nil {
		return Call{}, err
	}
	if m == http.MethodGet {
		m = ""
	}
	c.Method = m
	return c, nil
}

// RequestMethod is the HTTP method the call's request is made with.
func (c Call) RequestMethod() string {
	if c.Method == "" {
		return http.MethodGet
	}
	return c.Method
}

// Through is the call sent through the HTTP proxy at raw (http://HOST:PORT), by the
// rule the client app reads its --proxy with (observe.ProxyURL): one rule for both.
func (c Call) Through(raw string) (Call, error) {
	if c.Address != "" {
		return Call{}, addressAndProxy(c, raw)
	}
	u, err := observe.ProxyURL(raw, c.URL.String())
	if err != nil {
		return Call{}, err
	}
	c.Proxy = u
	return c, nil
}

// addressAndProxy is the error of a call given both an address and a proxy, in either
// order.
func addressAndProxy(c Call, proxy string) error {
	return fmt.Errorf("call %s through proxy %s: the app connects to the proxy, so it names no address of its own", c, proxy)
}

// Dialed is the host and port the app's connection goes to: the proxy's, for a call
// through one, else the URL's.
func (c Call) Dialed() (host string, port int) {
	if c.Proxy != nil {
		port, _ = strconv.Atoi(c.Proxy.Port())
		return c.Proxy.Hostname(), port
	}
	return c.Host(), c.Port()
}

// At is the call made to addr, an IP address, whatever the URL's host resolves to.
func (c Call) At(addr string) (Call, error) {
	if c.Proxy != nil {
		return Call{}, addressAndProxy(c, c.Proxy.String())
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return Call{}, fmt.Errorf("address %q is not an IP address, e.g. 10.20.30.40", addr)
	}
	c.Address = ip.String()
	return c, nil
}

// ParseCall reads an http:// or https:// URL, or a tcp://HOST:PORT one: a plain TCP
// connection (a database's or a broker's), on which the client speaks first and the
// sidecar can read nothing but the address and port.
func ParseCall(raw string) (Call, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Call{}, fmt.Errorf("call %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tcp" {
		return Call{}, fmt.Errorf("call %q: scheme must be http, https or tcp, e.g. http://api.example.com/v1 or tcp://db.example.com:5432", raw)
	}
	if u.Hostname() == "" {
		return Call{}, fmt.Errorf("call %q: no host, e.g. http://api.example.com/v1", raw)
	}
	if u.Scheme == "tcp" {
		// By the rule the client app reads its URL with: one rule for both.
		if _, err := observe.TCPAddress(raw); err != nil {
			return Call{}, fmt.Errorf("call: %w", err)
		}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Call{}, fmt.Errorf("call %q: port %q is not a number from 1 to 65535", raw, p)
		}
	}
	return Call{URL: u}, nil
}

// MustCall is ParseCall for URLs written in code.
func MustCall(raw string) Call {
	c, err := ParseCall(raw)
	if err != nil {
		panic(err)
	}
	return c
}

// String is the URL as messages show it: a password in it is shown as xxxxx.
func (c Call) String() string { return c.URL.Redacted() }

// Host is the host name, without port.
func (c Call) Host() string { return c.URL.Hostname() }

// HTTPS reports whether the call is made over TLS.
func (c Call) HTTPS() bool { return c.URL.Scheme == "https" }

// TCP reports whether the call is a plain TCP connection (tcp://), not HTTP.
func (c Call) TCP() bool { return c.URL.Scheme == "tcp" }

// Port is the destination port, the scheme's default when the URL names none.
func (c Call) Port() int {
	if p := c.URL.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if c.HTTPS() {
		return 443
	}
	return 80
}

// HostPort is "host:port".
func (c Call) HostPort() string { return net.JoinHostPort(c.Host(), strconv.Itoa(c.Port())) }

// Path is the request path, "/" when empty.
func (c Call) Path() string {
	if p := c.URL.RequestURI(); p != "" {
		return p
	}
	return "/"
}

// KubectlCommand is what an attendee types to make this call on a real cluster.
func (c Call) KubectlCommand(w Workload) string {
	return fmt.Sprintf("kubectl -n %s exec deploy/%s -c %s -- client call %s", w.Namespace, w.Name, w.Name, strings.Join(c.ClientArgs(), " "))
}

// ClientArgs are the arguments of the client app's `call` command (apps/client) that
// make this call: the URL, after --address or --proxy when the call names one.
func (c Call) ClientArgs() []string {
	var args []string
	if c.Method != "" {
		args = append(args, "--method="+c.Method)
	}
	switch {
	case c.Address != "":
		args = append(args, "--address="+c.Address)
	case c.Proxy != nil:
		args = append(args, "--proxy="+c.Proxy.String())
	}
	return append(args, c.URL.String())
}

// Typed is implemented by backends on a real cluster, where a person could type a
// handout's kubectl and helm commands: the handouts' by-hand test runs them there.
type Typed interface {
	// TypedAt is how those commands reach the cluster.
	TypedAt() TypedTarget
}

// TypedTarget is what a handout's commands need besides the handout: the cluster's
// kubeconfig, and the Helm chart repository that holds Istio's charts (Istio's own, a
// company's mirror, or a workshop bundle's server on this machine), which replaces the
// one URL a handout names for them.
type TypedTarget struct {
	Kubeconfig string
	ChartRepo  string
}

// Instant is implemented by backends whose changes are seen by the very next call, as
// on sim: there is nothing to wait for, so Await calls once instead of polling.
type Instant interface{ Instant() bool }

// Waited is how long Await waited for a verdict, and to within how much: the poll
// interval before the call that saw it (0 when the first call did).
type Waited struct {
	Took       time.Duration
	Resolution time.Duration
}

// Await makes the call until its verdict is want, or until timeout. Configuration takes
// time to reach a real sidecar; on sim the first call already sees it. It polls every
// 20ms at first and backs off to 1s, so a push that arrives quickly is measured to
// within tens of milliseconds, not to the second. It returns the last verdict and how
// long the wait took.
func Await(ctx context.Context, b Backend, w Workload, c Call, want outcome.Kind, timeout time.Duration) (outcome.Verdict, Waited, error) {
	return awaitUntil(ctx, b, w, c, string(want), func(v outcome.Verdict, _ time.Time) bool { return v.Kind == want }, timeout)
}

// AwaitExpected is Await until the verdict meets want in full: its kind, and its reason
// and evidence where want names them. A change that keeps the kind but moves the matched
// cluster (an entry deleted under ALLOW_ANY: still allowed, now through
// PassthroughCluster) reaches a real sidecar later too, and an earlier call would judge
// the config from before it. A real call's verdict does not name the cluster (allowed
// through PassthroughCluster looks like allowed through an entry), so on a backend whose
// sidecars write an access log the call's line must name want's cluster as well.
func AwaitExpected(ctx context.Context, b Backend, w Workload, c Call, want outcome.Expect, timeout time.Duration) (outcome.Verdict, Waited, error) {
	return awaitUntil(ctx, b, w, c, fmt.Sprintf("%+v", want), func(v outcome.Verdict, sent time.Time) bool {
		if len(want.Check(v)) > 0 {
			return false
		}
		al, logs := b.(AccessLogger)
		if !logs || !ChecksLog(want) || !v.Evidence.FromCall {
			return true
		}
		e, err := al.AccessLogEntry(ctx, w, c, v.Evidence.ClientAddress, sent)
		return err == nil && e.Mismatch(want) == ""
	}, timeout)
}

// awaitUntil calls until ok says the verdict of a call sent at a time is the one wanted.
func awaitUntil(ctx context.Context, b Backend, w Workload, c Call, want string, ok func(v outcome.Verdict, sent time.Time) bool, timeout time.Duration) (outcome.Verdict, Waited, error) {
	start := time.Now()
	if i, isInstant := b.(Instant); isInstant && i.Instant() {
		v, err := b.Call(ctx, w, c)
		if err == nil && !ok(v, start) {
			err = fmt.Errorf("call %s: %s, want %s", c, v, want)
		}
		return v, Waited{Took: time.Since(start)}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var interval time.Duration
	for {
		sent := time.Now()
		v, err := b.Call(ctx, w, c)
		if err == nil && ok(v, sent) {
			return v, Waited{Took: time.Since(start), Resolution: interval}, nil
		}
		interval = nextPoll(interval)
		select {
		case <-ctx.Done():
			waited := Waited{Took: time.Since(start), Resolution: interval}
			if err != nil {
				return v, waited, fmt.Errorf("call %s: not %s after %s: %w", c, want, timeout, err)
			}
			return v, waited, fmt.Errorf("call %s: still %s after %s, want %s", c, v, timeout, want)
		case <-time.After(interval):
		}
	}
}

// nextPoll grows the poll interval by half, from firstPoll up to maxPoll.
func nextPoll(d time.Duration) time.Duration {
	if d == 0 {
		return firstPoll
	}
	return min(d+d/2, maxPoll)
}

// Lifecycle is implemented by providers that set up shared infrastructure once per run
// (a cluster, Istio, the client image) and take it down at the end. The scenarios'
// TestMain hands these to e2e-framework as its Setup and Finish funcs.
type Lifecycle interface {
	Setup(ctx context.Context) (context.Context, error)
	Finish(ctx context.Context) (context.Context, error)
}
