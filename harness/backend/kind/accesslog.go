package kind

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/egresslab/egresslab/harness/accesslog"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
)

// accessLogWait covers Envoy's access-log flush interval (pilot-agent starts Envoy
// with --file-flush-interval-msec 1000) and the kubelet's log pickup.
const accessLogWait = 5 * time.Second

// AccessLogEntry finds the call's line in istio-proxy's log (the mesh config's
// accessLogFile /dev/stdout), in Istio's default text format. When the line's cluster
// is an egress gateway's Service, the gateway's line for the same call (the one with
// the x-request-id the sidecar's line logs) comes with it.
func (b *Backend) AccessLogEntry(ctx context.Context, w backend.Workload, c backend.Call, client string, since time.Time) (backend.AccessLogEntry, error) {
	pod, err := b.currentPod(ctx, w)
	if err != nil {
		return backend.AccessLogEntry{}, err
	}
	e, err := b.findLogLine(ctx, []*corev1.Pod{pod}, since, func(log string) (backend.AccessLogEntry, bool) {
		return LastAccessLogEntry(log, c, client)
	})
	if err != nil {
		return e, fmt.Errorf("no access-log line for %s from %s in istio-proxy's log of pod %s/%s since %s "+
			"(is meshConfig.accessLogFile set, in the default TEXT encoding?): %w", c, orUnknown(client), pod.Namespace, pod.Name,
			since.Format(time.RFC3339), err)
	}
	gateways, name, err := b.gatewayPods(ctx, e.Cluster)
	if err != nil || len(gateways) == 0 {
		return e, err
	}
	id := RequestIDOf(e.Line)
	if id == "" {
		return e, fmt.Errorf("the sidecar sent %s to the egress gateway %s, but its line logs no x-request-id to find the gateway's by: %s",
			c, name, e.Line)
	}
	g, err := b.findLogLine(ctx, gateways, since, func(log string) (backend.AccessLogEntry, bool) {
		return AccessLogEntryByRequestID(log, id)
	})
	if err != nil {
		return e, fmt.Errorf("the sidecar sent %s to the egress gateway %s, whose istio-proxy logged no line with x-request-id %s: %w",
			c, name, id, err)
	}
	e.Gateway, e.GatewayName = &g, name
	return e, nil
}

// findLogLine reads istio-proxy's log of each pod since a time until find finds the
// line, for as long as Envoy may take to flush it.
func (b *Backend) findLogLine(ctx context.Context, pods []*corev1.Pod, since time.Time, find func(log string) (backend.AccessLogEntry, bool)) (backend.AccessLogEntry, error) {
	deadline := time.Now().Add(accessLogWait)
	st := metav1.NewTime(since.Add(-time.Second)) // the API's SinceTime has whole seconds
	for {
		for _, pod := range pods {
			raw, err := b.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
				Container: "istio-proxy", SinceTime: &st}).DoRaw(ctx)
			if err != nil {
				return backend.AccessLogEntry{}, fmt.Errorf("read istio-proxy's log in pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			if e, ok := find(string(raw)); ok {
				return e, nil
			}
		}
		if time.Now().After(deadline) {
			return backend.AccessLogEntry{}, fmt.Errorf("not there after %s", accessLogWait)
		}
		select {
		case <-ctx.Done():
			return backend.AccessLogEntry{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// gatewayPods are the running egress-gateway pods behind an outbound cluster's
// Service ("outbound|80|subset|istio-egressgateway.istio-system.svc.cluster.local"),
// and the gateway's name; none for any other cluster.
func (b *Backend) gatewayPods(ctx context.Context, cluster string) ([]*corev1.Pod, string, error) {
	host, _, ok := dataplane.OutboundService(cluster)
	if !ok {
		return nil, "", nil
	}
	name, namespace, ok := dataplane.ServiceOf(host)
	if !ok {
		return nil, "", nil
	}
	svc, err := b.kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Selector) == 0 {
		return nil, "", nil // not a Service egresslab can follow into
	}
	list, err := b.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, "", fmt.Errorf("list the pods of Service %s/%s: %w", namespace, name, err)
	}
	var out []*corev1.Pod
	for i := range list.Items {
		if p := &list.Items[i]; dataplane.IsGateway(p) && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out, namespace + "/" + name, nil
}

// LastAccessLogEntry is the last line of log that records c, a connection to its port
// from client (the app's address and port of the call's connection). Envoy logs that
// address on every line, %DOWNSTREAM_REMOTE_ADDRESS%, whatever listener took the
// connection; the SNI it logs only where a TLS inspector ran (not on virtualOutbound's
// catch-all), and a request's host and path only where an HTTP listener read them.
//
// Without a client address (a client that does not report it), it falls back to what the
// line shows of the call: an HTTP request for its host and path; for HTTPS, a TCP line
// with its host as SNI or none; for plain HTTP on a port where the sidecar has no HTTP
// listener, and for a call through a proxy (on the proxy's port), a TCP line without
// SNI. Then an earlier call to the same port can match.
func LastAccessLogEntry(log string, c backend.Call, client string) (backend.AccessLogEntry, bool) {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	_, dialed := c.Dialed() // the proxy's port, for a call through one
	port := ":" + strconv.Itoa(dialed)
	for i := len(lines) - 1; i >= 0; i-- {
		f := accesslog.Fields(lines[i])
		if len(f) < accesslog.NumFields || !strings.HasPrefix(f[0], "[") || !strings.HasSuffix(f[accesslog.DownstreamLocal], port) {
			continue
		}
		var match bool
		switch tcp := f[accesslog.Request] == "- - -"; {
		case client != "":
			match = f[accesslog.DownstreamRemote] == client
		case c.Proxy != nil:
			match = tcp && f[accesslog.SNI] == "-" // a tunnel's CONNECT, read by no listener that logs it
		case c.HTTPS():
			match = tcp && (f[accesslog.SNI] == c.Host() || f[accesslog.SNI] == "-")
		case tcp:
			match = f[accesslog.SNI] == "-"
		default:
			authority := strings.TrimSuffix(f[accesslog.Authority], port)
			match = authority == c.Host() && strings.Contains(f[accesslog.Request], " "+c.Path()+" ")
		}
		if match {
			return entryOf(lines[i], f), true
		}
	}
	return backend.AccessLogEntry{}, false
}

// AccessLogEntryByRequestID is the last line of log for the HTTP request with that
// x-request-id: how a call is found at a proxy it reached second (an egress gateway),
// where the downstream is the first proxy, not the app.
func AccessLogEntryByRequestID(log, id string) (backend.AccessLogEntry, bool) {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if f := accesslog.Fields(lines[i]); len(f) >= accesslog.NumFields && strings.HasPrefix(f[0], "[") && f[accesslog.RequestID] == id {
			return entryOf(lines[i], f), true
		}
	}
	return backend.AccessLogEntry{}, false
}

// entryOf is a line of Istio's default format, split into f, as an entry.
func entryOf(line string, f []string) backend.AccessLogEntry {
	code, _ := strconv.Atoi(f[accesslog.Code])
	return backend.AccessLogEntry{Line: line, Status: code, Flags: f[accesslog.Flags], Details: f[accesslog.Details], Cluster: f[accesslog.Cluster]}
}

// RequestIDOf is the x-request-id a line of Istio's default format logs, "" for none.
func RequestIDOf(line string) string {
	f := accesslog.Fields(line)
	if len(f) < accesslog.NumFields || f[accesslog.RequestID] == "-" {
		return ""
	}
	return f[accesslog.RequestID]
}

func orUnknown(client string) string {
	if client == "" {
		return "an unknown client address"
	}
	return client
}

var _ backend.AccessLogger = (*Backend)(nil)

// SidecarAccessLog is istio-proxy's log of w's pod since a time (whole seconds, as the
// API has them): its access-log lines, among the agent's and Envoy's own output, which
// `egresslab suggest` skips. It waits as long as Envoy may take to flush a line.
func (b *Backend) SidecarAccessLog(ctx context.Context, w backend.Workload, since time.Time) (string, error) {
	pod, err := b.currentPod(ctx, w)
	if err != nil {
		return "", err
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(accessLogWait):
	}
	st := metav1.NewTime(since)
	raw, err := b.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: "istio-proxy", SinceTime: &st}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("read istio-proxy's log in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return string(raw), nil
}

var _ backend.SidecarLog = (*Backend)(nil)
