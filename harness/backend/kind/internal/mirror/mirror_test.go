package mirror_test

import (
	"archive/tar"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/getter"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// chartArchive packages a small chart NAME at version, as `helm package` does.
func chartArchive(t *testing.T, chartName, version string) string {
	t.Helper()
	ch := &chart.Chart{Metadata: &chart.Metadata{APIVersion: "v2", Name: chartName, Version: version}}
	p, err := chartutil.Save(ch, t.TempDir())
	require.NoError(t, err)
	return p
}

func writeBundle(t *testing.T) (string, map[string]v1.Image) {
	t.Helper()
	images := map[string]v1.Image{}
	for _, ref := range []string{"docker.io/istio/pilot:1.31.0", "docker.io/istio/proxyv2:1.31.0"} {
		img, err := random.Image(1024, 2)
		require.NoError(t, err)
		images[ref] = img
	}
	path := filepath.Join(t.TempDir(), "istio.bundle")
	err := mirror.Write(path, "1.31.0", map[string]string{
		"base": chartArchive(t, "base", "1.31.0"), "istiod": chartArchive(t, "istiod", "1.31.0")}, images, "", nil)
	require.NoError(t, err)
	return path, images
}

// A bundle holds a Helm chart repository and the images; opened, its chart repository
// answers Helm as Istio's does, and its registry gives containerd (here
// go-containerregistry, speaking the same registry API) the very images written, by
// tag, as a mirror of docker.io is asked for them.
func TestABundleServesItsChartsAndImagesAsTheInternetWould(t *testing.T) {
	path, images := writeBundle(t)
	b, err := mirror.Open(path, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, "1.31.0", b.Istio)
	assert.Equal(t, map[string]string{"base": "base-1.31.0.tgz", "istiod": "istiod-1.31.0.tgz"}, b.Charts)
	assert.Equal(t, []string{"index.docker.io/istio/pilot:1.31.0", "index.docker.io/istio/proxyv2:1.31.0"}, b.Images)
	assert.True(t, b.HasImage("istio/pilot:1.31.0"))
	assert.False(t, b.HasImage("docker.io/istio/pilot:1.30.0"))

	charts, err := mirror.ServeCharts(b, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = charts.Close() })
	// Helm's own download of the index and of the archive it names.
	r, err := repo.NewChartRepository(&repo.Entry{Name: "mirror", URL: charts.URL}, getter.All(cli.New()))
	require.NoError(t, err)
	r.CachePath = t.TempDir()
	indexFile, err := r.DownloadIndexFile()
	require.NoError(t, err)
	index, err := repo.LoadIndexFile(indexFile)
	require.NoError(t, err)
	cv, err := index.Get("istiod", "1.31.0")
	require.NoError(t, err)
	assert.Equal(t, []string{"istiod-1.31.0.tgz"}, cv.URLs)
	resp, err := http.Get(charts.URL + "/" + cv.URLs[0])
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, charts.Saw(http.MethodGet, "/index.yaml"), charts.Summary())
	assert.True(t, charts.Saw(http.MethodGet, "/istiod-1.31.0.tgz"), charts.Summary())
	assert.False(t, charts.Saw(http.MethodGet, "/base-1.31.0.tgz"), "only what was asked for is in the log")

	reg, err := mirror.ServeRegistry(b, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })
	for ref, want := range images {
		r, err := name.ParseReference(ref)
		require.NoError(t, err)
		viaMirror, err := name.ParseReference(reg.Addr+"/"+r.Context().RepositoryStr()+":"+r.Identifier(), name.Insecure)
		require.NoError(t, err)
		got, err := remote.Image(viaMirror)
		require.NoError(t, err, ref)
		wantDigest, err := want.Digest()
		require.NoError(t, err)
		gotDigest, err := got.Digest()
		require.NoError(t, err)
		assert.Equal(t, wantDigest, gotDigest, ref)
		layers, err := got.Layers()
		require.NoError(t, err)
		for _, l := range layers {
			rc, err := l.Compressed()
			require.NoError(t, err, "blob of %s", ref)
			rc.Close()
		}
		assert.True(t, reg.Pulled(ref), reg.Summary())
	}
	assert.False(t, reg.Pulled("docker.io/istio/pilot:1.30.0"))

	// Read-only: nothing can be pushed into a mirror.
	req, err := http.NewRequest(http.MethodPut, reg.URL+"/v2/istio/pilot/manifests/evil", strings.NewReader("{}"))
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// An image the bundle lacks is the registry's 404, which containerd reports as "not found".
func TestAnImageTheBundleLacksIsNotFound(t *testing.T) {
	path, _ := writeBundle(t)
	b, err := mirror.Open(path, t.TempDir())
	require.NoError(t, err)
	reg, err := mirror.ServeRegistry(b, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })
	resp, err := http.Get(reg.URL + "/v2/istio/proxyv2/manifests/0.0.0-missing")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestWriteRefusesAnImageNotOnDockerHubAndLeavesNoFile(t *testing.T) {
	img, err := random.Image(16, 1)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "b.bundle")
	err = mirror.Write(path, "1.31.0", nil, map[string]v1.Image{"ghcr.io/istio/pilot:1.31.0": img}, "", nil)
	require.ErrorContains(t, err, "image ghcr.io/istio/pilot:1.31.0 is not on docker.io, the one registry a bundle mirrors")
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "a refused bundle leaves no file")
	left, _ := os.ReadDir(filepath.Dir(path))
	assert.Empty(t, left, "nor a temporary folder")
}

func TestOpenRefusesWhatIsNotABundle(t *testing.T) {
	dir := t.TempDir()
	notTar := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notTar, []byte("hello"), 0o644))
	_, err := mirror.Open(notTar, t.TempDir())
	require.ErrorContains(t, err, "open bundle "+notTar)
	require.ErrorContains(t, err, "is it a file egresslab bundle wrote?")

	escape := filepath.Join(dir, "escape.tar")
	f, err := os.Create(escape)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "../outside", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
	_, err = tw.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
	into := t.TempDir()
	_, err = mirror.Open(escape, filepath.Join(into, "b"))
	require.ErrorContains(t, err, "../outside lies outside the bundle")
	_, err = os.Stat(filepath.Join(into, "outside"))
	assert.True(t, os.IsNotExist(err))

	_, err = mirror.Open(dir, t.TempDir())
	require.ErrorContains(t, err, "not a regular file")
}
