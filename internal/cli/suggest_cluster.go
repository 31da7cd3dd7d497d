package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind"
	"github.com/egresslab/egresslab/internal/suggest"
)

// sidecarLogs are the istio-proxy logs of a cluster's pods: the pods of a namespace,
// and a pod's log as a stream. A kube client gives them; tests give their own.
type sidecarLogs interface {
	pods(ctx context.Context, namespace string) ([]corev1.Pod, error)
	log(ctx context.Context, pod *corev1.Pod) (io.ReadCloser, error)
}

// kubeLogs reads them through the API server, as kubectl logs does.
type kubeLogs struct{ kube kubernetes.Interface }

func (k kubeLogs) pods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	list, err := k.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (k kubeLogs) log(ctx context.Context, pod *corev1.Pod) (io.ReadCloser, error) {
	return k.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "istio-proxy"}).Stream(ctx)
}

// clusterLogs connects to the cluster of the kubeconfig context name ("" for the current
// one), by kubectl's rules for finding the kubeconfig (KUBECONFIG, else ~/.kube/config,
// which client-go reads).
func clusterLogs(name string) (sidecarLogs, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(),
		&clientcmd.ConfigOverrides{CurrentContext: name}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("-context %q: %w (kubectl config get-contexts lists the contexts)", name, err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("-context %q: %w", name, err)
	}
	return kubeLogs{kube: kube}, nil
}

// readClusterLogs streams into obs the istio-proxy log of every pod with a sidecar in the
// namespaces, each as the workload of the Deployment it belongs to (the pod itself when
// it belongs to none), as `-f NAMESPACE/WORKLOAD=FILE` names one. A namespace with no
// such pod is a problem: nothing there could be read. err is the cluster's failure
// (unreachable, forbidden), not the input's.
func readClusterLogs(ctx context.Context, obs *suggest.Observations, logs sidecarLogs, namespaces []string) (problems []error, err error) {
	for _, ns := range namespaces {
		pods, err := logs.pods(ctx, ns)
		if err != nil {
			return nil, fmt.Errorf("list the pods of namespace %s: %w", ns, err)
		}
		slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		read := 0
		for i := range pods {
			pod := &pods[i]
			if _, ok := kind.SidecarIn(pod); !ok {
				continue
			}
			w := workloadOf(pod)
			stream, err := logs.log(ctx, pod)
			if err != nil {
				return nil, fmt.Errorf("read istio-proxy's log of pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			err = obs.Read(ctx, suggest.Source{Name: "pod " + pod.Namespace + "/" + pod.Name, Workload: &w, Quiet: true}, stream)
			_ = stream.Close()
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				problems = append(problems, err)
			}
			read++
		}
		if read == 0 {
			problems = append(problems, &suggest.Problem{File: "namespace " + ns, Reason: "has no pod with an istio-proxy sidecar",
				Fix: "name a namespace whose pods run in the mesh (-n), or check the kube context (-context)"})
		}
	}
	if c := obs.Counts; c.Text+c.JSON == 0 && len(problems) == 0 {
		problems = append(problems, &suggest.Problem{File: "namespaces " + strings.Join(namespaces, ", "),
			Reason: "no pod's istio-proxy log there holds an access-log line",
			Fix:    "turn access logging on (meshConfig.accessLogFile: /dev/stdout) and read the logs once the workloads have made calls"})
	}
	return problems, nil
}

// workloadOf is the Deployment a pod belongs to: its ReplicaSet's name less the
// pod-template-hash the Deployment controller appends; the pod itself otherwise.
func workloadOf(pod *corev1.Pod) backend.Workload {
	w := backend.Workload{Namespace: pod.Namespace, Name: pod.Name}
	hash := pod.Labels["pod-template-hash"]
	for _, o := range pod.OwnerReferences {
		if o.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(o.Name, "-"+hash) {
			w.Name = strings.TrimSuffix(o.Name, "-"+hash)
		}
	}
	return w
}
