package cluster_test

import (
	"testing"

	toml "github.com/pelletier/go-toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
)

// Every cluster's containerd reads per-registry hosts.toml files (kind's guide to local
// registries), so that SetMirror works on a new cluster and on a kept one alike.
func TestEveryClusterReadsRegistryMirrorsFromCertsDir(t *testing.T) {
	cfg := cluster.New().Config()
	require.Len(t, cfg.ContainerdConfigPatches, 1)
	var patch map[string]any
	require.NoError(t, toml.Unmarshal([]byte(cfg.ContainerdConfigPatches[0]), &patch))
	registry := patch["plugins"].(map[string]any)["io.containerd.grpc.v1.cri"].(map[string]any)["registry"].(map[string]any)
	assert.Equal(t, cluster.CertsDir, registry["config_path"])
}

// The hosts.toml sends every pull of the registry to the mirror and to nothing else:
// server is the mirror too, so no pull falls back to docker.io.
func TestHostsTOMLSendsEveryPullToTheMirror(t *testing.T) {
	var h struct {
		Server string `toml:"server"`
		Host   map[string]struct {
			Capabilities []string `toml:"capabilities"`
		} `toml:"host"`
	}
	require.NoError(t, toml.Unmarshal([]byte(cluster.HostsTOML("http://172.18.0.1:5000")), &h))
	assert.Equal(t, "http://172.18.0.1:5000", h.Server)
	require.Contains(t, h.Host, "http://172.18.0.1:5000")
	assert.Equal(t, []string{"pull", "resolve"}, h.Host["http://172.18.0.1:5000"].Capabilities)
}

func TestMirrorURL(t *testing.T) {
	for setting, want := range map[string]string{
		"mirror.example.com:5000":          "https://mirror.example.com:5000",
		"mirror.example.com":               "https://mirror.example.com",
		"127.0.0.1:5000":                   "http://127.0.0.1:5000",
		"localhost:5000":                   "http://localhost:5000",
		"10.1.2.3:5000":                    "http://10.1.2.3:5000",
		"http://mirror.example.com:8080/":  "http://mirror.example.com:8080",
		"https://mirror.example.com:8443":  "https://mirror.example.com:8443",
		" https://mirror.example.com:8443": "https://mirror.example.com:8443",
	} {
		got, err := cluster.MirrorURL(setting)
		require.NoError(t, err, setting)
		assert.Equal(t, want, got, setting)
	}
	for _, bad := range []string{"", "ftp://mirror.example.com", "https://mirror.example.com/v2/docker", "http://"} {
		_, err := cluster.MirrorURL(bad)
		assert.Error(t, err, bad)
	}
}
