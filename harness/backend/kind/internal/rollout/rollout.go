// Package rollout reads whether a Deployment is rolled out on a real cluster and, when
// it is not, why: the rollout status alone says "0 of 1 replicas available" whether the
// image cannot be pulled, the container crashes, or the pod was never created because
// an admission webhook refused it. Waits for istiod and for the lab's apps use it alike.
package rollout

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Status reports whether a Deployment's latest revision is fully rolled out and ready,
// as `kubectl rollout status` decides it, and if not, why.
func Status(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "the controller has not seen the latest spec yet"
	case s.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, want)
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas still terminating", s.Replicas-s.UpdatedReplicas)
	case s.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas available", s.AvailableReplicas, want)
	}
	return true, ""
}

// logLines is how many of a crashing container's last log lines Trouble quotes.
const logLines = 5

// Trouble names what keeps a Deployment's pods from running, or "" when it sees nothing:
// pods its ReplicaSets could not create (FailedCreate: an admission webhook that refused
// them or did not answer, a quota), containers waiting on an image (with the image and
// the kubelet's message, which carries a registry's "toomanyrequests"), and crash loops
// (with the container's last log lines).
func Trouble(ctx context.Context, k kubernetes.Interface, d *appsv1.Deployment, pullsFrom string) string {
	why, _ := Diagnose(ctx, k, d, pullsFrom)
	return why
}

// hopeless are the waiting reasons no wait ends: the kubelet never pulls an image whose
// pull policy is Never, and never parses a malformed image name.
var hopeless = map[string]bool{"ErrImageNeverPull": true, "InvalidImageName": true}

// Diagnose is Trouble, and whether what it saw is hopeless: a container waits for a
// reason no wait ends, so a wait should stop now rather than at its timeout. pullsFrom
// names where the nodes pull images from ("docker.io", a registry mirror), for a failed
// pull's message.
func Diagnose(ctx context.Context, k kubernetes.Interface, d *appsv1.Deployment, pullsFrom string) (why string, isHopeless bool) {
	var out []string
	out = append(out, failedCreates(ctx, k, d)...)
	pods, err := Pods(ctx, k, d)
	if err != nil {
		return strings.Join(append(out, err.Error()), "; "), false
	}
	for _, p := range pods {
		images := map[string]string{}
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			images[c.Name] = c.Image
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			w := cs.State.Waiting
			if w == nil || w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
				continue
			}
			isHopeless = isHopeless || hopeless[w.Reason]
			msg := fmt.Sprintf("pod %s container %s: %s", p.Name, cs.Name, w.Reason)
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff":
				hint, final := pullFailure(images[cs.Name], w.Message, pullsFrom)
				msg += " (image " + images[cs.Name] + "): " + w.Message + "; " + hint
				isHopeless = isHopeless || final
				out = append(out, msg)
				continue
			case "InvalidImageName":
				msg += " (image " + images[cs.Name] + ")"
			case "ErrImageNeverPull":
				msg += " (image " + images[cs.Name] + " is not on the node, and its pull policy is Never: load it into the node)"
			case "CrashLoopBackOff":
				if logs := LastLogs(ctx, k, p, cs.Name, true); logs != "" {
					msg += "; its last log lines:\n    " + strings.ReplaceAll(logs, "\n", "\n    ")
				}
			}
			if w.Message != "" && w.Reason != "CrashLoopBackOff" {
				msg += ": " + w.Message
			}
			out = append(out, msg)
		}
	}
	return strings.Join(out, "; "), isHopeless
}

// pullFailure says what a failed pull means and what fixes it, and whether it is final:
// an image the registry does not have is not there after any wait (the kubelet would
// retry it for ever), while a registry that does not answer, or limits pulls, may later.
func pullFailure(image, message, pullsFrom string) (hint string, final bool) {
	if pullsFrom == "" {
		pullsFrom = "its registry"
	}
	m := strings.ToLower(message)
	switch {
	case strings.Contains(m, "not found") || strings.Contains(m, "manifest unknown"):
		return fmt.Sprintf("%s has no image %s: add it there (a bundle: write it again with egresslab bundle), "+
			"or install the release it has", pullsFrom, image), true
	case strings.Contains(m, "toomanyrequests"):
		return fmt.Sprintf("%s limits anonymous pulls: pull through a mirror (EGRESSLAB_REGISTRY_MIRROR=host:port, "+
			"or a workshop's bundle: EGRESSLAB_BUNDLE=FILE)", pullsFrom), false
	case strings.Contains(m, "connection refused") || strings.Contains(m, "no such host") ||
		strings.Contains(m, "i/o timeout") || strings.Contains(m, "dial tcp"):
		return fmt.Sprintf("the node cannot reach %s: check that it runs and that the nodes reach it", pullsFrom), false
	}
	return "the node pulls it from " + pullsFrom, false
}

// failedCreates are the messages of pods the Deployment's ReplicaSets could not create:
// the ReplicaFailure condition the controller copies onto the Deployment, and the
// ReplicaSets' FailedCreate events (the condition is not always there yet).
func failedCreates(ctx context.Context, k kubernetes.Interface, d *appsv1.Deployment) []string {
	seen := map[string]bool{}
	var out []string
	add := func(msg string) {
		if msg != "" && !seen[msg] {
			seen[msg] = true
			out = append(out, "pods cannot be created: "+msg)
		}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			add(c.Message)
		}
	}
	events, err := k.CoreV1().Events(d.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	var mine []corev1.Event
	for _, e := range events.Items {
		if e.Reason == "FailedCreate" && e.InvolvedObject.Kind == "ReplicaSet" && ownedBy(e.InvolvedObject.Name, d.Name) {
			mine = append(mine, e)
		}
	}
	// The newest first: an older refusal may have been fixed since.
	sort.Slice(mine, func(i, j int) bool { return lastSeen(mine[j]).Before(lastSeen(mine[i])) })
	if len(mine) > 0 {
		add(mine[0].Message)
	}
	return out
}

// ownedBy says whether a ReplicaSet's name is one the Deployment's controller gives it
// (DEPLOYMENT-HASH).
func ownedBy(rs, deployment string) bool {
	hash, ok := strings.CutPrefix(rs, deployment+"-")
	return ok && hash != "" && !strings.Contains(hash, "-")
}

func lastSeen(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	return e.EventTime.Time
}

// LastLogs are a container's last log lines: of its previous run when previous is set
// (a crash-looping container's current run has often logged nothing yet), else of this one.
// It is "" when they cannot be read.
func LastLogs(ctx context.Context, k kubernetes.Interface, p corev1.Pod, container string, previous bool) string {
	tail := int64(logLines)
	raw, err := k.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{
		Container: container, Previous: previous, TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(raw))
}

// Pods lists the pods of a Deployment, by its selector.
func Pods(ctx context.Context, k kubernetes.Interface, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	list, err := k.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list pods of Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return list.Items, nil
}
