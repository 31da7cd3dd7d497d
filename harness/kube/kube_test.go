package kube_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"

	"github.com/egresslab/egresslab/harness/kube"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/labs"
)

// world is a fake API server: client-go's and Istio's fake clientsets, with every write
// recorded in order across both.
type world struct {
	kube   *kubefake.Clientset
	istio  *istiofake.Clientset
	writes []string
}

func newWorld(objs ...runtime.Object) *world {
	w := &world{kube: kubefake.NewClientset(objs...), istio: istiofake.NewSimpleClientset()}
	record := func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := ""
		switch a := a.(type) {
		case k8stesting.CreateAction:
			name = a.GetObject().(metav1.Object).GetName()
		case k8stesting.UpdateAction:
			name = a.GetObject().(metav1.Object).GetName()
		case k8stesting.DeleteAction:
			name = a.GetName()
		}
		w.writes = append(w.writes, fmt.Sprintf("%s %s/%s %s", a.GetVerb(), a.GetResource().Version, a.GetResource().Resource, name))
		return false, nil, nil
	}
	for _, verb := range []string{"create", "update", "delete"} {
		w.kube.PrependReactor(verb, "*", record)
		w.istio.PrependReactor(verb, "*", record)
	}
	return w
}

func (w *world) applier() *kube.Applier { return kube.NewApplier(w.kube, w.istio) }

// failOn makes the fake API server refuse one verb on one resource.
func (w *world) failOn(verb, resource string) {
	refuse := func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource(resource), "", errors.New("refused by the test"))
	}
	w.kube.PrependReactor(verb, resource, refuse)
	w.istio.PrependReactor(verb, resource, refuse)
}

func load(t *testing.T, path string) *manifest.Set {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	set, err := manifest.Parse(path, data, "egresslab")
	require.NoError(t, err)
	return set
}

func TestApplySendsDependenciesFirst(t *testing.T) {
	w := newWorld()
	set := load(t, "testdata/app-and-entry.yaml")
	require.NoError(t, w.applier().Apply(context.Background(), set))
	assert.Equal(t, []string{
		"create v1/namespaces egresslab",
		"create v1/serviceaccounts client",
		"create v1/services client",
		"create v1/deployments client",
		"create v1alpha3/serviceentries jsonplaceholder",
		"create v1/destinationrules jsonplaceholder",
	}, w.writes)
}

func TestApplyUsesTheManifestsAPIVersion(t *testing.T) {
	w := newWorld()
	set := load(t, "testdata/app-and-entry.yaml")
	ctx := context.Background()
	require.NoError(t, w.applier().Apply(ctx, set))

	se, err := w.istio.NetworkingV1alpha3().ServiceEntries("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"jsonplaceholder.typicode.com"}, se.Spec.GetHosts())
	assert.Equal(t, uint32(80), se.Spec.GetPorts()[0].GetNumber())
	assert.Equal(t, "DNS", se.Spec.GetResolution().String())

	dr, err := w.istio.NetworkingV1().DestinationRules("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "jsonplaceholder.typicode.com", dr.Spec.GetHost())

	ns, err := w.kube.CoreV1().Namespaces().Get(ctx, "egresslab", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "enabled", ns.Labels["istio-injection"])
	d, err := w.kube.AppsV1().Deployments("egresslab").Get(ctx, "client", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "egresslab/client:dev", d.Spec.Template.Spec.Containers[0].Image)
}

func TestApplyTheProjectsManifests(t *testing.T) {
	w := newWorld()
	ctx := context.Background()
	for _, name := range []string{labs.ClientApp, labs.SeedServiceEntry} {
		set, err := labs.Manifest(name, "egresslab")
		require.NoError(t, err)
		require.NoError(t, w.applier().Apply(ctx, set), name)
	}
	_, err := w.istio.NetworkingV1alpha3().ServiceEntries("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	require.NoError(t, err)
	d, err := w.kube.AppsV1().Deployments("egresslab").Get(ctx, "client", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.PullNever, d.Spec.Template.Spec.Containers[0].ImagePullPolicy)
}

func TestApplyAgainUpdates(t *testing.T) {
	w := newWorld()
	ctx := context.Background()
	set := load(t, "testdata/app-and-entry.yaml")
	require.NoError(t, w.applier().Apply(ctx, set))
	w.writes = nil

	changed := load(t, "testdata/app-and-entry.yaml")
	se := changed.Objects[0]
	require.Equal(t, "ServiceEntry", se.Kind)
	changed.Objects[0].YAML = se.YAML + "  exportTo: [\".\"]\n"
	require.NoError(t, w.applier().Apply(ctx, changed))

	assert.Len(t, w.writes, 6)
	for _, write := range w.writes {
		assert.Regexp(t, "^update ", write)
	}
	got, err := w.istio.NetworkingV1alpha3().ServiceEntries("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"."}, got.Spec.GetExportTo())
}

func TestApplyRollsBackWhatItCreated(t *testing.T) {
	ctx := context.Background()
	// The namespace exists already, with a label the set changes: it must be put back, not deleted.
	existing := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "egresslab", Labels: map[string]string{"team": "lab"}}}
	w := newWorld(existing)
	w.failOn("create", "deployments")

	err := w.applier().Apply(ctx, load(t, "testdata/app-and-entry.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apply Deployment egresslab/client (testdata/app-and-entry.yaml, document 2): create:")
	assert.Contains(t, err.Error(), "refused by the test")
	assert.Contains(t, err.Error(), "rolled back: deleted Service egresslab/client, deleted ServiceAccount egresslab/client, restored Namespace egresslab")

	_, err = w.kube.CoreV1().ServiceAccounts("egresslab").Get(ctx, "client", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "ServiceAccount left behind: %v", err)
	_, err = w.kube.CoreV1().Services("egresslab").Get(ctx, "client", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "Service left behind: %v", err)
	_, err = w.istio.NetworkingV1alpha3().ServiceEntries("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the ServiceEntry after the failure must never be sent: %v", err)

	ns, err := w.kube.CoreV1().Namespaces().Get(ctx, "egresslab", metav1.GetOptions{})
	require.NoError(t, err, "a namespace that existed before must survive the rollback")
	assert.Equal(t, map[string]string{"team": "lab"}, ns.Labels)
}

func TestApplyRollbackSaysWhatItCouldNotUndo(t *testing.T) {
	w := newWorld()
	w.failOn("create", "serviceentries")
	w.failOn("delete", "services")

	err := w.applier().Apply(context.Background(), load(t, "testdata/app-and-entry.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apply ServiceEntry egresslab/jsonplaceholder")
	assert.Contains(t, err.Error(), "rolled back partly (deleted Deployment egresslab/client, deleted ServiceAccount egresslab/client, deleted Namespace egresslab); could not undo: Service egresslab/client:")
}

func TestApplyRefusesAnUnsupportedKindBeforeSendingAnything(t *testing.T) {
	w := newWorld()
	set := load(t, "testdata/app-and-entry.yaml")
	set.Objects = append(set.Objects, manifest.Object{Source: "job.yaml", Doc: 1, APIVersion: "batch/v1", Kind: "Job",
		Name: "once", Namespace: "egresslab",
		Kube: &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
			ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: "egresslab"}}})

	err := w.applier().Apply(context.Background(), set)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Job egresslab/once (job.yaml, document 1): kind Job of apiVersion batch/v1 cannot be applied")
	assert.Empty(t, w.writes)
}

func TestDeleteInReverseOrderAndNotFoundIsFine(t *testing.T) {
	w := newWorld()
	ctx := context.Background()
	set := load(t, "testdata/app-and-entry.yaml")
	require.NoError(t, w.applier().Apply(ctx, set))
	w.writes = nil

	require.NoError(t, w.applier().Delete(ctx, set))
	assert.Equal(t, []string{
		"delete v1/destinationrules jsonplaceholder",
		"delete v1alpha3/serviceentries jsonplaceholder",
		"delete v1/deployments client",
		"delete v1/services client",
		"delete v1/serviceaccounts client",
		"delete v1/namespaces egresslab",
	}, w.writes)
	_, err := w.istio.NetworkingV1alpha3().ServiceEntries("egresslab").Get(ctx, "jsonplaceholder", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))

	require.NoError(t, w.applier().Delete(ctx, set), "deleting what is already gone is not an error")
}

func TestDeleteReportsOtherErrors(t *testing.T) {
	w := newWorld()
	ctx := context.Background()
	set := load(t, "testdata/app-and-entry.yaml")
	require.NoError(t, w.applier().Apply(ctx, set))
	w.failOn("delete", "serviceentries")

	err := w.applier().Delete(ctx, set)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "delete ServiceEntry egresslab/jsonplaceholder")
	_, err = w.kube.AppsV1().Deployments("egresslab").Get(ctx, "client", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "one failure must not stop the other deletes")
}
