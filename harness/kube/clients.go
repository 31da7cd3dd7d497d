package kube

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	inetv1 "istio.io/client-go/pkg/apis/networking/v1"
	inetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	inetv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	isecv1 "istio.io/client-go/pkg/apis/security/v1"
	isecv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	itelv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	itelv1alpha1 "istio.io/client-go/pkg/apis/telemetry/v1alpha1"
)

// client is a typed client with its type erased, so that a set of mixed kinds can be
// walked in one loop.
type client interface {
	get(ctx context.Context, name string) (runtime.Object, error)
	create(ctx context.Context, obj runtime.Object) error
	update(ctx context.Context, obj runtime.Object) error
	delete(ctx context.Context, name string) error
}

// object is what every Kubernetes and Istio client-go type is.
type object interface {
	runtime.Object
	metav1.Object
}

// typed is the part of every generated client-go typed client that Apply uses, for
// client-go's clients and Istio's alike.
type typed[T object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

type erased[T object] struct{ c typed[T] }

func bind[T object](c typed[T]) client { return erased[T]{c} }

func (e erased[T]) get(ctx context.Context, name string) (runtime.Object, error) {
	return e.c.Get(ctx, name, metav1.GetOptions{})
}

func (e erased[T]) create(ctx context.Context, obj runtime.Object) error {
	_, err := e.c.Create(ctx, obj.(T), metav1.CreateOptions{FieldManager: FieldManager})
	return err
}

func (e erased[T]) update(ctx context.Context, obj runtime.Object) error {
	_, err := e.c.Update(ctx, obj.(T), metav1.UpdateOptions{FieldManager: FieldManager})
	return err
}

func (e erased[T]) delete(ctx context.Context, name string) error {
	// Background: a Deployment's ReplicaSets and pods go with it, as with kubectl delete.
	bg := metav1.DeletePropagationBackground
	return e.c.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

// FieldManager names egresslab as the writer of the objects it applies (kubectl shows it
// under managedFields).
const FieldManager = "egresslab"

// clientFor picks the typed client for obj's Go type, which the decoder chose from the
// manifest's apiVersion and kind: a v1alpha3 ServiceEntry goes through NetworkingV1alpha3.
func (a *Applier) clientFor(obj runtime.Object) (client, error) {
	ns := meta(obj).GetNamespace()
	k, net := a.kube, a.istio
	switch obj.(type) {
	case *corev1.Namespace:
		return bind(k.CoreV1().Namespaces()), nil
	case *corev1.ServiceAccount:
		return bind(k.CoreV1().ServiceAccounts(ns)), nil
	case *corev1.ConfigMap:
		return bind(k.CoreV1().ConfigMaps(ns)), nil
	case *corev1.Secret:
		return bind(k.CoreV1().Secrets(ns)), nil
	case *corev1.Service:
		return bind(k.CoreV1().Services(ns)), nil
	case *corev1.Pod:
		return bind(k.CoreV1().Pods(ns)), nil
	case *appsv1.Deployment:
		return bind(k.AppsV1().Deployments(ns)), nil
	case *appsv1.StatefulSet:
		return bind(k.AppsV1().StatefulSets(ns)), nil
	case *appsv1.DaemonSet:
		return bind(k.AppsV1().DaemonSets(ns)), nil
	case *rbacv1.Role:
		return bind(k.RbacV1().Roles(ns)), nil
	case *rbacv1.RoleBinding:
		return bind(k.RbacV1().RoleBindings(ns)), nil
	case *rbacv1.ClusterRole:
		return bind(k.RbacV1().ClusterRoles()), nil
	case *rbacv1.ClusterRoleBinding:
		return bind(k.RbacV1().ClusterRoleBindings()), nil
	case *networkingv1.NetworkPolicy:
		return bind(k.NetworkingV1().NetworkPolicies(ns)), nil

	case *inetv1alpha3.ServiceEntry:
		return bind(net.NetworkingV1alpha3().ServiceEntries(ns)), nil
	case *inetv1alpha3.VirtualService:
		return bind(net.NetworkingV1alpha3().VirtualServices(ns)), nil
	case *inetv1alpha3.DestinationRule:
		return bind(net.NetworkingV1alpha3().DestinationRules(ns)), nil
	case *inetv1alpha3.Gateway:
		return bind(net.NetworkingV1alpha3().Gateways(ns)), nil
	case *inetv1alpha3.Sidecar:
		return bind(net.NetworkingV1alpha3().Sidecars(ns)), nil
	case *inetv1alpha3.WorkloadEntry:
		return bind(net.NetworkingV1alpha3().WorkloadEntries(ns)), nil
	case *inetv1alpha3.WorkloadGroup:
		return bind(net.NetworkingV1alpha3().WorkloadGroups(ns)), nil
	case *inetv1alpha3.EnvoyFilter:
		return bind(net.NetworkingV1alpha3().EnvoyFilters(ns)), nil

	case *inetv1beta1.ServiceEntry:
		return bind(net.NetworkingV1beta1().ServiceEntries(ns)), nil
	case *inetv1beta1.VirtualService:
		return bind(net.NetworkingV1beta1().VirtualServices(ns)), nil
	case *inetv1beta1.DestinationRule:
		return bind(net.NetworkingV1beta1().DestinationRules(ns)), nil
	case *inetv1beta1.Gateway:
		return bind(net.NetworkingV1beta1().Gateways(ns)), nil
	case *inetv1beta1.Sidecar:
		return bind(net.NetworkingV1beta1().Sidecars(ns)), nil
	case *inetv1beta1.WorkloadEntry:
		return bind(net.NetworkingV1beta1().WorkloadEntries(ns)), nil
	case *inetv1beta1.WorkloadGroup:
		return bind(net.NetworkingV1beta1().WorkloadGroups(ns)), nil

	case *inetv1.ServiceEntry:
		return bind(net.NetworkingV1().ServiceEntries(ns)), nil
	case *inetv1.VirtualService:
		return bind(net.NetworkingV1().VirtualServices(ns)), nil
	case *inetv1.DestinationRule:
		return bind(net.NetworkingV1().DestinationRules(ns)), nil
	case *inetv1.Gateway:
		return bind(net.NetworkingV1().Gateways(ns)), nil
	case *inetv1.Sidecar:
		return bind(net.NetworkingV1().Sidecars(ns)), nil
	case *inetv1.WorkloadEntry:
		return bind(net.NetworkingV1().WorkloadEntries(ns)), nil
	case *inetv1.WorkloadGroup:
		return bind(net.NetworkingV1().WorkloadGroups(ns)), nil

	case *isecv1.AuthorizationPolicy:
		return bind(net.SecurityV1().AuthorizationPolicies(ns)), nil
	case *isecv1.PeerAuthentication:
		return bind(net.SecurityV1().PeerAuthentications(ns)), nil
	case *isecv1.RequestAuthentication:
		return bind(net.SecurityV1().RequestAuthentications(ns)), nil
	case *isecv1beta1.AuthorizationPolicy:
		return bind(net.SecurityV1beta1().AuthorizationPolicies(ns)), nil
	case *isecv1beta1.PeerAuthentication:
		return bind(net.SecurityV1beta1().PeerAuthentications(ns)), nil
	case *isecv1beta1.RequestAuthentication:
		return bind(net.SecurityV1beta1().RequestAuthentications(ns)), nil

	case *itelv1.Telemetry:
		return bind(net.TelemetryV1().Telemetries(ns)), nil
	case *itelv1alpha1.Telemetry:
		return bind(net.TelemetryV1alpha1().Telemetries(ns)), nil
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	return nil, fmt.Errorf("kind %s of apiVersion %s cannot be applied to a cluster by egresslab: it applies "+
		"Kubernetes built-ins (Namespace, ServiceAccount, ConfigMap, Secret, Service, Pod, Deployment, "+
		"StatefulSet, DaemonSet, RBAC, NetworkPolicy) and Istio's networking, security and telemetry kinds",
		gvk.Kind, gvk.GroupVersion())
}
