// Package offline reads what hack/kind-offline-images.sh built for a kind run that pulls
// nothing: the node image (Kubernetes and its images pre-imported), Istio's images, and
// the folders of Istio's charts in the pinned module. The kind backend runs on them
// instead of kindest/node, Istio's registry and its chart repository.
package offline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// BuildCommand builds the images and writes the file Load reads.
const BuildCommand = "hack/kind-offline-images.sh"

// Images is the file hack/kind-offline-images.sh writes (.cache/kind-offline/images.json).
type Images struct {
	// NodeImage is the kind node image, in the engine's image store.
	NodeImage string `json:"nodeImage"`
	// KubernetesVersion is the version of the node's kubelet and control plane.
	KubernetesVersion string `json:"kubernetesVersion"`
	Istio             Istio  `json:"istio"`
}

// Istio names the Istio images and charts.
type Istio struct {
	// Hub and Tag are the charts' global.hub and global.tag: Hub/pilot:Tag and
	// Hub/proxyv2:Tag are pre-imported into the node.
	Hub    string `json:"hub"`
	Tag    string `json:"tag"`
	Charts Charts `json:"charts"`
}

// Charts are chart folders: Istio's manifests/charts/base and
// manifests/charts/istio-control/istio-discovery in the pinned module.
type Charts struct {
	Base   string `json:"base"`
	Istiod string `json:"istiod"`
}

// PullPolicy is the images' pull policy offline: every image is in the node already,
// and no registry could give one that is not.
const PullPolicy = "Never"

// Load reads and checks the file at path. Its errors name the file, the field and the fix.
func Load(path string) (*Images, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the offline images file %s: %w (%s writes it)", path, err, BuildCommand)
	}
	var im Images
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("offline images file %s: %w (rebuild it with %s)", path, err, BuildCommand)
	}
	var errs []error
	for _, f := range []struct{ field, value string }{
		{"nodeImage", im.NodeImage}, {"kubernetesVersion", im.KubernetesVersion},
		{"istio.hub", im.Istio.Hub}, {"istio.tag", im.Istio.Tag},
		{"istio.charts.base", im.Istio.Charts.Base}, {"istio.charts.istiod", im.Istio.Charts.Istiod},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("offline images file %s: field %s is empty (rebuild it with %s)", path, f.field, BuildCommand))
		}
	}
	for _, c := range []struct{ field, dir string }{
		{"istio.charts.base", im.Istio.Charts.Base}, {"istio.charts.istiod", im.Istio.Charts.Istiod},
	} {
		if c.dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.dir, "Chart.yaml")); err != nil {
			errs = append(errs, fmt.Errorf("offline images file %s: field %s: %s holds no chart (%v); "+
				"run `go mod download istio.io/istio` or rebuild it with %s", path, c.field, c.dir, err, BuildCommand))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &im, nil
}

// ChartDirs maps the kind backend's chart names to their folders.
func (im *Images) ChartDirs() map[string]string {
	return map[string]string{"base": im.Istio.Charts.Base, "istiod": im.Istio.Charts.Istiod}
}

// Values are the Helm values that make the charts run the built images and never pull.
func (im *Images) Values() map[string]any {
	return map[string]any{"global": map[string]any{
		"hub": im.Istio.Hub, "tag": im.Istio.Tag, "imagePullPolicy": PullPolicy,
	}}
}
