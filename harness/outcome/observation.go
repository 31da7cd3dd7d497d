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
// `client call URL` prints. The cluster backends classify it into a Verdict.
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
}

// Classify turns a real call's observation into a verdict.
//
// The rules follow what an Istio sidecar does under REGISTRY_ONLY: it answers a 502
// itself (server: envoy, no upstream time) from the block_all virtual host, or resets
// the connection through BlackHoleCluster. Anything that failed in another way (DNS,
// refused, timeout, TLS) is Unreachable, never Blocked: the mesh is not the only thing
// that can make a call fail, and blaming it would teach the wrong lesson.
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
	}
	answeredByEnvoy := strings.EqualFold(o.Server, "envoy") && o.UpstreamServiceTime == ""
	switch {
	case o.ErrorClass == ErrReset:
		return Verdict{Kind: Blocked, Reason: ReasonBlackHole, Evidence: ev}
	case o.ErrorClass != ErrNone:
		return Verdict{Kind: Unreachable, Reason: string(o.ErrorClass), Evidence: ev}
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
