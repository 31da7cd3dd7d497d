// Package kube applies the lab's manifests to a real Kubernetes API server: Kubernetes
// kinds through client-go's typed clients, Istio kinds through Istio's typed clients
// (istio.io/client-go), each at the apiVersion the manifest names. A set is applied
// whole or not at all: when an object fails part-way, what this Apply created is
// deleted again and what it changed is put back.
//
// Any backend with an API server uses it: the kind cluster, and the local control plane.
package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"

	"github.com/egresslab/egresslab/harness/manifest"
)

// Applier creates, updates and deletes the objects of a manifest.Set.
type Applier struct {
	kube  kubernetes.Interface
	istio istioclient.Interface
}

// NewApplier returns an Applier that talks to the API server through k and i.
func NewApplier(k kubernetes.Interface, i istioclient.Interface) *Applier {
	return &Applier{kube: k, istio: i}
}

// change is one object of a set, bound to the typed client that serves its kind.
type change struct {
	obj     manifest.Object
	desired runtime.Object
	client  client
}

func (c change) ref() string {
	return fmt.Sprintf("%s (%s, document %d)", c.obj.Ref(), c.obj.Source, c.obj.Doc)
}

// undo is how to take back one step of an Apply.
type undo struct {
	what string
	do   func(ctx context.Context) error
}

// Apply creates every object of the set that does not exist and updates every one that
// does, in dependency order (namespaces first, Istio config last). If one fails, the
// objects this call created are deleted and those it updated get their old content
// back, and the error says what failed and what was rolled back.
func (a *Applier) Apply(ctx context.Context, set *manifest.Set) error {
	changes, err := a.plan(set)
	if err != nil {
		return err
	}
	if err := set.CheckNamespaces(func(ns string) (bool, error) {
		_, err := a.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return err
	}
	var undos []undo
	for _, c := range changes {
		u, err := a.applyOne(ctx, c)
		if err == nil {
			undos = append(undos, u)
			continue
		}
		err = fmt.Errorf("apply %s: %w", c.ref(), err)
		return errors.Join(err, rollback(undos))
	}
	return nil
}

func (a *Applier) applyOne(ctx context.Context, c change) (undo, error) {
	name := c.obj.Name
	existing, err := c.client.get(ctx, name)
	switch {
	case apierrors.IsNotFound(err):
		if err := c.client.create(ctx, c.desired.DeepCopyObject()); err != nil {
			return undo{}, fmt.Errorf("create: %w", err)
		}
		return undo{what: "deleted " + c.obj.Ref(), do: func(ctx context.Context) error {
			return ignoreNotFound(c.client.delete(ctx, name))
		}}, nil
	case err != nil:
		return undo{}, fmt.Errorf("read it first: %w", err)
	}
	obj := c.desired.DeepCopyObject()
	meta(obj).SetResourceVersion(meta(existing).GetResourceVersion())
	if err := c.client.update(ctx, obj); err != nil {
		return undo{}, fmt.Errorf("update: %w", err)
	}
	return undo{what: "restored " + c.obj.Ref(), do: func(ctx context.Context) error {
		now, err := c.client.get(ctx, name)
		if err != nil {
			return err
		}
		old := existing.DeepCopyObject()
		meta(old).SetResourceVersion(meta(now).GetResourceVersion())
		return c.client.update(ctx, old)
	}}, nil
}

// rollback undoes the steps in reverse. It runs on a fresh context: the caller's may be
// the reason the Apply stopped (Ctrl-C), and a half-applied set must not be left behind.
func rollback(undos []undo) error {
	if len(undos) == 0 {
		return nil
	}
	ctx := context.WithoutCancel(context.Background())
	var done, failed []string
	for _, u := range slices.Backward(undos) {
		if err := u.do(ctx); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", strings.TrimPrefix(u.what, "deleted "), err))
			continue
		}
		done = append(done, u.what)
	}
	if len(failed) > 0 {
		return fmt.Errorf("rolled back partly (%s); could not undo: %s", strings.Join(done, ", "), strings.Join(failed, "; "))
	}
	return fmt.Errorf("rolled back: %s", strings.Join(done, ", "))
}

// Delete deletes every object of the set, in the reverse of Apply's order. An object
// that does not exist is not an error: deleting is idempotent, as `kubectl delete
// --ignore-not-found` is.
func (a *Applier) Delete(ctx context.Context, set *manifest.Set) error {
	changes, err := a.plan(set)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range slices.Backward(changes) {
		if err := ignoreNotFound(c.client.delete(ctx, c.obj.Name)); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", c.ref(), err))
		}
	}
	return errors.Join(errs...)
}

// plan binds each object to its client and sorts the set into dependency order. Every
// object is checked before anything is sent, so an unsupported kind fails the set whole.
func (a *Applier) plan(set *manifest.Set) ([]change, error) {
	if set == nil || len(set.Objects) == 0 {
		return nil, errors.New("apply: the manifest set is empty")
	}
	var changes []change
	var errs []error
	for _, o := range set.Objects {
		c, err := a.bind(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s, document %d): %w", o.Ref(), o.Source, o.Doc, err))
			continue
		}
		changes = append(changes, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(changes, func(x, y change) int { return rank(x.obj.Kind) - rank(y.obj.Kind) })
	return changes, nil
}

// rank orders kinds so that each object's dependencies exist before it does: the
// namespace before what lives in it, a ServiceAccount before the pods that run as it,
// and Istio config last, once the workloads it talks about exist.
func rank(kind string) int {
	switch kind {
	case "Namespace":
		return 0
	case "ServiceAccount", "ConfigMap", "Secret", "ClusterRole", "Role":
		return 1
	case "ClusterRoleBinding", "RoleBinding":
		return 2
	case "Service", "NetworkPolicy":
		return 3
	case "Deployment", "StatefulSet", "DaemonSet", "Pod":
		return 4
	}
	return 5
}

func (a *Applier) bind(o manifest.Object) (change, error) {
	var obj runtime.Object
	switch {
	case o.Kube != nil:
		obj = o.Kube.DeepCopyObject()
	case o.Istio != nil:
		// Istio's typed clients take the client-go types, so the document is decoded again
		// into those: the manifest's own words, at its own apiVersion.
		decoded, _, err := istioscheme.Codecs.UniversalDeserializer().Decode([]byte(o.YAML), nil, nil)
		if err != nil {
			return change{}, fmt.Errorf("decode as Istio's client type: %w", err)
		}
		obj = decoded
		if o.Namespace != "" {
			meta(obj).SetNamespace(o.Namespace)
		}
	default:
		return change{}, errors.New("the manifest object holds neither a Kubernetes nor an Istio object")
	}
	c, err := a.clientFor(obj)
	if err != nil {
		return change{}, err
	}
	return change{obj: o, desired: obj, client: c}, nil
}

func meta(obj runtime.Object) metav1.Object {
	m, ok := obj.(metav1.Object)
	if !ok {
		panic(fmt.Sprintf("%T has no object metadata", obj)) // every type clientFor accepts has
	}
	return m
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
