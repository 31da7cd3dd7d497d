package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
)

// On a cgroup v1 host a kubelet of Kubernetes 1.35+ refuses to start unless its
// configuration says failCgroupV1: false; kind v0.33.0 only warns.
func TestCgroupV1HostGetsTheKubeletPatch(t *testing.T) {
	cfg := cluster.New(cluster.WithCgroupV1(true)).Config()
	raw, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	require.Len(t, cfg.KubeadmConfigPatches, 1, string(raw))
	var patch map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cfg.KubeadmConfigPatches[0]), &patch))
	assert.Equal(t, map[string]any{"kind": "KubeletConfiguration", "failCgroupV1": false}, patch)
	require.Len(t, cfg.Nodes, 1)
	assert.Equal(t, "control-plane", string(cfg.Nodes[0].Role))
	assert.Equal(t, cluster.NodeImage, cfg.Nodes[0].Image)
	assert.Equal(t, cluster.Name, cfg.Name)

	plain := cluster.New(cluster.WithCgroupV1(false)).Config()
	assert.Empty(t, plain.KubeadmConfigPatches, "a cgroup v2 host needs no patch")
	assert.False(t, plain.Networking.DisableDefaultCNI, "kind installs its own CNI unless told not to")
	assert.True(t, cluster.New(cluster.WithoutDefaultCNI()).Config().Networking.DisableDefaultCNI,
		"the offline node brings its own CNI configuration; kind's is an image from a registry")
}

// The node image is pinned by digest, at the Kubernetes minor the pinned Istio's own
// kind setup runs (its DEFAULT_KIND_IMAGE): a bump of istio.io/istio that moves that
// minor fails here until NodeImage follows.
func TestNodeImageIsPinnedByDigestToIstiosKubernetesMinor(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	require.NoError(t, err, "find the pinned istio.io/istio module")
	script, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "common/scripts/kind_provisioner.sh"))
	require.NoError(t, err)
	m := regexp.MustCompile(`DEFAULT_KIND_IMAGE="[^"]*:v(1\.\d+)\.`).FindSubmatch(script)
	require.NotNil(t, m, "DEFAULT_KIND_IMAGE in Istio's kind_provisioner.sh")
	assert.True(t, strings.HasPrefix(cluster.NodeImage, "kindest/node:v"+string(m[1])+"."),
		"NodeImage %s, Istio tests with Kubernetes %s", cluster.NodeImage, m[1])
	assert.Regexp(t, `@sha256:[0-9a-f]{64}$`, cluster.NodeImage)
}

// One Kubernetes version runs everywhere: the online node image is of the version
// tools/kubernetes pins, which the offline node image and the local backend build from.
func TestNodeImageIsTheKubernetesVersionToolsPins(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "..", "tools", "kubernetes", "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)`).FindSubmatch(gomod)
	require.NotNil(t, m, "tools/kubernetes/go.mod requires k8s.io/kubernetes")
	assert.True(t, strings.HasPrefix(cluster.NodeImage, "kindest/node:"+string(m[1])+"@"),
		"NodeImage %s, tools/kubernetes pins %s", cluster.NodeImage, m[1])
}
