package labfile_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/outcome"
)

const entry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: example
spec:
  hosts: [api.example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
`

const client = `apiVersion: v1
kind: Namespace
metadata: {name: egresslab}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: client
  namespace: egresslab
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers: [{name: client, image: egresslab/client:dev}]
`

// good is a small, valid lab; each bad case below changes one line of it.
const good = `title: A test lab
summary: Checks the loader.
order: 2
url: http://api.example.org/v1
entry: entry.yaml
steps:
- title: Mesh and client
  do:
  - mesh: REGISTRY_ONLY
  - deploy: client
- title: The entry
  prose: Opens the host.
  do:
  - apply: entry.yaml
  - call: http://api.example.org/v1
    id: allowed
    expect: {verdict: ALLOWED, reason: registered service, cluster: "outbound|80||api.example.org"}
    config: before
  - delete: entry.yaml
`

func load(t *testing.T, lab string, files ...string) (*labfile.Lab, error) {
	t.Helper()
	fsys := fstest.MapFS{"mylab/lab.yaml": {Data: []byte(lab)}}
	for i := 0; i+1 < len(files); i += 2 {
		fsys["mylab/"+files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	apps := fstest.MapFS{"client.yaml": {Data: []byte(client)}}
	return labfile.Load(labfile.Source{FS: fsys, Dir: "mylab", Shown: "labs", Apps: apps, AppsShown: "labs/apps",
		Client: backend.Workload{Namespace: "egresslab", Name: "client"}}, "lab.yaml", "mylab")
}

func TestAGoodLabIsReadWithEveryActionAndExpectation(t *testing.T) {
	l, err := load(t, good, "entry.yaml", entry)
	require.NoError(t, err)
	assert.Equal(t, "A test lab", l.Title)
	assert.Equal(t, 2, l.Order)
	assert.Equal(t, "labs/mylab/lab.yaml", l.File)
	require.Len(t, l.Steps, 2)
	kinds := []labfile.ActionKind{}
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			kinds = append(kinds, a.Kind)
		}
	}
	assert.Equal(t, []labfile.ActionKind{labfile.Mesh, labfile.Deploy, labfile.Apply, labfile.MakeCall, labfile.Delete}, kinds)
	assert.Equal(t, "labs/mylab/entry.yaml", l.Steps[1].Actions[0].Set.Source)
	assert.Same(t, l.Steps[1].Actions[0].Set, l.Steps[1].Actions[2].Set, "apply and delete of one file share its objects")
	want, ok := l.Expectation("allowed")
	require.True(t, ok)
	assert.Equal(t, outcome.Expect{Kind: outcome.Allowed, Reason: outcome.ReasonRegistered, Cluster: "outbound|80||api.example.org"}, want)
	calls := l.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, 2, calls[0].Step)
	assert.Equal(t, "egresslab/client", calls[0].From.String())
}

// Each bad lab file is refused with the file and line, the step, what is wrong and the fix.
func TestBadLabFilesNameTheFileLineStepAndFix(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		files          []string
		want           []string
	}{
		{"unknown action", "  - apply: entry.yaml", "  - aply: entry.yaml", nil,
			[]string{`labs/mylab/lab.yaml:14: step 2 ("The entry"): unknown action "aply"`, "fix: did you mean `apply`?"}},
		{"missing manifest", "  - apply: entry.yaml", "  - apply: entyr.yaml", nil,
			[]string{`lab.yaml:14: step 2 ("The entry"): apply entyr.yaml: there is no such file in labs/mylab`, "did you mean entry.yaml?"}},
		{"unknown reason", "reason: registered service", "reason: registered", nil,
			[]string{`lab.yaml:17: step 2 ("The entry"): reason "registered" is not a reason egresslab reports`, "did you mean `registered service`?"}},
		{"unknown evidence field", `cluster: "outbound|80||api.example.org"`, `clustr: "outbound|80||api.example.org"`, nil,
			[]string{`lab.yaml:17: step 2 ("The entry"): unknown field "clustr" in an expectation`, "did you mean `cluster`?", "routeConfig"}},
		{"bad url", "  - call: http://api.example.org/v1", "  - call: ftp://api.example.org/v1", nil,
			[]string{`lab.yaml:15: step 2 ("The entry"): call "ftp://api.example.org/v1": scheme must be http, https or tcp`}},
		{"manifest Istio refuses", "  - apply: entry.yaml", "  - apply: bad.yaml",
			[]string{"bad.yaml", strings.Replace(entry, "hosts: [api.example.org]", "hosts: []", 1)},
			[]string{`lab.yaml:14: step 2 ("The entry"): apply bad.yaml is refused, so nothing of the lab is applied`,
				"labs/mylab/bad.yaml, document 1 (ServiceEntry example): Istio rejects it", "fix: list the external host"}},
		{"unknown verdict", "verdict: ALLOWED", "verdict: PASSED", nil,
			[]string{`lab.yaml:17: step 2 ("The entry"): verdict "PASSED" is not a verdict`}},
		{"call before the client is deployed", "  - deploy: client", "  - mesh: ALLOW_ANY", nil,
			[]string{`step 2 ("The entry"): the call is made from egresslab/client, which no earlier step deploys`, "fix: deploy it first"}},
		{"delete of what was never applied", "  - apply: entry.yaml", "  - mesh: ALLOW_ANY", nil,
			[]string{`lab.yaml:19: step 2 ("The entry"): delete entry.yaml: no earlier step applies it`}},
		{"suggest from a workload never deployed", "  - delete: entry.yaml", "  - suggest: egresslab/legacy", nil,
			[]string{`lab.yaml:19: step 2 ("The entry"): suggest reads the access log of egresslab/legacy, which no earlier step deploys`, "fix: deploy it first"}},
		{"suggest from no workload", "  - delete: entry.yaml", "  - suggest: legacy", nil,
			[]string{`lab.yaml:19: step 2 ("The entry"): suggest "legacy": name the workload as NAMESPACE/DEPLOYMENT`, "e.g. `suggest: egresslab/client`"}},
		{"two actions in one", "  - delete: entry.yaml", "  - delete: entry.yaml\n    apply: entry.yaml", nil,
			[]string{`lab.yaml:19: step 2 ("The entry"): one action holds two: delete and apply`}},
		{"unknown mode", "mesh: REGISTRY_ONLY", "mesh: REGISTRY", nil,
			[]string{`lab.yaml:9: step 1 ("Mesh and client"): mesh mode "REGISTRY" is not an outbound traffic policy mode`}},
		{"not YAML", "title: A test lab", "title: [A test lab", nil,
			[]string{"labs/mylab/lab.yaml:1: not valid YAML"}},
		{"unknown top-level field", "order: 2", "oder: 2", nil,
			[]string{`lab.yaml:3: unknown field "oder" in the lab`, "did you mean `order`?"}},
		{"refuse of a manifest Istio accepts", "  - delete: entry.yaml", "  - delete: entry.yaml\n  - refuse: entry.yaml", nil,
			[]string{`lab.yaml:20: step 2 ("The entry"): refuse entry.yaml: Istio's validation accepts it`, "fix: give `refuse:` a manifest Istio refuses"}},
		{"diff without before", "    config: before", "    config: diff", nil,
			[]string{`lab.yaml:18: step 2 ("The entry"): config: diff with no earlier call marked`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := strings.Replace(good, tc.from, tc.to, 1)
			require.NotEqual(t, good, lab, "the case changes the lab")
			files := append([]string{"entry.yaml", entry}, tc.files...)
			l, err := load(t, lab, files...)
			require.Error(t, err)
			assert.Nil(t, l, "a bad lab is refused whole")
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			var errs labfile.Errors
			require.ErrorAs(t, err, &errs)
		})
	}
}

// A refuse step carries Istio's own message for its file, and applies nothing: the
// lab's sets hold only what is applied.
func TestARefuseStepCarriesIstiosMessage(t *testing.T) {
	bad := strings.Replace(entry, "hosts: [api.example.org]", "hosts: [\"*.example.org\"]", 1)
	l, err := load(t, good+"  - refuse: wildcard.yaml\n", "entry.yaml", entry, "wildcard.yaml", bad)
	require.NoError(t, err)
	steps := l.Steps[1].Actions
	a := steps[len(steps)-1]
	assert.Equal(t, labfile.Refuse, a.Kind)
	assert.Nil(t, a.Set, "a refused file has no objects to apply")
	assert.Equal(t, bad, a.Text)
	assert.Equal(t, "kubectl apply -n egresslab -f labs/mylab/wildcard.yaml", a.Command)
	assert.Contains(t, a.Refusal, "labs/mylab/wildcard.yaml, document 1 (ServiceEntry example): Istio rejects it")
	assert.Contains(t, a.Refusal, `domain name "*.example.org" invalid`)
}

// A misspelt action is one error, not also the errors of the steps that build on what
// it was meant to do.
func TestAMisspeltActionIsOneError(t *testing.T) {
	for _, tc := range []struct{ from, to, not string }{
		{"  - apply: entry.yaml", "  - aply: entry.yaml", "no earlier step applies it"},
		{"  - deploy: client", "  - deploi: client", "which no earlier step deploys"},
	} {
		_, err := load(t, strings.Replace(good, tc.from, tc.to, 1), "entry.yaml", entry)
		var errs labfile.Errors
		require.ErrorAs(t, err, &errs)
		assert.Len(t, errs, 1, "%v", err)
		assert.NotContains(t, err.Error(), tc.not)
	}
}

func TestALabWithoutStepsOrTitleSaysWhatToAdd(t *testing.T) {
	_, err := load(t, "summary: nothing\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the lab has no title")
	assert.Contains(t, err.Error(), "the lab has no steps")
	assert.Contains(t, err.Error(), "fix: add `steps:`")
}
