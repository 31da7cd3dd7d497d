package kindbackend

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egresslab/egresslab/harness/istioinstall"
	"github.com/egresslab/egresslab/harness/kindcluster"
)

func TestFromEnv(t *testing.T) {
	for _, k := range []string{EnvKeep, EnvKubeconfig, EnvRuntime, EnvIstioVersion, EnvNodeImage, EnvDiagnostics} {
		t.Setenv(k, "")
	}
	p := FromEnv()
	assert.False(t, p.o.keep)
	assert.Equal(t, kindcluster.Docker, p.o.runtime)
	assert.Equal(t, istioinstall.Version, p.o.istioVersion)
	assert.Equal(t, kindcluster.NodeImage, p.o.nodeImage)

	t.Setenv(EnvKeep, "1")
	t.Setenv(EnvRuntime, "podman")
	t.Setenv(EnvIstioVersion, "1.30.4")
	t.Setenv(EnvKubeconfig, "/somewhere/kubeconfig")
	p = FromEnv()
	assert.True(t, p.o.keep)
	assert.Equal(t, kindcluster.Podman, p.o.runtime)
	assert.Equal(t, "1.30.4", p.o.istioVersion)
	assert.Equal(t, "/somewhere/kubeconfig", p.o.kubeconfig)
}

func TestAvailableWithAKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	t.Setenv(EnvKubeconfig, path)
	ok, why := Available(context.Background())
	assert.False(t, ok)
	assert.Contains(t, why, EnvKubeconfig+"="+path)

	assert.NoError(t, os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\n"), 0o600))
	ok, why = Available(context.Background())
	assert.True(t, ok)
	assert.Equal(t, "an existing cluster through "+EnvKubeconfig+"="+path, why)
}

func TestFinishWithoutSetupDoesNothing(t *testing.T) {
	_, err := New().Finish(context.Background())
	assert.NoError(t, err)
}
