package appimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
	"github.com/egresslab/egresslab/harness/outcome"
)

// readBack loads the image from the tarball by its tag, as kind's node import does.
func readBack(t *testing.T, b *appimage.Built) v1.Image {
	t.Helper()
	tag, err := name.NewTag(appimage.Client.Tag)
	require.NoError(t, err)
	img, err := tarball.ImageFromPath(b.Tarball, &tag)
	require.NoError(t, err, "the tarball must hold the image under %s", appimage.Client.Tag)
	return img
}

// files returns the image's files by path, from its (only) layer.
func files(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1, "the image is one layer on nothing: no base image")
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[h.Name] = data
		if h.Name == "client" {
			assert.Equal(t, int64(0o755), h.Mode, "the binary must be executable")
		}
	}
}

func build(t *testing.T, arch string, opts ...appimage.Option) *appimage.Built {
	t.Helper()
	b, err := appimage.Build(context.Background(), appimage.Client, arch, t.TempDir(), opts...)
	require.NoError(t, err)
	return b
}

func TestImageRunsTheStaticClient(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "roots.pem")
	require.NoError(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	b := build(t, runtime.GOARCH, appimage.WithCABundle(ca))
	img := readBack(t, b)

	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cfg.OS)
	assert.Equal(t, runtime.GOARCH, cfg.Architecture)
	assert.Equal(t, []string{"/client"}, cfg.Config.Entrypoint)
	assert.Equal(t, []string{"PATH=/"}, cfg.Config.Env)
	assert.Equal(t, appimage.Client.User, cfg.Config.User)
	digest, err := img.Digest()
	require.NoError(t, err)
	assert.Equal(t, b.Digest, digest)

	fs := files(t, img)
	assert.Equal(t, "-----BEGIN CERTIFICATE-----\n", string(fs["etc/ssl/certs/ca-certificates.crt"]))
	bin := fs["client"]
	require.NotEmpty(t, bin, "the image holds /client")

	f, err := elf.NewFile(bytes.NewReader(bin))
	require.NoError(t, err)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary asks for a dynamic loader: it would not run in an image without libc")
	}

	// Run the binary that came out of the image: a real call to a local server.
	path := filepath.Join(t.TempDir(), "client")
	require.NoError(t, os.WriteFile(path, bin, 0o755))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "envoy")
		w.Header().Set("X-Envoy-Upstream-Service-Time", "12")
		_, _ = w.Write([]byte(`{"id":1}`))
	}))
	defer srv.Close()
	out, err := exec.Command(path, "call", srv.URL+"/todos/1").Output()
	require.NoError(t, err)
	var o outcome.Observation
	require.NoError(t, json.Unmarshal(out, &o), "output: %s", out)
	assert.Equal(t, 200, o.Status)
	assert.Equal(t, "envoy", o.Server)
	assert.Equal(t, "12", o.UpstreamServiceTime)
	assert.Equal(t, `{"id":1}`, o.BodyPrefix)
	assert.Equal(t, srv.URL+"/todos/1", o.URL)
	assert.Equal(t, outcome.Allowed, outcome.Classify(o).Kind)
}

func TestSameSourceSameDigest(t *testing.T) {
	a := build(t, runtime.GOARCH, appimage.WithCABundle(""))
	b := build(t, runtime.GOARCH, appimage.WithCABundle(""))
	assert.Equal(t, a.Digest, b.Digest, "a rebuild of unchanged source must not roll the client's pods")
	assert.NotContains(t, files(t, readBack(t, a)), "etc/ssl/certs/ca-certificates.crt")
}

func TestImageForTheOtherArchitecture(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the standard library for another architecture")
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("no other architecture to try from %s", runtime.GOARCH)
	}
	b := build(t, other, appimage.WithCABundle(""))
	cfg, err := readBack(t, b).ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, other, cfg.Architecture)
	f, err := elf.NewFile(bytes.NewReader(files(t, readBack(t, b))["client"]))
	require.NoError(t, err)
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[other]
	assert.Equal(t, want, f.Machine)
}

func TestBuildFailureSaysWhatItTried(t *testing.T) {
	_, err := appimage.Build(context.Background(), appimage.Client, "no-such-arch", t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go build github.com/egresslab/egresslab/apps/client for linux/no-such-arch")
}
