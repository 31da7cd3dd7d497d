package scenarios

import (
	"context"
	"os"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/internal/check"
	"github.com/egresslab/egresslab/labs/apps"
)

// TestCheck is `egresslab check -f testdata/team -calls testdata/calls.yaml` on the
// scenarios' backend: a team's configuration kept as a folder (its Namespace and an
// entry exported to it only) and calls from two workloads, the team's (the client app
// deployed as payments/api) and the lab's client. Each call must get what the calls
// file expects, with its evidence, and what Istio's simulator computes for the same
// objects.
func TestCheck(t *testing.T) {
	objects, err := manifest.LoadPaths([]string{"testdata/team"}, apps.Client.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/calls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := labfile.ParseCalls("testdata/calls.yaml", data, apps.Client)
	if err != nil {
		t.Fatal(err)
	}
	q := check.Question{Mode: manifest.RegistryOnly, Objects: []*manifest.Set{objects}, Calls: check.CallsOf(parsed)}
	for _, c := range q.Calls {
		if c.Expect == nil {
			t.Fatalf("%s from %s expects nothing: every call of testdata/calls.yaml must", c.Call, c.From)
		}
	}
	test(t, features.New("check: a team's folder of objects, calls from its workloads").
		WithSetup("open backend", steps.OpenBackend()).
		Assess("every call gets what it expects, as Istio's simulator computes", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			b := steps.Backend(ctx)
			answers, err := check.Check(ctx, b, q, backend.DefaultTimeouts().Propagation)
			if err != nil {
				t.Fatalf("check on %s: %v", b.Name(), err)
			}
			if len(answers) != len(q.Calls) {
				t.Fatalf("%d answers for %d calls", len(answers), len(q.Calls))
			}
			for _, a := range answers {
				if !a.Passed() {
					t.Errorf("%s from %s on %s: %s (%s); mismatches %v; unsettled: %v",
						a.Call.Call, a.From, b.Name(), a.Verdict, a.Verdict.Evidence, a.Mismatches, a.Unsettled)
				}
				if a.Verdict.Kind != a.Simulated.Kind {
					t.Errorf("%s from %s on %s: %s, where Istio's simulator says %s", a.Call.Call, a.From, b.Name(), a.Verdict, a.Simulated)
				}
			}
			return ctx
		}))
}
