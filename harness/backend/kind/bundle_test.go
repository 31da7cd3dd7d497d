package kind

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
)

// egresslab bundle, online, through a company's mirrors (EGRESSLAB_ISTIO_CHARTS, a Helm
// chart repository; EGRESSLAB_REGISTRY_MIRROR, a registry holding docker.io's images
// under their own names): the bundle holds the charts the repository gave and the very
// images the mirror gave, under their docker.io names. Both mirrors are local servers
// here; the code is what runs against the internet.
func TestBundleWrittenThroughTheMirrorsHoldsWhatTheyGave(t *testing.T) {
	version := istioinstall.Version
	charts := chartRepository(t, version)

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	want := map[string]v1.Hash{}
	for _, ref := range istioinstall.Images(version) {
		img, err := random.Image(512, 1)
		require.NoError(t, err)
		r, err := name.ParseReference(ref)
		require.NoError(t, err)
		onMirror, err := name.ParseReference(host+"/"+r.Context().RepositoryStr()+":"+r.Identifier(), name.Insecure)
		require.NoError(t, err)
		require.NoError(t, remote.Write(onMirror, img))
		want[ref], err = img.Digest()
		require.NoError(t, err)
	}

	path := filepath.Join(t.TempDir(), "istio.bundle")
	var progress strings.Builder
	p := New(WithChartRepo(charts.URL), WithRegistryMirror(host), WithProgress(&progress))
	said, err := p.WriteBundle(context.Background(), path, backend.BundleSource{})
	require.NoError(t, err, progress.String())
	assert.Contains(t, said, "wrote "+path)
	assert.Contains(t, said, EnvBundle+"="+path)
	assert.Contains(t, progress.String(), "download chart istiod "+version+" from "+charts.URL)
	assert.Contains(t, progress.String(), "pull docker.io/istio/pilot:"+version)

	b, err := mirror.Open(path, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, version, b.Istio)
	assert.Equal(t, map[string]string{"base": "base-" + version + ".tgz", "istiod": "istiod-" + version + ".tgz"}, b.Charts)
	served, err := mirror.ServeRegistry(b, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = served.Close() })
	for ref, digest := range want {
		r, _ := name.ParseReference(ref)
		got, err := remote.Image(must(name.ParseReference(served.Addr+"/"+r.Context().RepositoryStr()+":"+r.Identifier(), name.Insecure)))
		require.NoError(t, err, ref)
		gotDigest, err := got.Digest()
		require.NoError(t, err)
		assert.Equal(t, digest, gotDigest, "%s in the bundle is the image the mirror gave", ref)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	assert.Len(t, entries, 1, "the bundle and nothing else is left beside it")
}

// A mirror that lacks an image fails the bundle, naming the image and the mirror, and
// leaves no file.
func TestBundleFromAMirrorWithoutTheImagesFailsAndWritesNothing(t *testing.T) {
	charts := chartRepository(t, istioinstall.Version)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")

	path := filepath.Join(t.TempDir(), "istio.bundle")
	_, err := New(WithChartRepo(charts.URL), WithRegistryMirror(host), WithProgress(&strings.Builder{})).
		WriteBundle(context.Background(), path, backend.BundleSource{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pull docker.io/istio/pilot:"+istioinstall.Version+" from the registry mirror of docker.io at http://"+host)
	entries, _ := os.ReadDir(filepath.Dir(path))
	assert.Empty(t, entries, "no bundle, no temporary folder")
}

// chartRepository serves a Helm chart repository holding Istio's two charts (empty ones)
// at version, as a company's mirror of Istio's repository would.
func chartRepository(t *testing.T, version string) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	for _, c := range []string{istioinstall.BaseChart, istioinstall.IstiodChart} {
		_, err := chartutil.Save(&chart.Chart{Metadata: &chart.Metadata{APIVersion: "v2", Name: c, Version: version}}, dir)
		require.NoError(t, err)
	}
	index, err := repo.IndexDirectory(dir, "")
	require.NoError(t, err)
	require.NoError(t, index.WriteFile(filepath.Join(dir, "index.yaml"), 0o644))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
