package offline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/offline"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "images.json")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestLoadReadsTheBuildersFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("cert"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.key"), []byte("key"), 0o600))
	p := write(t, `{"nodeImage":"egresslab.local/kind-node:v1.35.8","kubernetesVersion":"v1.35.8",
	  "internetCA":{"cert":"`+dir+`/ca.crt","key":"`+dir+`/ca.key"}}`)
	im, err := offline.Load(p)
	require.NoError(t, err)
	assert.Equal(t, "egresslab.local/kind-node:v1.35.8", im.NodeImage)
	assert.Equal(t, "v1.35.8", im.KubernetesVersion)
	cert, key, err := im.CA()
	require.NoError(t, err)
	assert.Equal(t, "cert", string(cert))
	assert.Equal(t, "key", string(key))
}

// A bad file is refused with every problem at once, each naming the file, the field and the fix.
func TestLoadNamesFileFieldAndFix(t *testing.T) {
	p := write(t, `{}`)
	_, err := offline.Load(p)
	require.Error(t, err)
	for _, want := range []string{
		p + ": field nodeImage is empty",
		p + ": field kubernetesVersion is empty",
		p + ": field internetCA.cert is empty",
		offline.BuildCommand,
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = offline.Load(filepath.Join(t.TempDir(), "missing.json"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), offline.BuildCommand+" writes it")
}
