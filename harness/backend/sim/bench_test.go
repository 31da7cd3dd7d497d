package sim_test

import (
	"context"
	"runtime"
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

// BenchmarkLongLab is a long lab on one backend: each cycle applies the seed entry,
// calls, deletes it and calls again, so each cycle builds two control planes. It
// reports the live heap after a GC once the run is over (live-MB), its growth per cycle
// from the first cycle on (live-KB/cycle), and the goroutines left over at the end
// beyond those there were after the first cycle (goroutines-grown). A bounded backend
// keeps live-KB/cycle near zero however long the lab.
func BenchmarkLongLab(b *testing.B) {
	ctx := context.Background()
	call := backend.MustCall(httpCall)
	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	if err != nil {
		b.Fatal(err)
	}
	w := world(b, manifest.RegistryOnly, true)
	cycle := func() {
		for _, apply := range []bool{true, false} {
			change, want := w.Delete, outcome.Blocked
			if apply {
				change, want = w.Apply, outcome.Allowed
			}
			if err := change(ctx, entry); err != nil {
				b.Fatal(err)
			}
			v, err := w.Call(ctx, apps.Client, call)
			if err != nil || v.Kind != want {
				b.Fatalf("%v %v", v, err)
			}
		}
	}
	cycle() // Istio's one-time state (schemas, caches, metrics) is not the lab's growth
	heap0, goroutines0 := liveHeap(), runtime.NumGoroutine()
	cycles := 0
	for b.Loop() {
		cycle()
		cycles++
	}
	b.StopTimer()
	heap := liveHeap()
	b.ReportMetric(float64(heap)/(1<<20), "live-MB")
	b.ReportMetric((float64(heap)-float64(heap0))/1024/float64(cycles), "live-KB/cycle")
	b.ReportMetric(float64(waitGoroutines(goroutines0)-goroutines0), "goroutines-grown")
}
