package scenarios

import (
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/labs"
)

// TestLabs runs every lab of labs/, each as one feature whose assessments are its steps,
// with the verdicts and evidence its lab file states: the lab files are the scenarios.
func TestLabs(t *testing.T) {
	all, err := labs.All()
	if err != nil {
		t.Fatalf("read the labs: %v", err)
	}
	if len(all) == 0 {
		t.Fatal("no lab under labs/: the suite would pass having checked nothing")
	}
	for _, l := range all {
		t.Run(l.Name, func(t *testing.T) { test(t, steps.Lab(l)) })
	}
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
