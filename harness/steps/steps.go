// Package steps holds the reusable e2e-framework step functions egress scenarios are
// made of, in the manner of e2e-framework's envfuncs: open a backend, install the mesh,
// apply and delete manifests, make a call and expect an outcome. State (the provider,
// the open backend) travels in the context from Setup to Assess to Teardown.
package steps

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

type (
	providerKey struct{}
	backendKey  struct{}
	releaseKey  struct{}
)

// Propagation bounds how long ExpectCall waits for a change to reach the sidecar.
var Propagation = 60 * time.Second

// WithProvider puts the provider every scenario opens its backend from into ctx.
func WithProvider(ctx context.Context, p backend.Provider) context.Context {
	return context.WithValue(ctx, providerKey{}, p)
}

// Backend is the backend opened by OpenBackend.
func Backend(ctx context.Context) backend.Backend {
	b, _ := ctx.Value(backendKey{}).(backend.Backend)
	return b
}

// OpenBackend opens a backend from the context's provider for this feature.
func OpenBackend() features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		p, ok := ctx.Value(providerKey{}).(backend.Provider)
		if !ok {
			t.Fatal("no backend provider in the context: TestMain must call steps.WithProvider")
		}
		b, release, err := p.Open(ctx)
		if err != nil {
			t.Fatalf("open backend %s: %v", p.Name(), err)
		}
		ctx = context.WithValue(ctx, backendKey{}, b)
		return context.WithValue(ctx, releaseKey{}, release)
	}
}

// ReleaseBackend gives back what OpenBackend took.
func ReleaseBackend() features.Func {
	return func(ctx context.Context, _ *testing.T, _ *envconf.Config) context.Context {
		if release, ok := ctx.Value(releaseKey{}).(func()); ok && release != nil {
			release()
		}
		return ctx
	}
}

// InstallMesh installs Istio from manifests/istio/values.yaml with the given
// outbound traffic policy mode.
func InstallMesh(mode string) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		values, err := manifest.LoadMeshValues()
		if err != nil {
			t.Fatal(err)
		}
		if values, err = values.WithOutboundMode(mode); err != nil {
			t.Fatal(err)
		}
		if err := mustBackend(ctx, t).InstallMesh(ctx, values); err != nil {
			t.Fatalf("install mesh (%s): %v", mode, err)
		}
		return ctx
	}
}

// Apply applies one of the project's manifests (a path in manifests.FS) in the client's namespace.
func Apply(name string) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		if err := mustBackend(ctx, t).Apply(ctx, load(t, name)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		return ctx
	}
}

// Delete deletes one of the project's manifests.
func Delete(name string) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		if err := mustBackend(ctx, t).Delete(ctx, load(t, name)); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		return ctx
	}
}

// ExpectSidecar checks that the client runs with an istio-proxy sidecar.
func ExpectSidecar() features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		how, err := mustBackend(ctx, t).Sidecar(ctx, backend.Client)
		if err != nil {
			t.Fatalf("sidecar: %v", err)
		}
		t.Logf("sidecar: %s", how)
		return ctx
	}
}

// ExpectCall calls url from the client until the verdict is want.Kind (config takes
// time to reach a real sidecar), then checks the verdict and its evidence against want.
func ExpectCall(url string, want outcome.Expect) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		call, err := backend.ParseCall(url)
		if err != nil {
			t.Fatal(err)
		}
		v, took, err := backend.Await(ctx, mustBackend(ctx, t), backend.Client, call, want.Kind, Propagation, time.Second)
		if err != nil && v.Kind == "" {
			t.Fatalf("call %s: %v", url, err)
		}
		for _, m := range want.Check(v) {
			t.Errorf("call %s: %s", url, m)
		}
		t.Logf("call %s: %s after %s; evidence: %s", url, v, took.Round(time.Millisecond), v.Evidence)
		return ctx
	}
}

func mustBackend(ctx context.Context, t *testing.T) backend.Backend {
	t.Helper()
	b := Backend(ctx)
	if b == nil {
		t.Fatal("no backend in the context: start the feature with steps.OpenBackend()")
	}
	return b
}

func load(t *testing.T, name string) *manifest.Set {
	t.Helper()
	set, err := manifest.LoadEmbedded(name, backend.Client.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
