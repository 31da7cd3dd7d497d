package kind

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// EnvE2E opts in to TestRealKindRun: it creates a cluster, pulls images and takes minutes.
const EnvE2E = "EGRESSLAB_KIND_E2E"

// TestRealKindRun is the lab's first steps on a real kind cluster: blocked, then allowed
// through the ServiceEntry, then blocked again once it is deleted. It runs only where a
// Docker daemon answers and the run is asked for:
//
//	EGRESSLAB_KIND_E2E=1 go test ./harness/backend/kind -run TestRealKindRun -v -timeout 30m
func TestRealKindRun(t *testing.T) {
	p := New(OptionsFromEnv(os.Getenv)...)
	if ok, why := p.Available(context.Background()); !ok {
		t.Skip("kind backend cannot run here: " + why)
	}
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("a container runtime answers, but the real cluster run is opt-in: %s=1 go test ./harness/backend/kind -run TestRealKindRun -v -timeout 30m", EnvE2E)
	}
	ctx := context.Background()
	if _, err := p.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := p.Finish(context.Background()); err != nil {
			t.Error(err)
		}
	})
	b, release, err := p.Open(ctx)
	require.NoError(t, err)
	defer release()

	client, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, client), "the labs apply their apps; Setup installs only Istio")
	sc, err := b.Sidecar(ctx, apps.Client)
	require.NoError(t, err)
	require.True(t, sc.Injected, "%+v", sc)
	t.Logf("%+v", sc)

	call := backend.MustCall("http://jsonplaceholder.typicode.com/todos/1")
	await := func(want outcome.Kind) outcome.Verdict {
		v, waited, err := backend.Await(ctx, b, apps.Client, call, want, 90*time.Second)
		require.NoError(t, err)
		t.Logf("%s after %s: %s", v, waited.Took.Round(time.Millisecond), v.Evidence)
		return v
	}
	v := await(outcome.Blocked)
	require.Equal(t, outcome.ReasonBlockAll, v.Reason)

	entry, err := labs.Manifest(labs.SeedServiceEntry, apps.Client.Namespace)
	require.NoError(t, err)
	require.NoError(t, b.Apply(ctx, entry))
	v = await(outcome.Allowed)
	require.Equal(t, 200, v.Evidence.Status)
	cfg, err := b.SidecarConfig(ctx, apps.Client, call)
	require.NoError(t, err)
	require.Contains(t, cfg, "outbound|80||jsonplaceholder.typicode.com")

	https, err := b.Call(ctx, apps.Client, backend.MustCall("https://jsonplaceholder.typicode.com/todos/1"))
	require.NoError(t, err)
	require.Equal(t, outcome.Blocked, https.Kind, "port 443 is not in the entry: %s", https.Evidence)

	require.NoError(t, b.Delete(ctx, entry))
	await(outcome.Blocked)
}
