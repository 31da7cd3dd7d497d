package rollout_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/rollout"
)

func deployment(name string) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "egresslab", Generation: 1},
		Spec: appsv1.DeploymentSpec{Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1},
	}
}

func podWaiting(name, container, image, reason, message string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "egresslab", Labels: map[string]string{"app": "istiod"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: container, Image: image}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: container,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}},
	}
}

func TestStatus(t *testing.T) {
	d := deployment("istiod")
	ok, why := rollout.Status(d)
	assert.False(t, ok)
	assert.Equal(t, "0 of 1 replicas available", why)
	d.Status.AvailableReplicas = 1
	ok, _ = rollout.Status(d)
	assert.True(t, ok)
}

// Docker Hub's rate limit shows only in the kubelet's message on the waiting container.
func TestTroubleNamesTheImageAndTheRegistrysWords(t *testing.T) {
	k := kubefake.NewClientset(podWaiting("istiod-1", "discovery", "docker.io/istio/pilot:1.31.0", "ImagePullBackOff",
		`Back-off pulling image "docker.io/istio/pilot:1.31.0": toomanyrequests: You have reached your pull rate limit`))
	got := rollout.Trouble(context.Background(), k, deployment("istiod"), "docker.io")
	assert.Contains(t, got, "pod istiod-1 container discovery: ImagePullBackOff (image docker.io/istio/pilot:1.31.0)")
	assert.Contains(t, got, "toomanyrequests")
	assert.Contains(t, got, "docker.io limits anonymous pulls: pull through a mirror (EGRESSLAB_REGISTRY_MIRROR=host:port")
}

// An image the mirror does not have never arrives: the kubelet retries it for ever, and
// the wait went on to its timeout saying only "ImagePullBackOff". It stops at once, with
// the image, the mirror and the fix.
func TestAnImageTheMirrorLacksStopsTheWaitWithTheImageTheMirrorAndTheFix(t *testing.T) {
	image := "docker.io/istio/proxyv2:0.0.0-missing"
	msg := `failed to pull and unpack image "` + image + `": failed to resolve reference "` + image + `": ` + image + `: not found`
	mirror := "the registry mirror of docker.io at http://172.18.0.1:40000 (serving the bundle's images)"
	k := kubefake.NewClientset(podWaiting("istiod-1", "discovery", image, "ErrImagePull", msg))
	why, hopeless := rollout.Diagnose(context.Background(), k, deployment("istiod"), mirror)
	assert.True(t, hopeless, "no wait brings an image the registry lacks")
	assert.Contains(t, why, "ErrImagePull (image "+image+"): "+msg)
	assert.Contains(t, why, mirror+" has no image "+image+": add it there (a bundle: write it again with egresslab bundle)")

	// A registry that does not answer may later: named, but the wait goes on.
	k = kubefake.NewClientset(podWaiting("istiod-1", "discovery", image, "ImagePullBackOff",
		`Back-off pulling image "`+image+`": dial tcp 172.18.0.1:40000: connect: connection refused`))
	why, hopeless = rollout.Diagnose(context.Background(), k, deployment("istiod"), mirror)
	assert.False(t, hopeless)
	assert.Contains(t, why, "the node cannot reach "+mirror)
}

func TestTroubleQuotesACrashingContainersLastLogs(t *testing.T) {
	k := kubefake.NewClientset(podWaiting("istiod-1", "discovery", "istio/pilot", "CrashLoopBackOff", "back-off 40s restarting"))
	got := rollout.Trouble(context.Background(), k, deployment("istiod"), "docker.io")
	assert.Contains(t, got, "pod istiod-1 container discovery: CrashLoopBackOff; its last log lines:")
	assert.Contains(t, got, "fake logs", "the fake clientset's log body, read through GetLogs")
}

// A pod the injection webhook refused never exists: the only trace is the ReplicaSet's
// FailedCreate event (and, later, the Deployment's ReplicaFailure condition).
func TestTroubleSurfacesAPodRefusedAtAdmission(t *testing.T) {
	refused := `Internal error occurred: failed calling webhook "namespace.sidecar-injector.istio.io": ` +
		`Post "https://istiod.istio-system.svc:443/inject": dial tcp 10.96.10.10:443: connect: connection refused`
	now := time.Now()
	events := []*corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "egresslab"}, Reason: "FailedCreate", Message: "an older refusal",
			InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Name: "client-5d8f7c"}, LastTimestamp: metav1.NewTime(now.Add(-time.Minute))},
		{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "egresslab"}, Reason: "FailedCreate", Message: refused,
			InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Name: "client-5d8f7c"}, LastTimestamp: metav1.NewTime(now)},
		{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "egresslab"}, Reason: "FailedCreate", Message: "another app's",
			InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Name: "client-extra-5d8f7c"}, LastTimestamp: metav1.NewTime(now.Add(time.Minute))},
	}
	k := kubefake.NewClientset(events[0], events[1], events[2])
	got := rollout.Trouble(context.Background(), k, deployment("client"), "docker.io")
	assert.Equal(t, "pods cannot be created: "+refused, got)

	d := deployment("client")
	d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
		Reason: "FailedCreate", Message: refused}}
	assert.Equal(t, "pods cannot be created: "+refused, rollout.Trouble(context.Background(), kubefake.NewClientset(), d, "docker.io"),
		"the condition alone says it too, once")
}

func TestNoTroubleSeen(t *testing.T) {
	k := kubefake.NewClientset(podWaiting("istiod-1", "discovery", "istio/pilot", "ContainerCreating", ""))
	assert.Empty(t, rollout.Trouble(context.Background(), k, deployment("istiod"), "docker.io"))
}
