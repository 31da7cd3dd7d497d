package proxy

import (
	envoylog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	file "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"

	"github.com/egresslab/egresslab/harness/accesslog"
)

// logEntry is what one access-log line can say about a request or a connection.
type logEntry = accesslog.Entry

// writeAccessLogs writes the entry to each file access log the config names, in its
// text or JSON format. Access-log filters are not read: every entry is written.
func (p *Process) writeAccessLogs(logs []*envoylog.AccessLog, e *logEntry) {
	for _, l := range logs {
		fal := &file.FileAccessLog{}
		if l.GetTypedConfig().UnmarshalTo(fal) != nil {
			continue
		}
		line := e.Render(fal)
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
