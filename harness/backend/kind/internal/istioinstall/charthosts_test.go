package istioinstall

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The online path downloaded Istio 1.31's charts from a host Istio stopped publishing
// to with 1.31 (istio-release.storage.googleapis.com): every online run failed at the
// chart download. The default repository is the one the table gives for Version.
func TestTheDefaultChartRepositoryIsWhereVersionIsPublished(t *testing.T) {
	want, err := ChartRepoFor(Version)
	require.NoError(t, err)
	assert.Equal(t, want, ChartRepo, "ChartRepo is not where Istio %s's charts are published", Version)
	assert.Empty(t, Retired(ChartRepo, Version))
	assert.Equal(t, "https://blob.istio.io/istio-release/charts", ChartRepo)
}

func TestChartRepositoryByIstioMinor(t *testing.T) {
	for _, c := range []struct{ version, repo string }{
		{"1.29.3", "https://istio-release.storage.googleapis.com/charts"},
		{"1.30.0", "https://istio-release.storage.googleapis.com/charts"},
		{"1.31.0", "https://blob.istio.io/istio-release/charts"},
		{"1.31.1", "https://blob.istio.io/istio-release/charts"},
		{"v1.32.0", "https://blob.istio.io/istio-release/charts"},
	} {
		got, err := ChartRepoFor(c.version)
		require.NoError(t, err, c.version)
		assert.Equal(t, c.repo, got, c.version)
	}
	_, err := ChartRepoFor("latest")
	assert.ErrorContains(t, err, `Istio version "latest": want a release such as`)
}

func TestARetiredChartHostIsNamedWithTheRightOne(t *testing.T) {
	why := Retired("https://istio-release.storage.googleapis.com/charts", "1.31.0")
	assert.Equal(t, "Istio 1.31.0's charts are not published to istio-release.storage.googleapis.com; "+
		"its repository is https://blob.istio.io/istio-release/charts", why)
	assert.Contains(t, movedHint("https://istio-release.storage.googleapis.com/charts"), "blob.istio.io")
	// A mirror is the user's to know: nothing is said of it.
	assert.Empty(t, Retired("https://artifactory.example.com/istio-charts", "1.31.0"))
	assert.Empty(t, Retired("https://istio-release.storage.googleapis.com/charts", "1.30.2"))
}
