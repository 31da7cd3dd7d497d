package istioinstall

import (
	"bytes"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/yaml"

	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

// Hub is where Istio publishes its release images (Docker Hub), and so what its
// published charts' values name: docker.io/istio/pilot:1.31.0, docker.io/istio/proxyv2:1.31.0.
const Hub = "docker.io/istio"

// Images are the images Istio's published charts at version run: istiod's (pilot), and
// the sidecar's and the gateways' (proxyv2, which istiod's injection names).
func Images(version string) []string {
	return []string{Hub + "/pilot:" + version, Hub + "/proxyv2:" + version}
}

// CurlSampleImage is the image of Istio's curl sample (samples/curl/curl.yaml of the
// pinned release, as istio.io's egress tasks deploy it): the client a handout typed by
// hand calls from, since egresslab's own client is built and loaded into egresslab's
// kind cluster and published nowhere. A workshop bundle holds it with Istio's images.
const CurlSampleImage = "docker.io/curlimages/curl:8.16.0"

// BundleImages are the images a workshop bundle holds for Istio release version:
// Istio's own, and the curl sample's, which the handouts' by-hand client pulls.
func BundleImages(version string) []string {
	return append(Images(version), CurlSampleImage)
}

// Charts are the folders of the charts the lab installs in Istio's source tree (the
// istio.io/istio module), by chart name.
func Charts(istioSource string) map[string]string {
	root := filepath.Join(istioSource, "manifests", "charts")
	return map[string]string{
		BaseChart:   filepath.Join(root, "base"),
		IstiodChart: filepath.Join(root, "istio-control", "istio-discovery"),
	}
}

// devHub and devTag are what the charts in Istio's source tree run: its development
// builds. Istio's release tooling (istio/release-builder; the charts' Chart.yaml says
// "istio/release-builder will replace it at build-time") sets the chart's version and
// rewrites these two in values.yaml to the release's hub and tag.
const (
	devHub = "hub: registry.istio.io/testing"
	devTag = "tag: latest"
)

// PackageRelease packages the chart in dir (Istio's source tree) as Istio's release of
// version publishes it: Chart.yaml's version and appVersion set to version, values.yaml's
// hub and tag set to Hub and version. It writes NAME-VERSION.tgz into outDir and returns
// its path.
func PackageRelease(dir, version, outDir string) (string, error) {
	what := fmt.Sprintf("package chart %s as Istio %s publishes it", dir, version)
	ch, err := loadChart(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	ch.Metadata.Version, ch.Metadata.AppVersion = version, version
	for _, f := range ch.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		f.Data = bytes.ReplaceAll(f.Data, []byte(devHub), []byte("hub: "+Hub))
		f.Data = bytes.ReplaceAll(f.Data, []byte(devTag), []byte("tag: "+version))
		var values map[string]any
		if err := yaml.Unmarshal(f.Data, &values); err != nil {
			return "", fmt.Errorf("%s: values.yaml: %w", what, err)
		}
		if global, ok := values["global"].(map[string]any); ok && global["hub"] != nil {
			if global["hub"] != Hub || global["tag"] != version {
				return "", fmt.Errorf("%s: values.yaml's global.hub and global.tag are %v and %v after the rewrite, not %s and %s "+
					"(Istio's source tree no longer says %q and %q)", what, global["hub"], global["tag"], Hub, version, devHub, devTag)
			}
		}
		ch.Values = values
	}
	path, err := chartutil.Save(ch, outDir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return path, nil
}
