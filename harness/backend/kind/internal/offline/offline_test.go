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
	charts := t.TempDir()
	for _, c := range []string{"base", "istiod"} {
		require.NoError(t, os.MkdirAll(filepath.Join(charts, c), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(charts, c, "Chart.yaml"), []byte("name: "+c), 0o644))
	}
	p := write(t, `{"nodeImage":"egresslab.local/kind-node:v1.35.8","kubernetesVersion":"v1.35.8",
	  "istio":{"hub":"egresslab.local/istio","tag":"t1","charts":{"base":"`+charts+`/base","istiod":"`+charts+`/istiod"}}}`)
	im, err := offline.Load(p)
	require.NoError(t, err)
	assert.Equal(t, "egresslab.local/kind-node:v1.35.8", im.NodeImage)
	assert.Equal(t, map[string]string{"base": charts + "/base", "istiod": charts + "/istiod"}, im.ChartDirs())
	assert.Equal(t, map[string]any{"global": map[string]any{"hub": "egresslab.local/istio", "tag": "t1", "imagePullPolicy": "Never"}},
		im.Values())
}

// A bad file is refused with every problem at once, each naming the file, the field and the fix.
func TestLoadNamesFileFieldAndFix(t *testing.T) {
	p := write(t, `{"nodeImage":"n","istio":{"hub":"h","tag":"t","charts":{"base":"/nonexistent/base"}}}`)
	_, err := offline.Load(p)
	require.Error(t, err)
	for _, want := range []string{
		p + ": field kubernetesVersion is empty",
		p + ": field istio.charts.istiod is empty",
		p + ": field istio.charts.base: /nonexistent/base holds no chart",
		offline.BuildCommand,
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = offline.Load(filepath.Join(t.TempDir(), "missing.json"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), offline.BuildCommand+" writes it")
}
