package istioinstall

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"istio.io/istio/pkg/config/mesh"

	"github.com/egresslab/egresslab/harness/manifest"
)

// WaitIstiod polls until istiod's Deployment has every replica of its latest revision
// ready and its sidecar injector webhook is registered: before that, a pod created in
// an injection-labelled namespace can come up without a sidecar.
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

func istiodReady(ctx context.Context, k kubernetes.Interface) (bool, string, error) {
	d, err := k.AppsV1().Deployments(Namespace).Get(ctx, "istiod", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "no Deployment istiod yet", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read Deployment %s/istiod: %w", Namespace, err)
	}
	if ok, why := RolledOut(d); !ok {
		return false, "istiod: " + why, nil
	}
	if _, err := k.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "the sidecar injector webhook istio-sidecar-injector is not registered yet", nil
		}
		return false, "", fmt.Errorf("read MutatingWebhookConfiguration istio-sidecar-injector: %w", err)
	}
	return true, "", nil
}

// RolledOut reports whether a Deployment's latest revision is fully rolled out and
// ready, as `kubectl rollout status` decides it, and if not, why.
func RolledOut(d *appsv1.Deployment) (bool, string) {
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
