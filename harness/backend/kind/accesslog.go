package kind

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egresslab/egresslab/harness/backend"
)

// accessLogWait covers Envoy's access-log flush interval (pilot-agent starts Envoy
// with --file-flush-interval-msec 1000) and the kubelet's log pickup.
const accessLogWait = 5 * time.Second

// AccessLogEntry finds the call's line in istio-proxy's log (the mesh config's
// accessLogFile /dev/stdout), in Istio's default text format.
func (b *Backend) AccessLogEntry(ctx context.Context, w backend.Workload, c backend.Call, client string, since time.Time) (backend.AccessLogEntry, error) {
	pod, err := b.currentPod(ctx, w)
	if err != nil {
		return backend.AccessLogEntry{}, err
	}
	deadline := time.Now().Add(accessLogWait)
	st := metav1.NewTime(since.Add(-time.Second)) // the API's SinceTime has whole seconds
	for {
		raw, err := b.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
			Container: "istio-proxy", SinceTime: &st}).DoRaw(ctx)
		if err != nil {
			return backend.AccessLogEntry{}, fmt.Errorf("read istio-proxy's log in pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		if e, ok := LastAccessLogEntry(string(raw), c, client); ok {
			return e, nil
		}
		if time.Now().After(deadline) {
			return backend.AccessLogEntry{}, fmt.Errorf("no access-log line for %s from %s in istio-proxy's log of pod %s/%s since %s "+
				"(is meshConfig.accessLogFile set, in the default TEXT encoding?)", c, orUnknown(client), pod.Namespace, pod.Name, since.Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return backend.AccessLogEntry{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// The fields of Istio's default access-log format (model.EnvoyTextLogFormat), counting
// a quoted string as one field.
const (
	fieldRequest    = 1  // "METHOD PATH PROTOCOL"
	fieldAuthority  = 14 // "%REQ(:AUTHORITY)%"
	fieldCluster    = 16 // %UPSTREAM_CLUSTER_RAW%
	fieldDownstream = 18 // %DOWNSTREAM_LOCAL_ADDRESS%: where the call was going
	fieldRemote     = 19 // %DOWNSTREAM_REMOTE_ADDRESS%: the app's own address and port
	fieldSNI        = 20 // %REQUESTED_SERVER_NAME%
	accessLogFields = 22
)

// LastAccessLogEntry is the last line of log that records c, a connection to its port
// from client (the app's address and port of the call's connection). Envoy logs that
// address on every line, %DOWNSTREAM_REMOTE_ADDRESS%, whatever listener took the
// connection; the SNI it logs only where a TLS inspector ran (not on virtualOutbound's
// catch-all), and a request's host and path only where an HTTP listener read them.
//
// Without a client address (a client that does not report it), it falls back to what the
// line shows of the call: an HTTP request for its host and path; for HTTPS, a TCP line
// with its host as SNI or none; for plain HTTP on a port where the sidecar has no HTTP
// listener, a TCP line without SNI. Then an earlier call to the same port can match.
func LastAccessLogEntry(log string, c backend.Call, client string) (backend.AccessLogEntry, bool) {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	port := ":" + strconv.Itoa(c.Port())
	for i := len(lines) - 1; i >= 0; i-- {
		f := logFields(lines[i])
		if len(f) < accessLogFields || !strings.HasPrefix(f[0], "[") || !strings.HasSuffix(f[fieldDownstream], port) {
			continue
		}
		var match bool
		switch tcp := f[fieldRequest] == "- - -"; {
		case client != "":
			match = f[fieldRemote] == client
		case c.HTTPS():
			match = tcp && (f[fieldSNI] == c.Host() || f[fieldSNI] == "-")
		case tcp:
			match = f[fieldSNI] == "-"
		default:
			authority := strings.TrimSuffix(f[fieldAuthority], port)
			match = authority == c.Host() && strings.Contains(f[fieldRequest], " "+c.Path()+" ")
		}
		if match {
			return backend.AccessLogEntry{Line: lines[i], Cluster: f[fieldCluster]}, true
		}
	}
	return backend.AccessLogEntry{}, false
}

func orUnknown(client string) string {
	if client == "" {
		return "an unknown client address"
	}
	return client
}

// logFields splits a line on spaces, keeping each quoted string as one field, unquoted.
func logFields(line string) []string {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return append(out, line[1:])
			}
			out = append(out, line[1:end+1])
			line = line[end+2:]
			continue
		}
		end := strings.IndexByte(line, ' ')
		if end < 0 {
			return append(out, line)
		}
		out = append(out, line[:end])
		line = line[end:]
	}
	return out
}

var _ backend.AccessLogger = (*Backend)(nil)
