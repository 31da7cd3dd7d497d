package kind

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
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
