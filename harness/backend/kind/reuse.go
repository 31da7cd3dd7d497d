package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/manifest"
)

// A kind cluster kept from an earlier run (the lab and check commands keep theirs for
// the next lab) may hold what that run left: a lab stopped by Ctrl-C or by a failure,
// or a check, does not always get to delete what it applied, and a lab leaves the apps
// it deployed. A run that reuses the cluster starts from none of it (clearLeftovers):
//
//   - every namespace but the cluster's own (ownNamespaces), with all that is in it;
//   - every Istio config object the labs can apply (ServiceEntry, Sidecar, Gateway,
//     VirtualService, DestinationRule, AuthorizationPolicy, ...) in every namespace,
//     istio-system included: the install creates none, and one there is mesh-wide;
//   - in istio-system, each Deployment no Helm release installed (the egress gateway a
//     lab deployed), with the Service, ServiceAccount, Role and RoleBinding of its name.
//
// The mesh's mode is not among them: Setup installs the values of
// manifests/istio/values.yaml (a Helm upgrade when an earlier lab left another mode)
// and checks the mode the cluster's mesh config then holds, and every lab sets its own
// mode first. A cluster given by EGRESSLAB_KUBECONFIG is the user's, and not swept.

// ownNamespaces are the cluster's own: Kubernetes' and Istio's, kind's storage
// provisioner's, and the stand-in internet's (the labs' own hosts; offline, the public ones too).
var ownNamespaces = append(slices.Clone(manifest.SystemNamespaces), "local-path-storage", InternetNamespace)

// helmRelease annotates every object Helm installed (Istio's own, in istio-system), and
// none that a lab applied from a rendered chart (labs/apps/egress-gateway.yaml).
const helmRelease = "meta.helm.sh/release-name"

// leftover is one object to delete.
type leftover struct {
	kind, namespace, name string
	del                   func(ctx context.Context) error
}

func (l leftover) String() string {
	if l.namespace == "" {
		return l.name
	}
	return l.namespace + "/" + l.name
}

// sweepKind lists one kind's objects and deletes one of them.
type sweepKind struct {
	kind string
	list func(ctx context.Context) ([]metav1.Object, error)
	del  func(ctx context.Context, namespace, name string) error
}

// lister is what every generated typed client of a namespaced kind has, client-go's
// and Istio's alike.
type lister[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// kindIn is a kind of objects read from namespace ns ("" for every namespace) through
// the typed client in gives for a namespace.
func kindIn[L runtime.Object, C lister[L]](kind, ns string, in func(namespace string) C) sweepKind {
	return sweepKind{kind: kind,
		list: func(ctx context.Context) ([]metav1.Object, error) {
			l, err := in(ns).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				return nil, nil // the kind is not served (Istio's CRDs are not installed yet)
			}
			if err != nil {
				return nil, fmt.Errorf("list %ss: %w", kind, err)
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				return nil, fmt.Errorf("list %ss: %w", kind, err)
			}
			out := make([]metav1.Object, 0, len(items))
			for _, item := range items {
				o, err := meta.Accessor(item)
				if err != nil {
					return nil, fmt.Errorf("list %ss: %w", kind, err)
				}
				out = append(out, o)
			}
			return out, nil
		},
		del: func(ctx context.Context, namespace, name string) error {
			bg := metav1.DeletePropagationBackground
			return in(namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
		},
	}
}

// istioKinds are the Istio kinds egresslab applies (harness/kube), each listed once, in
// every namespace, at the API version every Istio release egresslab installs serves.
func istioKinds(ic istioclient.Interface) []sweepKind {
	all := metav1.NamespaceAll
	n, s := ic.NetworkingV1(), ic.SecurityV1()
	return []sweepKind{
		kindIn("ServiceEntry", all, n.ServiceEntries),
		kindIn("Sidecar", all, n.Sidecars),
		kindIn("Gateway", all, n.Gateways),
		kindIn("VirtualService", all, n.VirtualServices),
		kindIn("DestinationRule", all, n.DestinationRules),
		kindIn("WorkloadEntry", all, n.WorkloadEntries),
		kindIn("WorkloadGroup", all, n.WorkloadGroups),
		kindIn("EnvoyFilter", all, ic.NetworkingV1alpha3().EnvoyFilters),
		kindIn("AuthorizationPolicy", all, s.AuthorizationPolicies),
		kindIn("PeerAuthentication", all, s.PeerAuthentications),
		kindIn("RequestAuthentication", all, s.RequestAuthentications),
		kindIn("Telemetry", all, ic.TelemetryV1().Telemetries),
	}
}

// appKinds are what an app deployed in istio-system is made of: its Deployment first,
// which decides whether the others of its name go.
func appKinds(k kubernetes.Interface) []sweepKind {
	ns := istioinstall.Namespace
	return []sweepKind{
		kindIn("Deployment", ns, k.AppsV1().Deployments),
		kindIn("Service", ns, k.CoreV1().Services),
		kindIn("ServiceAccount", ns, k.CoreV1().ServiceAccounts),
		kindIn("Role", ns, k.RbacV1().Roles),
		kindIn("RoleBinding", ns, k.RbacV1().RoleBindings),
	}
}

// findLeftovers lists, one list per kind and all at once, what earlier runs left: the
// namespaces to delete, and the objects to delete outside them.
func findLeftovers(ctx context.Context, k kubernetes.Interface, ic istioclient.Interface) (namespaces []string, objects []leftover, err error) {
	istio := istioKinds(ic)
	kinds := slices.Concat(istio, appKinds(k))
	found := make([][]metav1.Object, len(kinds))
	err = parallel(len(kinds)+1, func(i int) error {
		if i < len(kinds) {
			var err error
			found[i], err = kinds[i].list(ctx)
			return err
		}
		list, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list namespaces: %w", err)
		}
		for _, ns := range list.Items {
			if !slices.Contains(ownNamespaces, ns.Name) {
				namespaces = append(namespaces, ns.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(namespaces)
	apps := map[string]bool{} // the Deployments in istio-system no Helm release installed
	for i, sk := range kinds {
		for _, o := range found[i] {
			if slices.Contains(namespaces, o.GetNamespace()) {
				continue // it goes with its namespace
			}
			if i >= len(istio) { // part of an app in istio-system
				if _, helm := o.GetAnnotations()[helmRelease]; helm {
					continue
				}
				if sk.kind == "Deployment" {
					apps[o.GetName()] = true
				} else if !apps[o.GetName()] {
					continue // not an app's: the namespace's default ServiceAccount, say
				}
			}
			del, ns, name := sk.del, o.GetNamespace(), o.GetName()
			objects = append(objects, leftover{kind: sk.kind, namespace: ns, name: name,
				del: func(ctx context.Context) error { return del(ctx, ns, name) }})
		}
	}
	return namespaces, objects, nil
}

// clearLeftovers deletes what findLeftovers finds, all at once, and waits until the
// namespaces are gone (a lab's namespace cannot be applied while it is terminating).
// The pods in them are deleted without a grace period: nothing in them is worth the
// half minute a client may take to stop. It returns what it removed, for the progress.
func clearLeftovers(ctx context.Context, k kubernetes.Interface, ic istioclient.Interface, timeout, poll time.Duration) (string, error) {
	namespaces, objects, err := findLeftovers(ctx, k, ic)
	if err != nil {
		return "", err
	}
	zero := int64(0)
	err = parallel(len(namespaces)+len(objects), func(i int) error {
		if i < len(objects) {
			o := objects[i]
			if err := o.del(ctx); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete %s %s: %w", o.kind, o, err)
			}
			return nil
		}
		ns := namespaces[i-len(objects)]
		if err := k.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete namespace %s: %w", ns, err)
		}
		// The namespace is terminating: nothing new starts in it, and its pods may go at once.
		if err := k.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
			metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the pods of namespace %s: %w", ns, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := waitGone(ctx, k, namespaces, timeout, poll); err != nil {
		return "", err
	}
	return removed(namespaces, objects), nil
}

// waitGone waits until none of the namespaces exists.
func waitGone(ctx context.Context, k kubernetes.Interface, namespaces []string, timeout, poll time.Duration) error {
	if len(namespaces) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		list, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err == nil {
			var left []string
			for _, ns := range list.Items {
				if slices.Contains(namespaces, ns.Name) {
					left = append(left, ns.Name)
				}
			}
			if len(left) == 0 {
				return nil
			}
			err = fmt.Errorf("namespace %s still terminating", strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(poll):
		}
	}
}

// removed says what was removed, by kind: "namespaces egresslab, team-b; ServiceEntry
// istio-system/jsonplaceholder", or "nothing".
func removed(namespaces []string, objects []leftover) string {
	var parts []string
	switch len(namespaces) {
	case 0:
	case 1:
		parts = append(parts, "namespace "+namespaces[0])
	default:
		parts = append(parts, "namespaces "+strings.Join(namespaces, ", "))
	}
	var kinds []string
	byKind := map[string][]string{}
	for _, o := range objects {
		if byKind[o.kind] == nil {
			kinds = append(kinds, o.kind)
		}
		byKind[o.kind] = append(byKind[o.kind], o.String())
	}
	for _, kind := range kinds {
		slices.Sort(byKind[kind])
		parts = append(parts, kind+" "+strings.Join(byKind[kind], ", "))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// parallel runs do(0) to do(n-1) at once and joins their errors.
func parallel(n int, do func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = do(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Namespaces take a few seconds to go once their pods are deleted at once; the
// timeout is for a finalizer that never finishes.
const (
	leftoversTimeout = 2 * time.Minute
	leftoversPoll    = 250 * time.Millisecond
)

// sweepClients are clients of cfg's cluster for the sweep, whose lists and deletes go
// at once: client-go's default rate (5 requests a second, bursts of 10) would queue them.
func sweepClients(cfg *rest.Config) (kubernetes.Interface, istioclient.Interface, error) {
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 100, 200
	k, err := kubernetes.NewForConfig(fast)
	if err != nil {
		return nil, nil, err
	}
	ic, err := istioclient.NewForConfig(fast)
	return k, ic, err
}

// startClean clears what earlier runs left on the reused cluster called name, and says
// on w what it removed.
func startClean(ctx context.Context, w io.Writer, name string, k kubernetes.Interface, ic istioclient.Interface, keep bool) error {
	start := time.Now()
	what, err := clearLeftovers(ctx, k, ic, leftoversTimeout, leftoversPoll)
	if err != nil {
		return fmt.Errorf("reusing kind cluster %s: could not remove what earlier runs left: %w (egresslab clean deletes the cluster)", name, err)
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	if what == "nothing" {
		fmt.Fprintf(w, "▸ reusing kind cluster %s: nothing left by earlier runs (%s)\n", name, took)
	} else {
		fmt.Fprintf(w, "▸ reusing kind cluster %s: removed what earlier runs left: %s (%s)\n", name, what, took)
	}
	if !keep {
		fmt.Fprintf(w, "  it is deleted at the end of this run (%s=1, or -keep on egresslab lab and check, keeps it)\n", EnvKeep)
	}
	return nil
}
