package sim_test

import (
	"context"
	"testing"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// BenchmarkVerdict is one verdict on sim.
//
// AfterChange: the entry was just applied, so Istio's control plane is rebuilt and the
// sidecar's config generated before the call is matched: what each lab step pays.
// SameState: nothing changed since the last call, so only the matching runs.
func BenchmarkVerdict(b *testing.B) {
	ctx := context.Background()
	call := backend.MustCall(httpCall)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("AfterChange", func(b *testing.B) {
		w := world(b, manifest.RegistryOnly, true)
		for b.Loop() {
			if err := w.Apply(ctx, entry); err != nil {
				b.Fatal(err)
			}
			v, err := w.Call(ctx, apps.Client, call)
			if err != nil || v.Kind != outcome.Allowed {
				b.Fatalf("%v %v", v, err)
			}
		}
	})
	b.Run("SameState", func(b *testing.B) {
		w := world(b, manifest.RegistryOnly, true, labs.SeedServiceEntry)
		for b.Loop() {
			v, err := w.Call(ctx, apps.Client, call)
			if err != nil || v.Kind != outcome.Allowed {
				b.Fatalf("%v %v", v, err)
			}
		}
	})
}
