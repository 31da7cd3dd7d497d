package accesslog

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	file "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
)

// envoyDefaultFormat is Envoy's own format for a file access log that sets none.
const envoyDefaultFormat = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" " +
	"%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% " +
	"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" " +
	"\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"

// Entry is what one access-log line can say about a request or a connection: the
// stand-in for Envoy's process fills it from a real exchange; sim and local fill what
// the config decides (Simulated) and nothing else. Render writes it in an access log's
// format, one copy of Envoy's command operators for both.
type Entry struct {
	Start                             time.Time
	Req                               *http.Request
	Code                              int
	Flags, Details                    string
	BytesIn, BytesOut                 int64
	UpstreamTime                      string
	UpstreamHost, Cluster             string
	UpstreamLocal                     string
	DownstreamLocal, DownstreamRemote string
	SNI, Route                        string
	// Simulated: no exchange happened, only the config was asked (sim, local). What only
	// an exchange gives (the response code, bytes, duration, the upstream's address, the
	// request id) is "-": such a line never says more than was known.
	Simulated bool
}

var operator = regexp.MustCompile(`%([A-Z_]+)(\(([^)]*)\))?(:[0-9]+)?%`)

// exchanged are the operators only a real exchange fills.
var exchanged = map[string]bool{
	"RESPONSE_CODE": true, "BYTES_RECEIVED": true, "BYTES_SENT": true, "DURATION": true, "RESP": true,
	"UPSTREAM_HOST": true, "UPSTREAM_LOCAL_ADDRESS": true,
}

// value is one command operator of Envoy's access-log format; one the stand-in does
// not know is "-".
func (e *Entry) value(op, arg string) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	if e.Simulated && (exchanged[op] || (op == "REQ" && strings.EqualFold(arg, "X-REQUEST-ID"))) {
		return "-"
	}
	switch op {
	case "START_TIME":
		return e.Start.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ", "REQ_WITHOUT_QUERY":
		if e.Req == nil {
			return "-"
		}
		for _, h := range strings.Split(arg, "?") {
			if v := e.header(h); v != "" {
				if op == "REQ_WITHOUT_QUERY" {
					v, _, _ = strings.Cut(v, "?")
				}
				return v
			}
		}
		return "-"
	case "RESP":
		if strings.EqualFold(arg, "X-ENVOY-UPSTREAM-SERVICE-TIME") {
			return dash(e.UpstreamTime)
		}
		return "-"
	case "PROTOCOL":
		if e.Req == nil {
			return "-"
		}
		return e.Req.Proto
	case "RESPONSE_CODE":
		return strconv.Itoa(e.Code)
	case "RESPONSE_FLAGS":
		return dash(e.Flags)
	case "RESPONSE_CODE_DETAILS":
		return dash(e.Details)
	case "BYTES_RECEIVED":
		return strconv.FormatInt(e.BytesIn, 10)
	case "BYTES_SENT":
		return strconv.FormatInt(e.BytesOut, 10)
	case "DURATION":
		return strconv.FormatInt(time.Since(e.Start).Milliseconds(), 10)
	case "UPSTREAM_HOST":
		return dash(e.UpstreamHost)
	case "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW":
		return dash(e.Cluster)
	case "UPSTREAM_LOCAL_ADDRESS":
		return dash(e.UpstreamLocal)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return dash(e.DownstreamLocal)
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return dash(e.DownstreamRemote)
	case "REQUESTED_SERVER_NAME":
		return dash(e.SNI)
	case "ROUTE_NAME":
		return dash(e.Route)
	}
	return "-"
}

func (e *Entry) header(name string) string {
	switch strings.ToUpper(name) {
	case ":METHOD":
		return e.Req.Method
	case ":PATH":
		return e.Req.URL.RequestURI()
	case ":AUTHORITY":
		return e.Req.Host
	}
	return e.Req.Header.Get(name)
}

// format renders a text format.
func (e *Entry) format(f string) string {
	return operator.ReplaceAllStringFunc(f, func(m string) string {
		s := operator.FindStringSubmatch(m)
		return e.value(s[1], s[3])
	})
}

// Render is the entry as the file access log fal writes it: in its JSON or text format,
// Envoy's default where it sets none. Access-log filters are not read.
func (e *Entry) Render(fal *file.FileAccessLog) string {
	switch {
	case fal.GetLogFormat().GetJsonFormat() != nil:
		obj := map[string]any{}
		for k, v := range fal.GetLogFormat().GetJsonFormat().AsMap() {
			if s, ok := v.(string); ok {
				obj[k] = e.format(s)
			}
		}
		raw, _ := json.Marshal(obj)
		return string(raw) + "\n"
	case fal.GetLogFormat().GetTextFormatSource().GetInlineString() != "":
		return e.format(fal.GetLogFormat().GetTextFormatSource().GetInlineString())
	case fal.GetFormat() != "":
		return e.format(fal.GetFormat())
	}
	return e.format(envoyDefaultFormat)
}
