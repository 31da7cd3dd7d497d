package istioinstall_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"

	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
)

// Istio publishes its charts as OCI artifacts too (oci://ghcr.io/istio/release/charts),
// and a company mirror may be an OCI registry: an oci:// location is pulled as
// `helm pull oci://…/base --version 1.31.0` does. The registry is a local one.
func TestChartsComeFromAnOCILocation(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	archive, err := chartutil.Save(&chart.Chart{Metadata: &chart.Metadata{APIVersion: "v2", Name: "base", Version: "1.31.0"}}, t.TempDir())
	require.NoError(t, err)
	data, err := os.ReadFile(archive)
	require.NoError(t, err)
	rc, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptWriter(io.Discard))
	require.NoError(t, err)
	_, err = rc.Push(data, host+"/istio/release/charts/base:1.31.0")
	require.NoError(t, err)

	path, err := istioinstall.Download(context.Background(), "oci://"+host+"/istio/release/charts", t.TempDir(), "base", "1.31.0")
	require.NoError(t, err)
	c, err := loader.Load(path)
	require.NoError(t, err)
	assert.Equal(t, "base", c.Metadata.Name)
	assert.Equal(t, "1.31.0", c.Metadata.Version)

	_, err = istioinstall.Download(context.Background(), "oci://"+host+"/istio/release/charts", t.TempDir(), "istiod", "1.31.0")
	assert.ErrorContains(t, err, "download chart istiod 1.31.0 from oci://"+host+"/istio/release/charts")
}
