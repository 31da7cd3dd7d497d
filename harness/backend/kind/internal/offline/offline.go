// Package offline reads what hack/kind-offline-images.sh built for a kind run on this
// machine: the kind node image (Kubernetes and its images pre-imported, built from
// source), the one substitution such a run makes besides the stand-ins for Envoy's
// process and for the internet, and the stand-in internet's CA. Istio's charts and images are not here: they come as
// on any run, from a chart repository and a registry mirror (the bundle the script
// writes beside this file, EGRESSLAB_BUNDLE).
package offline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// BuildCommand builds the images and writes the file Load reads.
const BuildCommand = "hack/kind-offline-images.sh"

// Images is the file hack/kind-offline-images.sh writes (.cache/kind-offline/images.json).
type Images struct {
	// NodeImage is the kind node image, in the engine's image store.
	NodeImage string `json:"nodeImage"`
	// KubernetesVersion is the version of the node's kubelet and control plane.
	KubernetesVersion string `json:"kubernetesVersion"`
	// InternetCA is the stand-in internet's CA, in PEM files: it signs the site's
	// certificate, and the offline proxy image trusts it, as a real proxy image trusts
	// the public roots that signed the real site's.
	InternetCA struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"internetCA"`
}

// CA reads the stand-in internet's CA: its certificate and its key, in PEM.
func (im *Images) CA() (cert, key []byte, err error) {
	if cert, err = os.ReadFile(im.InternetCA.Cert); err != nil {
		return nil, nil, fmt.Errorf("read the stand-in internet's CA: %w (rebuild it with %s)", err, BuildCommand)
	}
	if key, err = os.ReadFile(im.InternetCA.Key); err != nil {
		return nil, nil, fmt.Errorf("read the stand-in internet's CA key: %w (rebuild it with %s)", err, BuildCommand)
	}
	return cert, key, nil
}

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
		{"internetCA.cert", im.InternetCA.Cert}, {"internetCA.key", im.InternetCA.Key},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("offline images file %s: field %s is empty (rebuild it with %s)", path, f.field, BuildCommand))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &im, nil
}
