package scenarios

import (
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/manifests"
)

const (
	jsonplaceholderHTTP  = "http://jsonplaceholder.typicode.com/todos/1"
	jsonplaceholderHTTPS = "https://jsonplaceholder.typicode.com/todos/1"
)

// What a call can be expected to match. Config fields are checked on backends that
// read the sidecar's config (sim); Status on backends that make the real call (kind).
var (
	blockedByBlockAll = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlockAll,
		Listener: "0.0.0.0_80", RouteConfig: "80", VirtualHost: "block_all", Status: 502}
	blockedByBlackHole = outcome.Expect{Kind: outcome.Blocked, Reason: outcome.ReasonBlackHole,
		Listener: "virtualOutbound", Cluster: "BlackHoleCluster"}
	allowedThroughTheEntry = outcome.Expect{Kind: outcome.Allowed,
		Listener: "0.0.0.0_80", RouteConfig: "80", VirtualHost: "jsonplaceholder.typicode.com:80",
		Cluster: "outbound|80||jsonplaceholder.typicode.com", Status: 200}
	allowedByPassthrough = outcome.Expect{Kind: outcome.Allowed,
		Listener: "0.0.0.0_80", VirtualHost: "allow_any", Cluster: "PassthroughCluster", Status: 200}
)

// inMesh starts a feature with a backend, Istio in the given mode, and the client app
// with its sidecar.
func inMesh(name, mode string) *features.FeatureBuilder {
	return features.New(name).
		WithSetup("open backend", steps.OpenBackend()).
		WithSetup("install Istio, "+mode, steps.InstallMesh(mode)).
		WithSetup("deploy the client", steps.Apply(manifests.ClientApp)).
		WithSetup("client has its sidecar", steps.ExpectSidecar())
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
	test(t, inMesh("REGISTRY_ONLY without an entry", manifest.RegistryOnly).
		Assess("the call gets Envoy's 502 from block_all", steps.ExpectCall(jsonplaceholderHTTP, blockedByBlockAll)))
}

func TestAllowedAfterTheEntry(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY with the seed's entry", manifest.RegistryOnly).
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry)).
		Assess("the call goes out through the entry's cluster", steps.ExpectCall(jsonplaceholderHTTP, allowedThroughTheEntry)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.SeedServiceEntry)))
}

func TestBlockedAfterTheEntryIsDeleted(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY, entry applied then deleted", manifest.RegistryOnly).
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry)).
		Assess("allowed while the entry is there", steps.ExpectCall(jsonplaceholderHTTP, allowedThroughTheEntry)).
		Assess("delete the entry", steps.Delete(manifests.SeedServiceEntry)).
		Assess("blocked again by block_all", steps.ExpectCall(jsonplaceholderHTTP, blockedByBlockAll)))
}

func TestHTTPSBlockedWithThePort80OnlyEntry(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY, seed's entry, HTTPS", manifest.RegistryOnly).
		WithSetup("apply the seed's ServiceEntry", steps.Apply(manifests.SeedServiceEntry)).
		Assess("port 80 is open", steps.ExpectCall(jsonplaceholderHTTP, allowedThroughTheEntry)).
		Assess("port 443 has no listener: black hole", steps.ExpectCall(jsonplaceholderHTTPS, blockedByBlackHole)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.SeedServiceEntry)))
}

func TestAllowAnyPassesWithoutAnEntry(t *testing.T) {
	test(t, inMesh("ALLOW_ANY without an entry", manifest.AllowAny).
		Assess("the call passes through PassthroughCluster", steps.ExpectCall(jsonplaceholderHTTP, allowedByPassthrough)).
		// A shared cluster goes back to the lab's mode for the scenarios after this one.
		WithTeardown("back to REGISTRY_ONLY", steps.InstallMesh(manifest.RegistryOnly)))
}

func TestMisspeltHostStaysBlocked(t *testing.T) {
	test(t, inMesh("REGISTRY_ONLY with an entry for jsonplaceholder.typicode.co", manifest.RegistryOnly).
		WithSetup("apply the misspelt ServiceEntry", steps.Apply(manifests.MisspeltServiceEntry)).
		Assess("the real host is still unknown: block_all", steps.ExpectCall(jsonplaceholderHTTP, blockedByBlockAll)).
		WithTeardown("delete the ServiceEntry", steps.Delete(manifests.MisspeltServiceEntry)))
}
