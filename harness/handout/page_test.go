package handout_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/egresslab/egresslab/harness/handout"
)

// What a handout marks to run is what its by-hand test types: each command block in
// order, with the output it must print attached to it, and nothing else.
func TestParseReadsTheBlocksAHandoutMarksToRun(t *testing.T) {
	md, _ := render(t)
	page, err := handout.Parse(strings.NewReader(md))
	require.NoError(t, err)
	assert.Equal(t, "A handout test", page.Title)
	var titles []string
	var runs []handout.Run
	for _, s := range page.Sections {
		titles = append(titles, s.Title)
		runs = append(runs, s.Runs...)
	}
	assert.Equal(t, []string{"", "Step 1. Install the mesh", "Step 2. Deploy the client", "Step 3. Blocked before the entry",
		"Step 4. Apply the entry", "Step 5. Delete it, and try a wildcard with DNS", "Clean up"}, titles)
	require.Len(t, runs, 11, "%+v", runs)
	first := func(r handout.Run) string { return strings.SplitN(r.Commands, "\n", 2)[0] }
	assert.Equal(t, "helm repo add istio https://blob.istio.io/istio-release/charts --force-update", first(runs[0]))
	assert.Empty(t, runs[0].Output)
	assert.Equal(t, "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY", runs[1].Output)
	assert.False(t, runs[1].Contains)
	assert.Equal(t, "kubectl apply -f - <<'EOF'", first(runs[2]))
	assert.True(t, strings.HasSuffix(runs[2].Commands, "\nEOF"), runs[2].Commands)
	assert.Equal(t, `deployment "client" successfully rolled out`, runs[3].Output)
	assert.True(t, runs[3].Contains)
	assert.Equal(t, "502", runs[4].Output)
	// The sidecar's access log: block_all answers itself, with no cluster.
	assert.Equal(t, "kubectl -n egresslab logs deploy/client -c istio-proxy --tail 1", runs[5].Commands)
	assert.Equal(t, "502 - direct_response", runs[5].Output)
	assert.True(t, runs[5].Contains)
	assert.Equal(t, "kubectl apply -n egresslab -f testlab/entry.yaml", runs[6].Commands)
	assert.Equal(t, "200", runs[7].Output)
	assert.Equal(t, "outbound|80||api.example.org", runs[8].Output)
	assert.Equal(t, "kubectl delete -n egresslab -f testlab/entry.yaml", runs[9].Commands)
	assert.Equal(t, "kubectl apply -n egresslab -f testlab/wildcard.yaml", runs[10].Commands)
	assert.True(t, strings.HasPrefix(runs[10].Output, "denied the request: configuration is invalid: hosts must be FQDN"), runs[10].Output)
	// The YAML shown (not marked) is not run; the lines of a run are 1-based lines of the page.
	assert.Equal(t, "```"+handout.RunMark, strings.Split(md, "\n")[runs[0].Line-1])
	// Nothing applied is left at the end: the clean-up section has nothing to run.
	assert.Empty(t, page.Sections[len(page.Sections)-1].Runs)
}

// An output block belongs to the run block right before it; one anywhere else, or a
// block left open, is refused with its line.
func TestParseRefusesAnOutputWithNoCommandAndAnOpenBlock(t *testing.T) {
	for _, tc := range []struct{ name, md, want string }{
		{"output first", "# T\n\n```text output\n502\n```\n", "line 3: an output block must follow"},
		{"prose between", "# T\n\n```sh run\nls\n```\n\nthen\n\n```text output\n502\n```\n", "line 9: an output block must follow"},
		{"two outputs", "# T\n\n```sh run\nls\n```\n\n```text output\n1\n```\n\n```text output\n2\n```\n", "line 11: an output block must follow"},
		{"open", "# T\n\n```sh run\nls\n", "line 3: the block that starts here has no closing ```"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handout.Parse(strings.NewReader(tc.md))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// The client a person deploys by hand is the lab's workload, the same names, labels,
// service account and Service, with only its container replaced by the curl sample's.
func TestTheByHandClientIsTheLabsWorkloadWithCurl(t *testing.T) {
	md, _ := render(t)
	page, err := handout.Parse(strings.NewReader(md))
	require.NoError(t, err)
	deploy := page.Sections[2].Runs[0].Commands
	docs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(deploy, "kubectl apply -f - <<'EOF'\n"), "\nEOF"), "\n---\n")
	require.Len(t, docs, 4)
	var kinds []string
	var deployment struct {
		Metadata struct {
			Name, Namespace string
			Labels          map[string]string
		}
		Spec struct {
			Template struct {
				Metadata struct{ Labels map[string]string }
				Spec     struct {
					ServiceAccountName string
					Containers         []map[string]any
				}
			}
		}
	}
	for _, d := range docs {
		var o struct{ Kind string }
		require.NoError(t, yaml.Unmarshal([]byte(d), &o))
		kinds = append(kinds, o.Kind)
		if o.Kind == "Deployment" {
			require.NoError(t, yaml.Unmarshal([]byte(d), &deployment))
		}
	}
	assert.Equal(t, []string{"Namespace", "ServiceAccount", "Service", "Deployment"}, kinds)
	assert.Equal(t, "client", deployment.Metadata.Name)
	assert.Equal(t, "egresslab", deployment.Metadata.Namespace)
	assert.Equal(t, map[string]string{"app": "client", "version": "v1"}, deployment.Spec.Template.Metadata.Labels)
	assert.Equal(t, "client", deployment.Spec.Template.Spec.ServiceAccountName)
	assert.Equal(t, []map[string]any{{
		"name": "client", "image": "docker.io/curlimages/curl:8.16.0", "command": []any{"/bin/sleep", "infinity"},
		"imagePullPolicy": "IfNotPresent",
	}}, deployment.Spec.Template.Spec.Containers)
	assert.NotContains(t, deploy, "egresslab/client:dev")
	assert.Contains(t, deploy, "istio-injection: enabled")
}
