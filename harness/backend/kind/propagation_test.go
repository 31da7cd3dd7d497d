package kind

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// BenchmarkOfflinePropagation measures, on the offline kind cluster (make e2e-offline
// runs it with -benchtime 10x on the cluster it keeps between phases), how long a
// ServiceEntry takes to change what the client's sidecar does: from the apply to the
// first allowed call, and from the delete to the first blocked one. Each iteration is
// one apply/delete cycle; p50 and max are reported per direction. The resolution is
// backend.Await's poll interval at that point (20 ms growing towards 1 s).
func BenchmarkOfflinePropagation(b *testing.B) {
	p := offlineProvider(b)
	ctx := context.Background()
	if _, err := p.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = p.Finish(context.Background()) })
	be := p.st.backend
	load := func(name string) *manifest.Set {
		s, err := labs.Manifest(name, apps.Client.Namespace)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	client, entry := load(labs.ClientApp), load(labs.SeedServiceEntry)
	if err := be.Apply(ctx, client); err != nil {
		b.Fatal(err)
	}
	if _, err := be.Sidecar(ctx, apps.Client); err != nil {
		b.Fatal(err)
	}
	call, _ := backend.ParseCall("http://jsonplaceholder.typicode.com/todos/1")
	await := func(want string) time.Duration {
		exp := labs.Expect("serviceentry", "blocked-by-block-all")
		if want == "allowed" {
			exp = labs.Expect("serviceentry", "allowed-through-the-entry")
		}
		_, waited, err := backend.AwaitExpected(ctx, be, apps.Client, call, exp, time.Minute)
		if err != nil {
			b.Fatalf("after the %s: %v", map[string]string{"allowed": "apply", "blocked": "delete"}[want], err)
		}
		return waited.Took
	}
	_ = be.Delete(ctx, entry)
	await("blocked")
	var applied, deleted []time.Duration
	b.ResetTimer()
	for range b.N {
		if err := be.Apply(ctx, entry); err != nil {
			b.Fatal(err)
		}
		applied = append(applied, await("allowed"))
		if err := be.Delete(ctx, entry); err != nil {
			b.Fatal(err)
		}
		deleted = append(deleted, await("blocked"))
	}
	b.StopTimer()
	for _, d := range []struct {
		name string
		ds   []time.Duration
	}{{"apply", applied}, {"delete", deleted}} {
		slices.Sort(d.ds)
		b.ReportMetric(float64(d.ds[len(d.ds)/2].Milliseconds()), "p50-ms/"+d.name)
		b.ReportMetric(float64(d.ds[len(d.ds)-1].Milliseconds()), "max-ms/"+d.name)
	}
}
