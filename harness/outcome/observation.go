package outcome

import (
	"strings"
	"time"
)

// ErrorClass names the way a real call failed, as the client app reports it.
type ErrorClass string

const (
	ErrNone    ErrorClass = ""
	ErrReset   ErrorClass = "reset"
	ErrRefused ErrorClass = "refused"
	ErrDNS     ErrorClass = "dns"
	ErrTimeout ErrorClass = "timeout"
	ErrTLS     ErrorClass = "tls"
	ErrOther   ErrorClass = "other"
)

// Observation is what the client app saw of one real call: the JSON line that
// `client call URL` prints. The cluster backends classify it into a Verdict. A TCP
// call's (see IsTCP) has no status, headers or request id: its BodyPrefix is the reply.
type Observation struct {
	URL                 string     `json:"url"`
	Status              int        `json:"status,omitempty"`
	Server              string     `json:"server,omitempty"`
	UpstreamServiceTime string     `json:"upstreamServiceTime,omitempty"`
	BodyPrefix          string     `json:"body,omitempty"`
	ErrorClass          ErrorClass `json:"errorClass,omitempty"`
	Error               string     `json:"error,omitempty"`
	DurationMillis      int64      `json:"durationMs"`
	// ClientAddress is the local address and port of the call's connection, which the
	// sidecar logs as %DOWNSTREAM_REMOTE_ADDRESS%.
	ClientAddress string `json:"clientAddress,omitempty"`
	// RequestID is the x-request-id the client sent, which every proxy on the way logs.
	RequestID string `json:"requestId,omitempty"`
}

// IsTCP says whether url is a plain TCP call's, tcp://HOST:PORT: one exchange of bytes
// with no HTTP around it.
func IsTCP(url string) bool {
	scheme, _, ok := strings.Cut(url, "://")
	return ok && strings.EqualFold(scheme, "tcp")
}

// Classify turns a real call's observation into a verdict.
//
// The rules follow what an Istio sidecar does under REGISTRY_ONLY: it answers a 502
// itself (server: envoy, no upstream time) from the block_all virtual host, or resets
// the connection through BlackHoleCluster. Anything that failed in another way (DNS,
// refused, timeout, TLS) is Unreachable, never Blocked: the mesh is not the only thing
// that can make a call fail, and blaming it would teach the wrong lesson. A TCP call
// has no status: Envoy cannot answer one itself, so any byte back is the upstream's.
func Classify(o Observation) Verdict {
	ev := Evidence{
		FromCall:            true,
		Status:              o.Status,
		Server:              o.Server,
		UpstreamServiceTime: o.UpstreamServiceTime,
		ErrorClass:          o.ErrorClass,
		Error:               o.Error,
		Duration:            time.Duration(o.DurationMillis) * time.Millisecond,
		BodyPrefix:          o.BodyPrefix,
		ClientAddress:       o.ClientAddress,
		RequestID:           o.RequestID,
	}
	answeredByEnvoy := strings.EqualFold(o.Server, "envoy") && o.UpstreamServiceTime == ""
	switch {
	case o.ErrorClass == ErrReset:
		return Verdict{Kind: Blocked, Reason: ReasonBlackHole, Evidence: ev}
	case o.ErrorClass != ErrNone:
		return Verdict{Kind: Unreachable, Reason: string(o.ErrorClass), Evidence: ev}
	case IsTCP(o.URL) && o.BodyPrefix != "":
		return Verdict{Kind: Allowed, Reason: ReasonUpstream, Evidence: ev}
	case IsTCP(o.URL):
		return Verdict{Kind: Unreachable, Reason: "no response", Evidence: ev}
	case answeredByEnvoy && o.Status == 403 && strings.HasPrefix(o.BodyPrefix, RBACDeniedBody):
		// Envoy's own 403 for an RBAC denial. One that came back from an upstream (an
		// egress gateway, or any server at all) is that upstream's answer until the
		// gateway's access log says its RBAC filter gave it (AtGateway).
		return Verdict{Kind: Denied, Reason: ReasonRBAC, Evidence: ev}
	case answeredByEnvoy && o.Status == 502:
		return Verdict{Kind: Blocked, Reason: ReasonBlockAll, Evidence: ev}
	case answeredByEnvoy && o.Status == 404:
		return Verdict{Kind: Blocked, Reason: ReasonNoRoute, Evidence: ev}
	case answeredByEnvoy && o.Status >= 500:
		// 503 "no healthy upstream" and friends: the sidecar tried, the upstream was not there.
		return Verdict{Kind: Unreachable, Reason: "sidecar found no healthy upstream", Evidence: ev}
	case o.Status == 0:
		return Verdict{Kind: Unreachable, Reason: "no response", Evidence: ev}
	default:
		return Verdict{Kind: Allowed, Reason: ReasonUpstream, Evidence: ev}
	}
}

// Logged is what a proxy further on the call's way (an egress gateway) logged of it:
// its access-log line's response code, %RESPONSE_FLAGS%, %RESPONSE_CODE_DETAILS% and
// %UPSTREAM_CLUSTER_RAW%.
type Logged struct {
	Status  int
	Flags   string
	Details string
	Cluster string
}

// NextHopDecides says whether a real call's verdict may hide the decision of a proxy
// further on its way: the sidecar reached an upstream (x-envoy-upstream-service-time)
// that answered 5xx. When that upstream is an egress gateway, the 503 may be the
// gateway's own (no cluster for the host there), which only its log tells.
//
// So is any 4xx: a 403 may be the gateway's RBAC denial, which only the gateway's log
// tells from an upstream's 403 (and says which policy).
func NextHopDecides(v Verdict) bool {
	return v.Kind == Allowed && v.Evidence.FromCall && v.Evidence.Status >= 400 && v.Evidence.UpstreamServiceTime != ""
}

// RBACDetailsPrefix begins Envoy's %RESPONSE_CODE_DETAILS% for a request its RBAC filter
// denied: rbac_access_denied_matched_policy[POLICY], POLICY the DENY policy that
// matched or none (Envoy's docs, config/http/http_filters/rbac_filter).
const RBACDetailsPrefix = "rbac_access_denied_matched_policy["

// AtGateway judges a call the client's sidecar sent to an egress gateway by what the
// gateway logged, as sim judges it by what the gateway's config matched: the gateway's
// own answers are blocks (503 NC: its route names a cluster it does not have, nothing
// registers the host; 404 NR; block_all's 502), a failed upstream is unreachable, and
// anything else is the upstream's answer. The client saw one answer; the gateway's line
// says who gave it. sidecar is the client's sidecar's line, which names the gateway's
// cluster.
func AtGateway(v Verdict, sidecar Logged, gateway string, h Logged) Verdict {
	ev := v.Evidence
	ev.Cluster, ev.GatewayName = sidecar.Cluster, gateway
	ev.Gateway = &Evidence{FromCall: true, Cluster: h.Cluster, Status: h.Status, Details: h.Details}
	flags := strings.Split(h.Flags, ",")
	has := func(f string) bool {
		for _, x := range flags {
			if x == f {
				return true
			}
		}
		return false
	}
	switch {
	case h.Status == 403 && strings.HasPrefix(h.Details, RBACDetailsPrefix):
		return Verdict{Kind: Denied, Reason: ReasonRBAC, Evidence: ev}
	case has("NC"):
		return Verdict{Kind: Blocked, Reason: ReasonNoCluster, Evidence: ev}
	case has("NR"):
		return Verdict{Kind: Blocked, Reason: ReasonNoRoute, Evidence: ev}
	case h.Details == "direct_response" && h.Status == 502:
		return Verdict{Kind: Blocked, Reason: ReasonBlockAll, Evidence: ev}
	case has("UH") || has("UF") || has("URX") || has("UO"):
		return Verdict{Kind: Unreachable, Reason: "the egress gateway found no healthy upstream", Evidence: ev}
	}
	return Verdict{Kind: v.Kind, Reason: v.Reason, Evidence: ev}
}
