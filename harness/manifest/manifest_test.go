package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/labs"
)

func TestBadEntriesAreRefusedWithFileObjectAndIstioMessage(t *testing.T) {
	cases := []struct {
		file string
		// every error must name the file; these must appear too
		want []string
	}{
		{"not-yaml.yaml", []string{"not valid YAML", "fix:"}},
		{"unknown-kind.yaml", []string{"document 1", "ServiceEntryy typo", `unknown kind "ServiceEntryy"`, "fix:"}},
		{"no-hosts.yaml", []string{"ServiceEntry no-hosts", "Istio rejects it", "service entry must have at least one host", "fix: list the external host"}},
		{"wildcard-dns.yaml", []string{"ServiceEntry wildcard-dns", "Istio rejects it", "wildcard", "fix: a wildcard host"}},
		{"unknown-protocol.yaml", []string{"ServiceEntry bad-protocol", "Istio rejects it", "HTTPZ", "fix: use one of Istio's port protocols"}},
		{"unknown-field.yaml", []string{"ServiceEntry misspelt-field", "Istio cannot read its spec", "hots"}},
		{"second-doc-bad.yaml", []string{"document 2", "ServiceEntry bad", "at least one host"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			set, err := manifest.LoadFile(path, "egresslab")
			require.Error(t, err)
			assert.Nil(t, set, "a refused file yields nothing to apply")
			msg := err.Error()
			assert.Contains(t, msg, path)
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

func TestMissingFileNamesThePath(t *testing.T) {
	_, err := manifest.LoadFile("testdata/nope.yaml", "egresslab")
	require.ErrorContains(t, err, "testdata/nope.yaml: cannot read it")
}

func TestEmptyFileIsRefused(t *testing.T) {
	_, err := manifest.Parse("empty.yaml", []byte("# nothing here\n---\n"), "egresslab")
	require.ErrorContains(t, err, "empty.yaml: holds no objects")
}

func TestSeedEntryBecomesIstioConfigInTheDefaultNamespace(t *testing.T) {
	set, err := labs.Manifest(labs.SeedServiceEntry, "egresslab")
	require.NoError(t, err)
	require.Len(t, set.Objects, 1)
	o := set.Objects[0]
	assert.Equal(t, "ServiceEntry egresslab/jsonplaceholder", o.Ref())
	require.NotNil(t, o.Istio)
	assert.Equal(t, "egresslab", o.Istio.Namespace)
	se, ok := o.Istio.Spec.(*networking.ServiceEntry)
	require.True(t, ok, "spec is %T", o.Istio.Spec)
	assert.Equal(t, []string{"jsonplaceholder.typicode.com"}, se.Hosts)
	assert.EqualValues(t, 80, se.Ports[0].Number)
	assert.Equal(t, networking.ServiceEntry_DNS, se.Resolution)
}

// The lab is built around the seed exactly as the lab's source material gives it.
func TestSeedEntryIsTheSharedOneUnchanged(t *testing.T) {
	shared, err := os.ReadFile("../../../shared/serviceentry-jsonplaceholder.yaml")
	if os.IsNotExist(err) {
		t.Skip("../shared/ is not beside this checkout, so there is nothing to compare the seed with")
	}
	require.NoError(t, err)
	ours, err := labs.FS.ReadFile(labs.SeedServiceEntry)
	require.NoError(t, err)
	assert.Equal(t, string(shared), string(ours))
}

func TestClientAppDecodesIntoTypedKubernetesObjects(t *testing.T) {
	set, err := labs.Manifest(labs.ClientApp, "egresslab")
	require.NoError(t, err)
	var kinds []string
	for _, o := range set.Objects {
		kinds = append(kinds, o.Kind)
		assert.Nil(t, o.Istio)
		require.NotNil(t, o.Kube)
	}
	assert.Equal(t, []string{"Namespace", "ServiceAccount", "Service", "Deployment"}, kinds)
	ns := set.Objects[0].Kube.(*corev1.Namespace)
	assert.Equal(t, "enabled", ns.Labels["istio-injection"])
	d := set.Objects[3].Kube.(*appsv1.Deployment)
	assert.Equal(t, "client", d.Spec.Template.Spec.ServiceAccountName)
	assert.Len(t, set.KubeObjects(), 4)
}

func TestNamespaceDefaultsOnlyForNamespacedKinds(t *testing.T) {
	doc := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n"
	set, err := manifest.Parse("x.yaml", []byte(doc), "egresslab")
	require.NoError(t, err)
	assert.Equal(t, "", set.Objects[0].Namespace)
	assert.Equal(t, "egresslab", set.Objects[1].Namespace)
	assert.Equal(t, "egresslab", set.Objects[1].Kube.(*corev1.ServiceAccount).Namespace)
}

func TestMeshValuesComeFromTheHelmValuesFile(t *testing.T) {
	mv, err := manifest.LoadMeshValues()
	require.NoError(t, err)
	assert.Equal(t, manifest.RegistryOnly, mv.OutboundMode())
	assert.Equal(t, "/dev/stdout", mv.Mesh.GetAccessLogFile())

	allow, err := mv.WithOutboundMode(manifest.AllowAny)
	require.NoError(t, err)
	assert.Equal(t, manifest.AllowAny, allow.OutboundMode())
	assert.Equal(t, manifest.RegistryOnly, mv.OutboundMode(), "the original values are not changed")
	assert.Equal(t, map[string]any{"mode": manifest.AllowAny},
		allow.Values["meshConfig"].(map[string]any)["outboundTrafficPolicy"], "Helm gets the new mode too")

	_, err = mv.WithOutboundMode("OPEN")
	require.ErrorContains(t, err, "use one of REGISTRY_ONLY, ALLOW_ANY, ALLOW_ANY_DYNAMIC_DNS")
}

func TestMeshValuesWithAnUnknownMeshFieldAreRefused(t *testing.T) {
	_, err := manifest.ParseMeshValues("values.yaml", []byte("meshConfig:\n  outboundTraficPolicy:\n    mode: REGISTRY_ONLY\n"))
	require.ErrorContains(t, err, "values.yaml (meshConfig): Istio cannot read it")
}

// The API server refuses an object named Bad_Name!; sim gave it a verdict. Now every
// backend refuses it when the file is read, before anything is applied.
func TestAnInvalidObjectNameIsRefusedWhenRead(t *testing.T) {
	doc := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: Bad_Name!\nspec:\n  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n"
	_, err := manifest.Parse("bad-name.yaml", []byte(doc), "egresslab")
	if err == nil {
		t.Fatal("want an error for metadata.name Bad_Name!")
	}
	for _, want := range []string{"bad-name.yaml, document 1 (ServiceEntry Bad_Name!)", `metadata.name "Bad_Name!" is not a valid Kubernetes object name`, "fix: use lower-case letters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
