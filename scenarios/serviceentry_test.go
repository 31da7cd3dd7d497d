package scenarios

import (
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/labs/apps"
	"github.com/egresslab/egresslab/labs/serviceentry"
	"github.com/egresslab/egresslab/manifests"
)

const (
	jsonplaceholderHTTP  = "http://jsonplaceholder.typicode.com/todos/1"
	jsonplaceholderHTTPS = "https://jsonplaceholder.typicode.com/todos/1"
)

// inMesh starts a feature with a backend, Istio in the given mode, and the client app
// with its sidecar. shows labels what the feature demonstrates, for -labels.
func inMesh(name, mode, shows string) *features.FeatureBuilder {
	return features.New(name).
		WithLabel("lab", "serviceentry").
		WithLabel("mode", mode).
		WithLabel("shows", shows).
		WithSetup("open backend", steps.OpenBackend()).
		WithSetup("install Istio, "+mode, steps.InstallMesh(mode)).
		WithSetup("deploy the client", steps.Apply(apps.ClientManifest, ns)).
		WithSetup("client has its sidecar", steps.ExpectSidecar(apps.Client))
}

// ns is where the manifests' objects go when they name no namespace: the client's.
var ns = apps.Client.Namespace

// call expects the call to url from the client to end as want.
func call(url string, want outcome.Expect) features.Func {
	return steps.ExpectCall(apps.Client, url, want)
}

// test runs the scenario on the scenarios' environment, or skips saying why it cannot.
// The backend is released last, after the scenario's own teardown.
func test(t *testing.T, scenario *features.FeatureBuilder) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	testenv.Test(t, scenario.WithTeardown("release backend", steps.ReleaseBackend()).Feature())
}

func TestBlockedBeforeTheEntry(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY without an entry", manifest.RegistryOnly, "block_all").
		Assess("the call gets Envoy's 502 from block_all", call(jsonplaceholderHTTP, serviceentry.BlockedByBlockAll)))
}

func TestAllowedAfterTheEntry(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY with the seed's entry", manifest.RegistryOnly, "registered").
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry, ns)).
		Assess("the call goes out through the entry's cluster", call(jsonplaceholderHTTP, serviceentry.AllowedThroughTheEntry)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.SeedServiceEntry, ns)))
}

func TestBlockedAfterTheEntryIsDeleted(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY, entry applied then deleted", manifest.RegistryOnly, "block_all").
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry, ns)).
		Assess("allowed while the entry is there", call(jsonplaceholderHTTP, serviceentry.AllowedThroughTheEntry)).
		Assess("delete the entry", steps.Delete(manifests.SeedServiceEntry, ns)).
		Assess("blocked again by block_all", call(jsonplaceholderHTTP, serviceentry.BlockedByBlockAll)))
}

func TestHTTPSBlockedWithThePort80OnlyEntry(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY, seed's entry, HTTPS", manifest.RegistryOnly, "BlackHoleCluster").
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry, ns)).
		Assess("port 80 is open", call(jsonplaceholderHTTP, serviceentry.AllowedThroughTheEntry)).
		Assess("port 443 has no listener: black hole", call(jsonplaceholderHTTPS, serviceentry.BlockedByBlackHole)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.SeedServiceEntry, ns)))
}

func TestAllowAnyPassesWithoutAnEntry(t *testing.T) {
	test(t, inMesh("ALLOW_ANY without an entry", manifest.AllowAny, "PassthroughCluster").
		Assess("the call passes through PassthroughCluster", call(jsonplaceholderHTTP, serviceentry.AllowedByPassthrough)).
		// A shared cluster goes back to the lab's mode for the scenarios after this one.
		WithTeardown("back to REGISTRY_ONLY", steps.InstallMesh(manifest.RegistryOnly)))
}

func TestMisspeltHostStaysBlocked(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY with an entry for jsonplaceholder.typicode.co", manifest.RegistryOnly, "block_all").
		WithSetup("apply the misspelt ServiceEntry", steps.Apply(manifests.MisspeltServiceEntry, ns)).
		Assess("the real host is still unknown: block_all", call(jsonplaceholderHTTP, serviceentry.BlockedByBlockAll)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.MisspeltServiceEntry, ns)))
}
