package kind

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
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

	env[EnvKeep] = "0"
	p = New(append([]Option{WithKeep(true)}, OptionsFromEnv(func(k string) string { return env[k] })...)...)
	assert.False(t, p.o.keep, "%s=0 deletes the cluster at the end", EnvKeep)
}

// Whether the cluster is kept: the command line (-keep) wins over EGRESSLAB_KEEP, which
// wins over the caller's default: the lab and check commands keep it, the scenarios do not.
func TestKeepPerCaller(t *testing.T) {
	yes, no := true, false
	scenarios := backend.Keep{}
	lab := backend.Keep{ByDefault: true}
	for _, c := range []struct {
		name      string
		keep      backend.Keep
		env       string
		want      bool
		wantAsked bool
	}{
		{"the scenarios delete their cluster", scenarios, "", false, false},
		{"the scenarios keep it with EGRESSLAB_KEEP=1", scenarios, "1", true, true},
		{"the lab and check commands keep theirs", lab, "", true, false},
		{"EGRESSLAB_KEEP=0 deletes it", lab, "0", false, true},
		{"EGRESSLAB_KEEP=false deletes it", lab, "false", false, true},
		{"-keep=false deletes it", backend.Keep{ByDefault: true, Flag: &no}, "", false, true},
		{"-keep=false wins over EGRESSLAB_KEEP=1", backend.Keep{ByDefault: true, Flag: &no}, "1", false, true},
		{"-keep wins over EGRESSLAB_KEEP=0", backend.Keep{ByDefault: true, Flag: &yes}, "0", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := func(k string) string {
				if k == EnvKeep {
					return c.env
				}
				return ""
			}
			p := providerFor(backend.Settings{Env: env, Progress: io.Discard, Keep: c.keep})
			assert.Equal(t, c.want, p.o.keep)
			assert.Equal(t, c.wantAsked, p.o.keepAsked, "asked for, not only the default (a cluster that fails to come up is kept only when asked)")
		})
	}
}

// The registry builds the kind provider with the caller's Keep (an existing cluster
// through a kubeconfig, so that the kind backend is available without Docker).
func TestTheRegistryHandsTheCallersKeepToKind(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600))
	env := map[string]string{EnvKubeconfig: kubeconfig}
	get := func(k string) string { return env[k] }
	for _, keep := range []backend.Keep{{}, {ByDefault: true}} {
		p, _, err := backend.Select(context.Background(), "kind", backend.Settings{Env: get, Keep: keep})
		require.NoError(t, err)
		assert.Equal(t, keep.ByDefault, p.(*Provider).o.keep)
	}
	env[EnvKeep] = "yes"
	_, _, err := backend.Select(context.Background(), "kind", backend.Settings{Env: get})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "EGRESSLAB_KEEP=yes: use 1 to keep the cluster, 0 to delete it at the end")
	_, err = New(OptionsFromEnv(get)...).Setup(context.Background())
	assert.ErrorContains(t, err, "EGRESSLAB_KEEP=yes", "nor does Setup run with it")
}

// A kept cluster is said so at the end, with how to look at it and how to delete it.
func TestTheKeptClusterSaysHowToDeleteIt(t *testing.T) {
	var progress strings.Builder
	p := New(WithProgress(&progress))
	p.st = &state{cluster: cluster.New()}
	_, err := p.Finish(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "▸ kind cluster egresslab is kept: the next run reuses it, cleared of what this one left "+
		"(kubectl --context kind-egresslab get pods -A). Delete it with: egresslab clean. "+
		"Not to keep it: -keep=false, or EGRESSLAB_KEEP=0\n", progress.String())
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

func endpointAddrs(eps []cluster.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Addr)
	}
	return out
}

// The chart repository and the registry mirror are settings a user has; the preflight
// checks the ones configured, not Istio's own.
func TestDownloadSettings(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }

	d, err := New(OptionsFromEnv(get)...).downloads()
	require.NoError(t, err)
	assert.Equal(t, "https://blob.istio.io/istio-release/charts", d.charts, "Istio 1.31's own repository")
	assert.Empty(t, d.mirror)
	assert.Equal(t, []string{"blob.istio.io:443", cluster.DockerHub}, endpointAddrs(d.endpoints(true)))

	env[EnvIstioVersion] = "1.30.2"
	d, err = New(OptionsFromEnv(get)...).downloads()
	require.NoError(t, err)
	assert.Equal(t, "https://istio-release.storage.googleapis.com/charts", d.charts, "Istio 1.30 was published there")

	env[EnvIstioVersion] = ""
	env[EnvCharts] = "https://nexus.example.com/repository/istio-charts"
	env[EnvRegistryMirror] = "mirror.example.com:5000"
	d, err = New(OptionsFromEnv(get)...).downloads()
	require.NoError(t, err)
	assert.Equal(t, "https://nexus.example.com/repository/istio-charts", d.charts)
	assert.Equal(t, "https://mirror.example.com:5000", d.mirror)
	assert.Equal(t, []string{"nexus.example.com:443", cluster.DockerHub, "mirror.example.com:5000"}, endpointAddrs(d.endpoints(true)),
		"kind's node image still comes from docker.io")
	assert.Equal(t, []string{"nexus.example.com:443", "mirror.example.com:5000"}, endpointAddrs(d.endpoints(false)),
		"a node image built here: only the mirror gives images")
	assert.Equal(t, "the registry mirror of docker.io at https://mirror.example.com:5000 ("+EnvRegistryMirror+")", d.pullsFrom(nil))

	env[EnvCharts] = "https://istio-release.storage.googleapis.com/charts"
	_, err = New(OptionsFromEnv(get)...).downloads()
	assert.EqualError(t, err, EnvCharts+"=https://istio-release.storage.googleapis.com/charts: Istio 1.31.0's charts are not "+
		"published to istio-release.storage.googleapis.com; its repository is https://blob.istio.io/istio-release/charts")

	env[EnvCharts] = "oci://ghcr.io/istio/release/charts"
	d, err = New(OptionsFromEnv(get)...).downloads()
	require.NoError(t, err)
	assert.Equal(t, "ghcr.io:443", endpointAddrs(d.endpoints(false))[0], "an OCI location's registry is checked")

	env[EnvCharts] = "blob.istio.io"
	_, err = New(OptionsFromEnv(get)...).downloads()
	assert.ErrorContains(t, err, EnvCharts+"=blob.istio.io: give the URL of a Helm chart repository")

	env[EnvCharts] = ""
	env[EnvRegistryMirror] = "ftp://mirror"
	_, err = New(OptionsFromEnv(get)...).downloads()
	assert.ErrorContains(t, err, EnvRegistryMirror+"=ftp://mirror")

	// A bundle's servers are on this machine: only kind's node image, when the bundle has
	// none, comes from docker.io.
	bundled := downloads{charts: "http://127.0.0.1:40001", bundled: true}
	assert.Equal(t, []string{cluster.DockerHub}, endpointAddrs(bundled.endpoints(true)))
	assert.Empty(t, bundled.endpoints(false))

	env[EnvRegistryMirror] = "mirror.example.com:5000"
	env[EnvBundle] = "/somewhere/istio.bundle"
	p := New(OptionsFromEnv(get)...)
	assert.Equal(t, "/somewhere/istio.bundle", p.o.bundle)
	_, err = p.downloads()
	assert.ErrorContains(t, err, "a bundle is both mirrors")
}

// A bundle of another Istio release than the run installs is refused before anything
// is made, naming both releases and the fix.
func TestABundleOfAnotherReleaseIsRefusedFirst(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	path := filepath.Join(dir, "istio.bundle")
	require.NoError(t, mirror.Write(path, "1.30.0", nil, nil, "", nil))
	var progress strings.Builder
	_, err := New(WithBundle(path), WithProgress(&progress)).Setup(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bundle "+path+" holds Istio 1.30.0, and this run installs Istio "+istioinstall.Version)
	assert.NotContains(t, progress.String(), "preflight", "nothing is tried before the bundle is read")
	left, _ := filepath.Glob(filepath.Join(dir, "egresslab-kind-*"))
	assert.Empty(t, left, "Setup's work folder is removed")
}
