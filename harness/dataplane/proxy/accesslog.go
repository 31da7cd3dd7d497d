package proxy

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	file "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
)

// envoyDefaultFormat is Envoy's own format for a file access log that sets none.
const envoyDefaultFormat = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" " +
	"%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% " +
	"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" " +
	"\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"

// logEntry is what one access-log line can say about a request or a connection.
type logEntry struct {
	start                             time.Time
	req                               *http.Request
	code                              int
	flags, details                    string
	bytesIn, bytesOut                 int64
	upstreamTime                      string
	upstreamHost, cluster             string
	upstreamLocal                     string
	downstreamLocal, downstreamRemote string
	sni, route                        string
}

var operator = regexp.MustCompile(`%([A-Z_]+)(\(([^)]*)\))?(:[0-9]+)?%`)

// value is one command operator of Envoy's access-log format; one the stand-in does
// not know is "-".
func (e *logEntry) value(op, arg string) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	switch op {
	case "START_TIME":
		return e.start.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ", "REQ_WITHOUT_QUERY":
		if e.req == nil {
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
			return dash(e.upstreamTime)
		}
		return "-"
	case "PROTOCOL":
		if e.req == nil {
			return "-"
		}
		return e.req.Proto
	case "RESPONSE_CODE":
		return strconv.Itoa(e.code)
	case "RESPONSE_FLAGS":
		return dash(e.flags)
	case "RESPONSE_CODE_DETAILS":
		return dash(e.details)
	case "BYTES_RECEIVED":
		return strconv.FormatInt(e.bytesIn, 10)
	case "BYTES_SENT":
		return strconv.FormatInt(e.bytesOut, 10)
	case "DURATION":
		return strconv.FormatInt(time.Since(e.start).Milliseconds(), 10)
	case "UPSTREAM_HOST":
		return dash(e.upstreamHost)
	case "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW":
		return dash(e.cluster)
	case "UPSTREAM_LOCAL_ADDRESS":
		return dash(e.upstreamLocal)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return dash(e.downstreamLocal)
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return dash(e.downstreamRemote)
	case "REQUESTED_SERVER_NAME":
		return dash(e.sni)
	case "ROUTE_NAME":
		return dash(e.route)
	}
	return "-"
}

func (e *logEntry) header(name string) string {
	switch strings.ToUpper(name) {
	case ":METHOD":
		return e.req.Method
	case ":PATH":
		return e.req.URL.RequestURI()
	case ":AUTHORITY":
		return e.req.Host
	}
	return e.req.Header.Get(name)
}

// format renders a text format.
func (e *logEntry) format(f string) string {
	return operator.ReplaceAllStringFunc(f, func(m string) string {
		s := operator.FindStringSubmatch(m)
		return e.value(s[1], s[3])
	})
}

// writeAccessLogs writes the entry to each file access log the config names, in its
// text or JSON format. Access-log filters are not read: every entry is written.
func (p *Process) writeAccessLogs(logs []*accesslog.AccessLog, e *logEntry) {
	for _, l := range logs {
		fal := &file.FileAccessLog{}
		if l.GetTypedConfig().UnmarshalTo(fal) != nil {
			continue
		}
		var line string
		switch {
		case fal.GetLogFormat().GetJsonFormat() != nil:
			obj := map[string]any{}
			for k, v := range fal.GetLogFormat().GetJsonFormat().AsMap() {
				if s, ok := v.(string); ok {
					obj[k] = e.format(s)
				}
			}
			raw, _ := json.Marshal(obj)
			line = string(raw) + "\n"
		case fal.GetLogFormat().GetTextFormatSource().GetInlineString() != "":
			line = e.format(fal.GetLogFormat().GetTextFormatSource().GetInlineString())
		case fal.GetFormat() != "":
			line = e.format(fal.GetFormat())
		default:
			line = e.format(envoyDefaultFormat)
		}
		w, done, err := p.accessLogWriter(fal.GetPath())
		if err != nil {
			p.logf("warning", "access log %s: %v", fal.GetPath(), err)
			continue
		}
		p.logMu.Lock()
		_, _ = w.Write([]byte(line))
		p.logMu.Unlock()
		done()
	}
}
