// Package manifests holds the Helm values Istio is installed with, embedded so that every
// backend (the offline simulator and a real cluster) gets exactly the same mesh. The
// objects the labs apply are beside each lab, in labs/.
//
// The files are the source of truth: edit them, not copies of them.
package manifests

import "embed"

// FS holds the manifests, by the paths named below.
//
//go:embed istio
var FS embed.FS

const (
	// IstioValues are the Helm values for the istiod chart; sim reads their meshConfig.
	IstioValues = "istio/values.yaml"
)
