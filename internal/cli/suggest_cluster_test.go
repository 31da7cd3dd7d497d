package cli

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egresslab/egresslab/internal/suggest"
)

// stubLogs is a cluster's pods and their istio-proxy logs.
type stubLogs struct {
	byNamespace map[string][]corev1.Pod
	logs        map[string]string // by pod name
}

func (s stubLogs) pods(_ context.Context, ns string) ([]corev1.Pod, error) {
	return s.byNamespace[ns], nil
}
func (s stubLogs) log(_ context.Context, pod *corev1.Pod) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(s.logs[pod.Name])), nil
}

func meshPod(ns, name, replicaSet, hash string, sidecar bool) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	if replicaSet != "" {
		p.Labels["pod-template-hash"] = hash
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: replicaSet}}
	}
	if sidecar {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
	}
	return p
}

// -n reads the log of every pod with a sidecar in each namespace, as the workload of its
// Deployment; a pod without a sidecar is not read, and a namespace with none is a
// problem that names it and the fix.
func TestSuggestReadsEachSidecarsLogInTheNamespaces(t *testing.T) {
	logs := stubLogs{
		byNamespace: map[string][]corev1.Pod{
			"egresslab": {
				meshPod("egresslab", "client-5d8f7c9b4-x2x9q", "client-5d8f7c9b4", "5d8f7c9b4", true),
				meshPod("egresslab", "batch-job-abcde", "", "", true),
				meshPod("egresslab", "legacy-7f-q", "legacy-7f", "7f", false),
				meshPod("egresslab", "quiet-9c-z", "quiet-9c", "9c", true), // made no call yet: no problem
			},
			"team-b": {meshPod("team-b", "plain-1", "plain", "1", false)},
		},
		logs: map[string]string{"client-5d8f7c9b4-x2x9q": allowAnyLine("jsonplaceholder.typicode.com"), "batch-job-abcde": allowAnyLine("api.example.org"),
			"quiet-9c-z": agentLine},
	}
	obs := suggest.NewObservations()
	problems, err := readClusterLogs(context.Background(), obs, logs, []string{"egresslab", "team-b"})
	require.NoError(t, err)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0].Error(), "namespace team-b")
	assert.Contains(t, problems[0].Error(), "has no pod with an istio-proxy sidecar")

	sg, err := suggest.Build(obs)
	require.NoError(t, err)
	callers := map[string]string{}
	for _, e := range sg.Entries {
		callers[e.Host] = e.Callers[0].Who
	}
	assert.Equal(t, map[string]string{"jsonplaceholder.typicode.com": "egresslab/client", "api.example.org": "egresslab/batch-job-abcde"}, callers)
}

// allowAnyLine is one HTTP call to host through PassthroughCluster, in Istio's TEXT format.
func allowAnyLine(host string) string {
	return `[2026-11-25T09:43:16.273Z] "GET / HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "curl" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "` +
		host + `" "203.0.113.61:80" PassthroughCluster 10.244.0.8:57672 203.0.113.61:80 10.244.0.8:57658 - allow_any` + "\n"
}

const agentLine = "2026-11-30T09:04:06.497168Z\tinfo\tFLAG: --concurrency=\"0\"\n"

// Pods that made no call are no mistake, but when no pod's log holds an access-log line,
// access logging is likely off: a problem that says how to turn it on.
func TestSuggestFromANamespaceWithoutAccessLogsSaysHowToTurnThemOn(t *testing.T) {
	logs := stubLogs{
		byNamespace: map[string][]corev1.Pod{"egresslab": {meshPod("egresslab", "client-1-a", "client-1", "1", true)}},
		logs:        map[string]string{"client-1-a": agentLine},
	}
	problems, err := readClusterLogs(context.Background(), suggest.NewObservations(), logs, []string{"egresslab"})
	require.NoError(t, err)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0].Error(), "no pod's istio-proxy log there holds an access-log line")
	assert.Contains(t, problems[0].Error(), "meshConfig.accessLogFile")
}
