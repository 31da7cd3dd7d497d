package kind

import (
	"context"
	"errors"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/rollout"
	"github.com/egresslab/egresslab/harness/dataplane"
)

// readyPod waits until the workload's Deployment is rolled out and returns its ready pod.
func (b *Backend) readyPod(ctx context.Context, w backend.Workload) (*corev1.Pod, error) {
	done := step(b.progress, "rollout of "+w.String())
	var pod *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, b.poll, b.rollout, true, func(ctx context.Context) (bool, error) {
		p, why, err := b.rolledOutPod(ctx, w)
		switch {
		case errors.Is(err, errNeverReady):
			return false, err
		case err != nil:
			last = err.Error()
		case p != nil:
			pod = p
			return true, nil
		default:
			last = why
		}
		return false, nil
	})
	switch {
	case errors.Is(err, errNeverReady):
		err = fmt.Errorf("wait for Deployment %s to be ready: %w", w, err)
	case err != nil:
		err = fmt.Errorf("wait for Deployment %s to be ready: %w; last seen: %s", w, err, last)
	}
	done(err)
	return pod, err
}

// errNeverReady says a rollout cannot end however long one waits (rollout.Diagnose).
var errNeverReady = errors.New("it cannot become ready, so the wait stops now")

// rolledOutPod is the ready pod of the Deployment's latest rollout, or why there is none yet.
func (b *Backend) rolledOutPod(ctx context.Context, w backend.Workload) (*corev1.Pod, string, error) {
	d, err := b.kube.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("no Deployment %s: apply labs/apps/ first", w)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read Deployment %s: %w", w, err)
	}
	if ok, why := rollout.Status(d); !ok {
		trouble, hopeless := rollout.Diagnose(ctx, b.kube, d, b.pullsFrom)
		if trouble != "" {
			why += "; " + trouble
		}
		if hopeless {
			return nil, why, fmt.Errorf("%w: %s", errNeverReady, why)
		}
		return nil, why, nil
	}
	pod, err := b.podOf(ctx, d)
	if err != nil {
		return nil, err.Error(), nil
	}
	return pod, "", nil
}

// podOf picks the newest running, ready pod that is not being deleted.
func (b *Backend) podOf(ctx context.Context, d *appsv1.Deployment) (*corev1.Pod, error) {
	pods, err := rollout.Pods(ctx, b.kube, d)
	if err != nil {
		return nil, err
	}
	var ready []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) &&
			labels.SelectorFromSet(d.Spec.Template.Labels).Matches(labels.Set(p.Labels)) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return nil, fmt.Errorf("%w of Deployment %s/%s among %d pods", errNoPod, d.Namespace, d.Name, len(pods))
	}
	sort.Slice(ready, func(i, j int) bool { return ready[j].CreationTimestamp.Before(&ready[i].CreationTimestamp) })
	return &ready[0], nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// currentPod is the pod calls are made from: the ready pod of the Deployment now.
func (b *Backend) currentPod(ctx context.Context, w backend.Workload) (*corev1.Pod, error) {
	d, err := b.kube.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("find the pod of %s: %w", w, err)
	}
	pod, err := b.podOf(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("find the pod of %s: %w", w, err)
	}
	return pod, nil
}

// sidecarOf finds out whether pod runs istio-proxy; when it does not, Rule says the
// likely cause and the fix.
func (b *Backend) sidecarOf(ctx context.Context, pod *corev1.Pod) (backend.SidecarStatus, error) {
	s := backend.SidecarStatus{Pod: pod.Namespace + "/" + pod.Name}
	ns, err := b.kube.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
	if err != nil {
		return s, fmt.Errorf("read namespace %s of pod %s: %w", pod.Namespace, s.Pod, err)
	}
	if proxy, ok := SidecarIn(pod); ok {
		s.Injected, s.Proxy = true, proxy
		_, s.Rule = dataplane.Injection(ns, pod.Labels)
		return s, nil
	}
	injector := ""
	if _, err := b.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, istioinstall.InjectorWebhook, metav1.GetOptions{}); err != nil {
		injector = "the sidecar injector webhook " + istioinstall.InjectorWebhook + " is not registered (is istiod installed?)"
	} else if d, err := b.kube.AppsV1().Deployments(istioinstall.Namespace).Get(ctx, "istiod", metav1.GetOptions{}); err != nil {
		injector = "istiod is not running in " + istioinstall.Namespace
	} else if ok, why := rollout.Status(d); !ok {
		injector = "the injector (istiod) is not ready: " + why
	}
	s.Rule = WhyNoSidecar(ns, pod, injector)
	return s, nil
}

// SidecarIn reports whether the pod runs istio-proxy, as a container or as a native
// sidecar (an init container that keeps running: restartPolicy Always), and names it.
func SidecarIn(pod *corev1.Pod) (string, bool) {
	for _, c := range pod.Spec.Containers {
		if c.Name == "istio-proxy" {
			return fmt.Sprintf("the istio-proxy sidecar container (image %s)", c.Image), true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == "istio-proxy" && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return fmt.Sprintf("istio-proxy as a native sidecar (init container with restartPolicy Always, image %s)", c.Image), true
		}
	}
	return "", false
}

// WhyNoSidecar names the likely cause of a pod without a sidecar, and the fix. injector
// is "" when the injector is ready, else what is wrong with it.
func WhyNoSidecar(ns *corev1.Namespace, pod *corev1.Pod, injector string) string {
	restart := "restart the pods (kubectl -n " + ns.Name + " rollout restart deploy)"
	if injected, why := dataplane.Injection(ns, pod.Labels); !injected {
		return why + ", and " + restart
	}
	if injector != "" {
		return injector + "; once it is ready, " + restart
	}
	// The injector's webhook fails closed (failurePolicy Fail): a pod created while istiod
	// did not answer was refused, not let through. So a pod without a sidecar here got past
	// injection some other way: the webhook configuration was changed or replaced.
	return fmt.Sprintf("namespace %s is labelled for injection and the injector is ready now, yet the pod was admitted without "+
		"a sidecar: check the webhook's selectors (kubectl get mutatingwebhookconfiguration %s -o yaml), then %s",
		ns.Name, istioinstall.InjectorWebhook, restart)
}
