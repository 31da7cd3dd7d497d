package istioinstall

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"istio.io/istio/pkg/config/mesh"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/rollout"
	"github.com/egresslab/egresslab/harness/manifest"
)

// WaitIstiod polls until istiod's Deployment has every replica of its latest revision
// ready and its sidecar injector webhook answers. The webhook's failurePolicy is Fail:
// a pod created in an injection-labelled namespace before istiod answers is refused,
// and all that shows of it is its ReplicaSet's FailedCreate event.
func WaitIstiod(ctx context.Context, k kubernetes.Interface, timeout, every time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, every, timeout, true, func(ctx context.Context) (bool, error) {
		ready, why, err := istiodReady(ctx, k)
		switch {
		case err != nil:
			last = err.Error()
		case ready:
			return true, nil
		default:
			last = why
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for istiod in %s to be ready: %w; last seen: %s "+
			"(kubectl -n %s describe deploy/istiod; kubectl -n %s logs deploy/istiod)",
			Namespace, err, last, Namespace, Namespace)
	}
	return nil
}

// InjectorWebhook is the MutatingWebhookConfiguration istiod's chart registers.
const InjectorWebhook = "istio-sidecar-injector"

// injectionProbe is the pod WaitIstiod asks the API server to admit, in dry-run mode
// (nothing is stored): the label sends it to the injector's object-selector webhook.
func injectionProbe() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "egresslab-injection-probe", Namespace: Namespace,
			Labels: map[string]string{"sidecar.istio.io/inject": "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "egresslab/injection-probe"}}},
	}
}

func istiodReady(ctx context.Context, k kubernetes.Interface) (bool, string, error) {
	d, err := k.AppsV1().Deployments(Namespace).Get(ctx, "istiod", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "no Deployment istiod yet", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read Deployment %s/istiod: %w", Namespace, err)
	}
	if ok, why := rollout.Status(d); !ok {
		if trouble := rollout.Trouble(ctx, k, d, ""); trouble != "" {
			why += "; " + trouble
		}
		return false, "istiod: " + why, nil
	}
	if _, err := k.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, InjectorWebhook, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "the sidecar injector webhook " + InjectorWebhook + " is not registered yet", nil
		}
		return false, "", fmt.Errorf("read MutatingWebhookConfiguration %s: %w", InjectorWebhook, err)
	}
	// Registered is not answering: the API server calls istiod through its Service, which
	// needs a ready endpoint. A dry-run create goes through admission and stores nothing.
	_, err = k.CoreV1().Pods(Namespace).Create(ctx, injectionProbe(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil && !apierrors.IsAlreadyExists(err) { // AlreadyExists comes after admission: it answered
		return false, "the sidecar injector webhook does not answer yet: " + err.Error(), nil
	}
	return true, "", nil
}

// MeshMode reads the outbound traffic policy mode from the mesh config istiod reads
// (ConfigMap istio-system/istio, key mesh), with Istio's defaults applied as istiod
// applies them: a mesh config that does not mention the mode means ALLOW_ANY.
func MeshMode(ctx context.Context, k kubernetes.Interface) (string, error) {
	cm, err := k.CoreV1().ConfigMaps(Namespace).Get(ctx, MeshConfigMap, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the mesh config (ConfigMap %s/%s): %w", Namespace, MeshConfigMap, err)
	}
	raw, ok := cm.Data["mesh"]
	if !ok {
		return "", fmt.Errorf("read the mesh config: ConfigMap %s/%s has no key \"mesh\"", Namespace, MeshConfigMap)
	}
	m, err := mesh.ApplyMeshConfigDefaults(raw)
	if err != nil {
		return "", fmt.Errorf("read the mesh config in ConfigMap %s/%s: %w", Namespace, MeshConfigMap, err)
	}
	return m.GetOutboundTrafficPolicy().GetMode().String(), nil
}

// CheckMeshMode stops with a clear error unless the cluster's mesh config has the mode
// the values ask for (REGISTRY_ONLY for the lab).
func CheckMeshMode(ctx context.Context, k kubernetes.Interface, values manifest.MeshValues) error {
	want := values.OutboundMode()
	got, err := MeshMode(ctx, k)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the cluster's mesh config (ConfigMap %s/%s) has outboundTrafficPolicy.mode %s, but %s asks for %s: "+
			"the lab's verdicts would be about the wrong mesh. Check meshConfig.outboundTrafficPolicy.mode in %s; "+
			"if Istio was installed by something else, uninstall it or give egresslab its own cluster",
			Namespace, MeshConfigMap, got, values.Source, want, values.Source)
	}
	return nil
}
