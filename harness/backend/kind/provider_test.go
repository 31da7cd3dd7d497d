package kind

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/offline"
)

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{}
	p := New(OptionsFromEnv(func(k string) string { return env[k] })...)
	assert.False(t, p.o.keep)
	assert.Equal(t, cluster.Docker, p.o.runtime)
	assert.Equal(t, istioinstall.Version, p.o.istioVersion)
	assert.Equal(t, cluster.NodeImage, p.o.nodeImage)

	env[EnvKeep], env[EnvRuntime], env[EnvIstioVersion], env[EnvKubeconfig] = "1", "podman", "1.30.4", "/somewhere/kubeconfig"
	p = New(OptionsFromEnv(func(k string) string { return env[k] })...)
	assert.True(t, p.o.keep)
	assert.Equal(t, cluster.Podman, p.o.runtime)
	assert.Equal(t, "1.30.4", p.o.istioVersion)
	assert.Equal(t, "/somewhere/kubeconfig", p.o.kubeconfig)
	assert.Empty(t, p.o.offline)

	env[EnvOffline] = "/somewhere/images.json"
	p = New(OptionsFromEnv(func(k string) string { return env[k] })...)
	assert.Equal(t, "/somewhere/images.json", p.o.offline)
}

// A bad offline images file stops Setup before anything is tried or made: no preflight,
// no cluster, no work folder left; the error names the file and the command that writes it.
func TestSetupWithABadOfflineFileStopsFirst(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir) // Setup's work folder goes here: it must be gone after
	path := filepath.Join(dir, "images.json")
	assert.NoError(t, os.WriteFile(path, []byte(`{"nodeImage": ""}`), 0o644))
	var progress strings.Builder
	_, err := New(WithOffline(path), WithProgress(&progress)).Setup(context.Background())
	assert.Error(t, err)
	assert.Contains(t, err.Error(), path+": field nodeImage is empty")
	assert.Contains(t, err.Error(), offline.BuildCommand)
	assert.NotContains(t, progress.String(), "preflight", "nothing is tried before the file is read")
	left, _ := filepath.Glob(filepath.Join(dir, "egresslab-kind-*"))
	assert.Empty(t, left, "Setup's work folder is removed")
}

func TestAvailableWithAKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	p := New(WithKubeconfig(path))
	ok, why := p.Available(context.Background())
	assert.False(t, ok)
	assert.Contains(t, why, EnvKubeconfig+"="+path)

	assert.NoError(t, os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\n"), 0o600))
	ok, why = p.Available(context.Background())
	assert.True(t, ok)
	assert.Equal(t, "an existing cluster through "+EnvKubeconfig+"="+path, why)
}

func TestFinishWithoutSetupDoesNothing(t *testing.T) {
	_, err := New().Finish(context.Background())
	assert.NoError(t, err)
}
