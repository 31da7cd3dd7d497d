package dataplane

import (
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FirstPodIP is the address of the first pod a backend without a kubelet runs, in
// kind's default pod range; later pods take the next free ones (NextPodIP).
const FirstPodIP = "10.244.0.10"

// NextPodIP is the first address from FirstPodIP on that used does not hold, as a
// node's IPAM would hand out: istiod tells sidecars apart by their pod's IP.
func NextPodIP(used func(ip string) bool) string {
	ip := netip.MustParseAddr(FirstPodIP)
	for used(ip.String()) {
		ip = ip.Next()
	}
	return ip.String()
}

// PodFor is the pod object that a Deployment's ReplicaSet, the scheduler and a kubelet
// would together produce: one replica of d, called name, scheduled, its containers
// running and ready, with address ip. Backends that run no kubelet (sim, local) give it
// to istiod, which needs a pod with an IP to tie a sidecar to its workload and Services.
func PodFor(d *appsv1.Deployment, name, ip string) *corev1.Pod {
	tmpl := d.Spec.Template
	ready := []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
	}
	var statuses []corev1.ContainerStatus
	for _, c := range tmpl.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	}
	controller := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   d.Namespace,
			Labels:      tmpl.Labels,
			Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name,
				UID: d.UID, Controller: &controller}},
		},
		Spec: *tmpl.Spec.DeepCopy(),
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			HostIP:            "127.0.0.1",
			PodIP:             ip,
			PodIPs:            []corev1.PodIP{{IP: ip}},
			Conditions:        ready,
			ContainerStatuses: statuses,
		},
	}
}
