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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
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
	nodeImage := "kindest/node:v1.35.8"
	for _, ref := range append(istioinstall.BundleImages(version), nodeImage) {
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
	p := New(WithChartRepo(charts.URL), WithRegistryMirror(host), WithNodeImage(nodeImage), WithProgress(&progress))
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
	assert.Equal(t, "index.docker.io/"+nodeImage, b.NodeImage)
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

// A bundle's kind node image is given to Docker (docker load) when Docker lacks it, and
// the cluster runs on it: kind pulls nothing. Docker is a stand-in CLI here that keeps
// what it was asked to load.
func TestTheBundlesNodeImageIsLoadedIntoDocker(t *testing.T) {
	img, err := random.Image(512, 2)
	require.NoError(t, err)
	tag := withoutDigest(cluster.NodeImage)
	path := filepath.Join(t.TempDir(), "istio.bundle")
	require.NoError(t, mirror.Write(path, istioinstall.Version, nil, map[string]v1.Image{tag: img}, tag, nil))
	b, err := mirror.Open(path, t.TempDir())
	require.NoError(t, err)

	bin := t.TempDir()
	loaded := filepath.Join(t.TempDir(), "loaded.tar")
	script := "#!/bin/sh\ncase \"$1\" in\n  image) exit 1 ;;\n  load) cat > " + loaded + " ;;\nesac\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	var progress strings.Builder
	p := New(WithProgress(&progress))
	require.NoError(t, p.loadNodeImage(context.Background(), b))
	assert.Equal(t, "kindest/node:v1.35.8", p.o.nodeImage, "the cluster runs on the loaded image")
	assert.Contains(t, progress.String(), "load the kind node image kindest/node:v1.35.8 from the bundle")
	t.Log(progress.String())
	got, err := tarball.ImageFromPath(loaded, nil)
	require.NoError(t, err)
	wantDigest, err := img.Digest()
	require.NoError(t, err)
	gotID, err := got.ConfigName()
	require.NoError(t, err)
	wantID, err := img.ConfigName()
	require.NoError(t, err)
	assert.Equal(t, wantID, gotID, "docker load got the bundle's image (%s)", wantDigest)

	// Another node image asked for: the bundle's is left alone.
	p = New(WithNodeImage("egresslab.local/kind-node:v1.35.8"), WithProgress(&progress))
	require.NoError(t, p.loadNodeImage(context.Background(), b))
	assert.Equal(t, "egresslab.local/kind-node:v1.35.8", p.o.nodeImage)
}
