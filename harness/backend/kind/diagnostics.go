package kind

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Diagnose writes what explains a failure into a new folder under base and returns its
// path: for each namespace, the pods' status, the events, and the last lines of every
// container's log (the client, its istio-proxy, istiod); then whatever extra adds (kind's
// own exported logs). Each part that cannot be read is noted, not fatal: diagnostics
// run when something is already wrong.
func Diagnose(ctx context.Context, k kubernetes.Interface, base, why string, namespaces []string, extra func(dir string) error) (string, error) {
	// A fresh context: the run's may be what was cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	dir := filepath.Join(base, "egresslab-diagnostics-"+time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create diagnostics folder %s: %w", dir, err)
	}
	var notes []string
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			notes = append(notes, fmt.Sprintf("write %s: %v", name, err))
		}
	}
	write("why.txt", why+"\n")
	tail := int64(300)
	for _, ns := range namespaces {
		pods, err := k.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			notes = append(notes, fmt.Sprintf("list pods in %s: %v", ns, err))
		} else {
			var status strings.Builder
			for _, p := range pods.Items {
				s, _ := yaml.Marshal(map[string]any{"pod": p.Name, "status": p.Status})
				status.Write(s)
				status.WriteString("---\n")
				for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
					raw, err := k.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail}).Do(ctx).Raw()
					if err != nil {
						notes = append(notes, fmt.Sprintf("logs of %s/%s %s: %v", ns, p.Name, c.Name, err))
						continue
					}
					write(fmt.Sprintf("%s.%s.%s.log", ns, p.Name, c.Name), string(raw))
				}
			}
			write(ns+".pods.yaml", status.String())
		}
		events, err := k.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			notes = append(notes, fmt.Sprintf("list events in %s: %v", ns, err))
		} else {
			var ev strings.Builder
			for _, e := range events.Items {
				fmt.Fprintf(&ev, "%s %s %s/%s %s: %s\n", e.LastTimestamp.Format(time.RFC3339), e.Type,
					e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
			write(ns+".events.txt", ev.String())
		}
	}
	if extra != nil {
		if err := extra(filepath.Join(dir, "kind")); err != nil {
			notes = append(notes, err.Error())
		}
	}
	if len(notes) > 0 {
		write("not-collected.txt", strings.Join(notes, "\n")+"\n")
	}
	return dir, nil
}
