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
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
)

type (
	providerKey struct{}
	timeoutsKey struct{}
	backendKey  struct{}
	releaseKey  struct{}
)

// WithProvider puts the provider every scenario opens its backend from, and the run's
// timeouts, into ctx.
func WithProvider(ctx context.Context, p backend.Provider, t backend.Timeouts) context.Context {
	return context.WithValue(context.WithValue(ctx, providerKey{}, p), timeoutsKey{}, t)
}

func timeouts(ctx context.Context) backend.Timeouts {
	if t, ok := ctx.Value(timeoutsKey{}).(backend.Timeouts); ok {
		return t
	}
	return backend.DefaultTimeouts()
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

// Apply applies one of the project's manifests (a path in manifests.FS); objects that
// name no namespace go in namespace.
func Apply(name, namespace string) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		if err := mustBackend(ctx, t).Apply(ctx, load(t, name, namespace)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		return ctx
	}
}

// Delete deletes one of the project's manifests.
func Delete(name, namespace string) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		if err := mustBackend(ctx, t).Delete(ctx, load(t, name, namespace)); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		return ctx
	}
}

// ExpectSidecar checks that workload w runs with an istio-proxy sidecar.
func ExpectSidecar(w backend.Workload) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		sc, err := mustBackend(ctx, t).Sidecar(ctx, w)
		if err != nil {
			t.Fatalf("sidecar of %s: %v", w, err)
		}
		how, err := narrate.SidecarSentence(sc)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sidecar: %s", how)
		return ctx
	}
}

// ExpectCall calls url from workload w until the verdict is want.Kind (config takes
// time to reach a real sidecar), then checks the verdict and its evidence against want.
func ExpectCall(w backend.Workload, url string, want outcome.Expect) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		call, err := backend.ParseCall(url)
		if err != nil {
			t.Fatal(err)
		}
		b := mustBackend(ctx, t)
		since := time.Now()
		v, waited, err := backend.AwaitExpected(ctx, b, w, call, want, timeouts(ctx).Propagation)
		if err != nil && v.Kind == "" {
			t.Fatalf("call %s: %v", url, err)
		}
		for _, m := range want.Check(v) {
			t.Errorf("call %s: %s", url, m)
		}
		t.Logf("call %s: %s after %s; evidence: %s", url, v, waited.Took.Round(time.Millisecond), v.Evidence)
		// A real sidecar's access log names the cluster it sent the call to: the
		// expectation's cluster, read from the data plane rather than its config.
		if al, ok := b.(backend.AccessLogger); ok && want.Cluster != "" && v.Evidence.FromCall {
			e, err := al.AccessLogEntry(ctx, w, call, since)
			if err != nil {
				t.Errorf("call %s: %v", url, err)
			} else if e.Cluster != want.Cluster {
				t.Errorf("call %s: the sidecar's access log names cluster %q, want %q: %s", url, e.Cluster, want.Cluster, e.Line)
			} else {
				t.Logf("call %s: the sidecar's access log: %s", url, e.Line)
			}
		}
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

func load(t *testing.T, name, namespace string) *manifest.Set {
	t.Helper()
	set, err := manifest.LoadEmbedded(name, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
