// Package accesslog splits a line of Istio's default access-log format, TEXT encoding
// (model.EnvoyTextLogFormat in istio.io/istio/pilot/pkg/model/telemetry_logging.go),
// into its fields, and names the fields by their place. The kind backend reads a call's
// line with it and `egresslab suggest` reads whole logs: one splitter and one table of
// places, so that both read the format the same way. Entry is the other direction: what
// one line says, rendered in an access log's format by Envoy's command operators, for
// the stand-in for Envoy's process and for the lines sim and local say a sidecar would
// write.
package accesslog

import "strings"

// The places of the fields of Istio's default TEXT format, counting a quoted string as
// one field (unquoted by Fields). Operators names the operator Istio writes in each.
const (
	StartTime           = 0
	Request             = 1 // "METHOD PATH PROTOCOL"; "- - -" for a TCP connection
	Code                = 2
	Flags               = 3
	Details             = 4
	TerminationDetails  = 5
	TransportFailure    = 6
	BytesReceived       = 7
	BytesSent           = 8
	Duration            = 9
	UpstreamServiceTime = 10
	ForwardedFor        = 11
	UserAgent           = 12
	RequestID           = 13
	Authority           = 14 // the Host, where an HTTP listener read the request
	UpstreamHost        = 15 // the address the proxy connected to
	Cluster             = 16
	UpstreamLocal       = 17 // the proxy's own end of that connection
	DownstreamLocal     = 18 // where the call was going: a sidecar's original destination
	DownstreamRemote    = 19 // the app's own address and port
	SNI                 = 20 // only where a TLS inspector read the ClientHello
	Route               = 21

	// NumFields is how many fields a whole line of the format has.
	NumFields = 22
)

// Operators are Envoy's command operators in each place, as Istio's format writes them
// (TestThePlacesAreIstios holds them to model.EnvoyTextLogFormat): what a message
// names a field by.
var Operators = [NumFields]string{
	StartTime:           "%START_TIME%",
	Request:             "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%",
	Code:                "%RESPONSE_CODE%",
	Flags:               "%RESPONSE_FLAGS%",
	Details:             "%RESPONSE_CODE_DETAILS%",
	TerminationDetails:  "%CONNECTION_TERMINATION_DETAILS%",
	TransportFailure:    "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	BytesReceived:       "%BYTES_RECEIVED%",
	BytesSent:           "%BYTES_SENT%",
	Duration:            "%DURATION%",
	UpstreamServiceTime: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	ForwardedFor:        "%REQ(X-FORWARDED-FOR)%",
	UserAgent:           "%REQ(USER-AGENT)%",
	RequestID:           "%REQ(X-REQUEST-ID)%",
	Authority:           "%REQ(:AUTHORITY)%",
	UpstreamHost:        "%UPSTREAM_HOST%",
	Cluster:             "%UPSTREAM_CLUSTER_RAW%",
	UpstreamLocal:       "%UPSTREAM_LOCAL_ADDRESS%",
	DownstreamLocal:     "%DOWNSTREAM_LOCAL_ADDRESS%",
	DownstreamRemote:    "%DOWNSTREAM_REMOTE_ADDRESS%",
	SNI:                 "%REQUESTED_SERVER_NAME%",
	Route:               "%ROUTE_NAME%",
}

// Fields splits a line on spaces, keeping each quoted string as one field, unquoted. A
// quote that is never closed ends the line: its field is the rest of the line.
func Fields(line string) []string {
	return AppendFields(nil, line)
}

// AppendFields is Fields appending to dst, for a reader of many lines that reuses one
// slice (dst[:0]).
func AppendFields(dst []string, line string) []string {
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return append(dst, line[1:])
			}
			dst = append(dst, line[1:end+1])
			line = line[end+2:]
			continue
		}
		end := strings.IndexByte(line, ' ')
		if end < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:end])
		line = line[end:]
	}
	return dst
}
