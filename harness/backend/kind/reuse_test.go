package kind

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	inetv1 "istio.io/client-go/pkg/apis/networking/v1"
	isecv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
)

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// helm is an object Helm installed (Istio's own).
func helm(ns, name string) metav1.ObjectMeta {
	m := om(ns, name)
	m.Annotations = map[string]string{helmRelease: "istiod"}
	return m
}

func namespaces(names ...string) []runtime.Object {
	var out []runtime.Object
	for _, n := range names {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	return out
}

// A cluster as earlier runs leave it: the namespaces lab stopped half-way (its
// namespace elsewhere, an entry in istio-system), the egress gateway lab's gateway and
// routes, the per-workload lab's team-b, an AuthorizationPolicy of a check -f; with
// Istio's own objects, kind's and the stand-in internet's beside them.
func leftCluster() (*kubefake.Clientset, *istiofake.Clientset) {
	objs := namespaces("default", "kube-system", "kube-public", "kube-node-lease", "istio-system", "local-path-storage",
		InternetNamespace, "egresslab", "team-b", "elsewhere")
	objs = append(objs,
		&appsv1.Deployment{ObjectMeta: helm("istio-system", "istiod")},
		&corev1.Service{ObjectMeta: helm("istio-system", "istiod")},
		&corev1.ServiceAccount{ObjectMeta: helm("istio-system", "istiod")},
		&corev1.ServiceAccount{ObjectMeta: om("istio-system", "default")},
		&rbacv1.Role{ObjectMeta: helm("istio-system", "istiod")},
		&rbacv1.RoleBinding{ObjectMeta: helm("istio-system", "istiod")},
		&corev1.ConfigMap{ObjectMeta: om("istio-system", "istio")},
		&corev1.Secret{ObjectMeta: om("istio-system", "istio-ca-secret")},
		// labs/apps/egress-gateway.yaml, rendered from Istio's gateway chart: no Helm release.
		&appsv1.Deployment{ObjectMeta: om("istio-system", "istio-egressgateway")},
		&corev1.Service{ObjectMeta: om("istio-system", "istio-egressgateway")},
		&corev1.ServiceAccount{ObjectMeta: om("istio-system", "istio-egressgateway")},
		&rbacv1.Role{ObjectMeta: om("istio-system", "istio-egressgateway")},
		&rbacv1.RoleBinding{ObjectMeta: om("istio-system", "istio-egressgateway")},
		&appsv1.Deployment{ObjectMeta: om(InternetNamespace, internetName)},
		&appsv1.Deployment{ObjectMeta: om("egresslab", "client")},
	)
	k := kubefake.NewClientset(objs...)
	ic := istiofake.NewSimpleClientset(
		&inetv1.ServiceEntry{ObjectMeta: om("istio-system", "jsonplaceholder")},
		&inetv1.ServiceEntry{ObjectMeta: om("elsewhere", "jsonplaceholder")},
		&inetv1.Sidecar{ObjectMeta: om("egresslab", "default")},
		&inetv1.VirtualService{ObjectMeta: om("default", "through-the-gateway")},
		&inetv1.DestinationRule{ObjectMeta: om("default", "egressgateway")},
		&isecv1.AuthorizationPolicy{ObjectMeta: om("default", "deny-all")},
	)
	// Created through the client: the fake's tracker files an object given to
	// NewSimpleClientset under a resource it guesses from the kind ("gatewaies").
	if _, err := ic.NetworkingV1().Gateways("istio-system").Create(context.Background(),
		&inetv1.Gateway{ObjectMeta: om("istio-system", "istio-egressgateway")}, metav1.CreateOptions{}); err != nil {
		panic(err)
	}
	ic.ClearActions()
	return k, ic
}

// cleanCluster is a cluster with only its own namespaces and Istio's objects.
func cleanCluster() (*kubefake.Clientset, *istiofake.Clientset) {
	objs := namespaces(ownNamespaces...)
	objs = append(objs, &appsv1.Deployment{ObjectMeta: helm("istio-system", "istiod")},
		&corev1.ServiceAccount{ObjectMeta: om("istio-system", "default")})
	return kubefake.NewClientset(objs...), istiofake.NewSimpleClientset()
}

func names[T any](t *testing.T, items []T, name func(T) string) []string {
	t.Helper()
	var out []string
	for _, i := range items {
		out = append(out, name(i))
	}
	slices.Sort(out)
	return out
}

func TestAReusedClusterStartsFromACleanSlate(t *testing.T) {
	ctx := context.Background()
	k, ic := leftCluster()
	var progress bytes.Buffer
	require.NoError(t, startClean(ctx, &progress, "egresslab", k, ic, true))

	assert.Regexp(t, "^"+regexp.QuoteMeta("▸ reusing kind cluster egresslab: removed what earlier runs left: "+
		"namespaces egresslab, elsewhere, team-b; ServiceEntry istio-system/jsonplaceholder; Gateway istio-system/istio-egressgateway; "+
		"VirtualService default/through-the-gateway; DestinationRule default/egressgateway; AuthorizationPolicy default/deny-all; "+
		"Deployment istio-system/istio-egressgateway; Service istio-system/istio-egressgateway; "+
		"ServiceAccount istio-system/istio-egressgateway; Role istio-system/istio-egressgateway; "+
		"RoleBinding istio-system/istio-egressgateway (")+`[0-9.]+m?s\)`+"\n$", progress.String())

	// Fast: each kind listed once, across every namespace; what is in a deleted namespace
	// goes with it, and its pods at once.
	lists := map[string]int{}
	for _, a := range ic.Actions() {
		if a.GetVerb() == "list" {
			lists[a.GetResource().Resource]++
			assert.Empty(t, a.GetNamespace(), "%s listed in every namespace at once", a.GetResource().Resource)
		}
		if a.GetVerb() == "delete" {
			assert.NotEqual(t, "elsewhere", a.GetNamespace(), "an object of a deleted namespace goes with it")
		}
	}
	assert.Len(t, lists, len(istioKinds(ic)))
	for r, n := range lists {
		assert.Equal(t, 1, n, r)
	}
	var podsDeleted []string
	for _, a := range k.Actions() {
		if dc, ok := a.(k8stesting.DeleteCollectionActionImpl); ok && a.GetResource().Resource == "pods" {
			require.NotNil(t, dc.DeleteOptions.GracePeriodSeconds)
			assert.Zero(t, *dc.DeleteOptions.GracePeriodSeconds)
			podsDeleted = append(podsDeleted, a.GetNamespace())
		}
	}
	slices.Sort(podsDeleted)
	assert.Equal(t, []string{"egresslab", "elsewhere", "team-b"}, podsDeleted)

	nss, err := k.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, names(t, ownNamespaces, func(s string) string { return s }),
		names(t, nss.Items, func(n corev1.Namespace) string { return n.Name }), "only the cluster's own namespaces are left")

	ses, err := ic.NetworkingV1().ServiceEntries("istio-system").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, ses.Items, "an entry in istio-system is mesh-wide: it goes")
	aps, err := ic.SecurityV1().AuthorizationPolicies("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, aps.Items)

	deps, err := k.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{InternetNamespace + "/" + internetName, "egresslab/client", "istio-system/istiod"},
		names(t, deps.Items, func(d appsv1.Deployment) string { return d.Namespace + "/" + d.Name }),
		"istiod stays, the egress gateway goes (the fake does not empty a deleted namespace: egresslab/client goes with it)")
	sas, err := k.CoreV1().ServiceAccounts("istio-system").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"default", "istiod"}, names(t, sas.Items, func(s corev1.ServiceAccount) string { return s.Name }))
	for _, get := range []func() error{
		func() error {
			_, err := k.CoreV1().Services("istio-system").Get(ctx, "istiod", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := k.RbacV1().Roles("istio-system").Get(ctx, "istiod", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := k.RbacV1().RoleBindings("istio-system").Get(ctx, "istiod", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := k.CoreV1().ConfigMaps("istio-system").Get(ctx, "istio", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := k.CoreV1().Secrets("istio-system").Get(ctx, "istio-ca-secret", metav1.GetOptions{})
			return err
		},
	} {
		assert.NoError(t, get(), "Istio's own objects stay")
	}

}

func TestACleanClusterHasNothingToRemove(t *testing.T) {
	k, ic := cleanCluster()
	var progress bytes.Buffer
	require.NoError(t, startClean(context.Background(), &progress, "egresslab", k, ic, false))
	assert.Regexp(t, `^▸ reusing kind cluster egresslab: nothing left by earlier runs \([0-9.]+m?s\)
  it is deleted at the end of this run \(EGRESSLAB_KEEP=1, or -keep on egresslab lab and check, keeps it\)
$`, progress.String())
}

// A cluster whose earlier run stopped before Istio was installed serves none of its
// kinds: that is nothing to remove, not an error.
func TestAClusterWithoutIstiosKindsHasNoneToRemove(t *testing.T) {
	k := kubefake.NewClientset(namespaces("default", "kube-system", "egresslab")...)
	ic := istiofake.NewSimpleClientset()
	ic.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: a.GetResource().Group, Resource: a.GetResource().Resource}, "")
	})
	var progress bytes.Buffer
	require.NoError(t, startClean(context.Background(), &progress, "egresslab", k, ic, true))
	assert.Contains(t, progress.String(), "removed what earlier runs left: namespace egresslab (")
}

// A namespace takes a while to go; the sweep waits for it, and says which one did not.
func TestTheSweepWaitsForTheNamespacesToGo(t *testing.T) {
	ctx := context.Background()
	k := kubefake.NewClientset(namespaces("default", "egresslab")...)
	ic := istiofake.NewSimpleClientset()
	terminating := 3 // lists that still see it after its delete
	deleted := false
	k.PrependReactor("delete", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		deleted = true
		return true, nil, nil // the real API server keeps it, Terminating
	})
	k.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		if deleted && terminating > 0 {
			terminating--
			return true, &corev1.NamespaceList{Items: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "egresslab"}}}}, nil
		}
		if deleted {
			return true, &corev1.NamespaceList{Items: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}}, nil
		}
		return false, nil, nil
	})
	what, err := clearLeftovers(ctx, k, ic, time.Second, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, "namespace egresslab", what)
	assert.Zero(t, terminating, "it waited until the namespace was gone")

	terminating, deleted = 1<<30, false
	_, err = clearLeftovers(ctx, k, ic, 50*time.Millisecond, 5*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "namespace egresslab still terminating")

}

// A sweep that fails stops the run, saying what to do.
func TestASweepThatFailsSaysWhatToDo(t *testing.T) {
	k := kubefake.NewClientset()
	k.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	var progress bytes.Buffer
	err := startClean(context.Background(), &progress, "egresslab", k, istiofake.NewSimpleClientset(), true)
	require.Error(t, err)
	assert.Equal(t, "reusing kind cluster egresslab: could not remove what earlier runs left: list namespaces: connection refused "+
		"(egresslab clean deletes the cluster)", err.Error())
	assert.Empty(t, progress.String())
}
