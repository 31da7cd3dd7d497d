// Package manifests holds every YAML the lab applies, embedded so that every backend
// (the offline simulator and a real cluster) is given exactly the same objects.
//
// The files are the source of truth: edit them, not copies of them.
package manifests

import "embed"

// FS holds the manifests, by the paths named below.
//
//go:embed istio apps serviceentry scenarios
var FS embed.FS

const (
	// IstioValues are the Helm values for the istiod chart; sim reads their meshConfig.
	IstioValues = "istio/values.yaml"
	// ClientApp is the client's Namespace, ServiceAccount, Service and Deployment.
	ClientApp = "apps/client.yaml"
	// SeedServiceEntry is the lab's ServiceEntry, unchanged from the lab's source material.
	SeedServiceEntry = "serviceentry/jsonplaceholder.yaml"
	// MisspeltServiceEntry is the seed with a typo in its host, for the scenario that shows it.
	MisspeltServiceEntry = "scenarios/serviceentry-misspelt.yaml"
)
