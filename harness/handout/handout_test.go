package handout_test

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// A small lab with one action of each kind.
const (
	testLab = `title: A handout test
summary: Every kind of action, once.
steps:
- title: Install the mesh
  prose: REGISTRY_ONLY lets out only what the mesh knows.
  do:
  - mesh: REGISTRY_ONLY
- title: Deploy the client
  do:
  - deploy: client
- title: Blocked before the entry
  do:
  - call: http://api.example.org/v1
    expect: {verdict: BLOCKED, reason: block_all, listener: 0.0.0.0_80, routeConfig: "80", virtualHost: block_all, status: 502}
- title: Apply the entry
  do:
  - apply: entry.yaml
  - call: http://api.example.org/v1
    expect: {verdict: ALLOWED, reason: registered service, cluster: "outbound|80||api.example.org", status: 200}
- title: Delete it, and try a wildcard with DNS
  do:
  - delete: entry.yaml
  - refuse: wildcard.yaml
`
	entryYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api-example
spec:
  hosts: [api.example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  location: MESH_EXTERNAL
`
	wildcardYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: wildcard-dns
spec:
  hosts: ["*.example.org"]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  location: MESH_EXTERNAL
`
)

func render(t *testing.T) (string, *labfile.Lab) {
	t.Helper()
	appsFS, err := fs.Sub(labs.FS, "apps")
	require.NoError(t, err)
	fsys := fstest.MapFS{
		labfile.FileName: {Data: []byte(testLab)},
		"entry.yaml":     {Data: []byte(entryYAML)},
		"wildcard.yaml":  {Data: []byte(wildcardYAML)},
	}
	l, err := labfile.Load(labfile.Source{FS: fsys, Dir: ".", Shown: "testlab", Apps: appsFS, AppsShown: "labs/apps", Client: apps.Client},
		labfile.FileName, "testlab")
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, handout.Write(&b, l))
	return b.String(), l
}

// Each step is a heading, numbered, in the lab's order, with its prose.
func TestHandoutHasEachStepInOrder(t *testing.T) {
	md, l := render(t)
	assert.True(t, strings.HasPrefix(md, "<!-- Made from testlab/lab.yaml by `egresslab lab testlab -markdown`"), md)
	assert.Contains(t, md, "\n# A handout test\n\nEvery kind of action, once.\n")
	at := 0
	for i, title := range []string{"Install the mesh", "Deploy the client", "Blocked before the entry", "Apply the entry",
		"Delete it, and try a wildcard with DNS"} {
		heading := "\n## Step " + string(rune('1'+i)) + ". " + title + "\n"
		j := strings.Index(md, heading)
		require.GreaterOrEqual(t, j, 0, "no heading %q", heading)
		assert.Greater(t, j, at, "%q is out of order", heading)
		at = j
	}
	assert.Len(t, l.Steps, 5)
	assert.Equal(t, 5, strings.Count(md, "\n## Step "))
	assert.Contains(t, md, "## Step 1. Install the mesh\n\nREGISTRY_ONLY lets out only what the mesh knows.\n")
}

// Each action shows what an attendee types (a code block) and what it applies; each
// call what it is expected to get; a refuse action, Istio's own message.
func TestHandoutShowsEachActionAndWhatToExpect(t *testing.T) {
	md, l := render(t)
	refusal := l.Steps[4].Actions[1].Refusal
	require.NotEmpty(t, refusal)
	for _, tc := range []struct {
		name string
		want []string
	}{{
		name: "mesh: the mesh config and the helm command",
		want: []string{
			"outboundTrafficPolicy mode **REGISTRY_ONLY**",
			"```yaml\nmeshConfig:\n",
			"mode: REGISTRY_ONLY",
			"```sh run\nhelm repo add istio https://blob.istio.io/istio-release/charts --force-update\n" +
				"helm upgrade --install istio-base istio/base -n istio-system --create-namespace --version 1.31.0 --wait\n" +
				"helm upgrade --install istiod istio/istiod -n istio-system --version 1.31.0 -f manifests/istio/values.yaml --wait\n```",
			"```text output\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n```",
		},
	}, {
		name: "deploy: the apply and the check for a sidecar",
		want: []string{
			"Deploy what `labs/apps/client.yaml` deploys (Namespace egresslab, ServiceAccount egresslab/client, Service egresslab/client, Deployment egresslab/client), with Istio's curl sample image",
			"```sh run\nkubectl apply -f - <<'EOF'\n",
			"image: docker.io/curlimages/curl:8.16.0\n",
			"\nEOF\n```",
			"```sh run\nkubectl -n egresslab rollout status deploy/client --timeout=3m\n```\n\n```text output contains\ndeployment \"client\" successfully rolled out\n```",
		},
	}, {
		name: "apply: the manifest and the command",
		want: []string{
			"Apply `testlab/entry.yaml`:\n\n```yaml\n",
			"kind: ServiceEntry",
			"```sh run\nkubectl apply -n egresslab -f testlab/entry.yaml\n```",
		},
	}, {
		name: "delete: the command",
		want: []string{"Delete `testlab/entry.yaml`:\n\n```sh run\nkubectl delete -n egresslab -f testlab/entry.yaml\n```"},
	}, {
		name: "a blocked call: the command, the verdict, the evidence and what curl shows",
		want: []string{
			"Call `http://api.example.org/v1` from egresslab/client:\n\n```sh run\nkubectl -n egresslab exec deploy/client -c client -- curl -s -o /dev/null -w '%{http_code}\\n' http://api.example.org/v1\n```\n\n```text output\n502\n```",
			"Expected: **BLOCKED** (block_all). curl prints 502.",
			"| listener | `0.0.0.0_80` |",
			"| virtual host | `block_all` |",
			"502 from the sidecar itself: the call never leaves the pod",
		},
	}, {
		name: "an allowed call: the verdict and the cluster",
		want: []string{
			"```text output\n200\n```",
			"Expected: **ALLOWED** (registered service). curl prints 200.",
			"| cluster | `outbound\\|80\\|\\|api.example.org` |",
			"out of the mesh to api.example.org",
		},
	}, {
		name: "refuse: the file, the command, and Istio's message",
		want: []string{
			"Try to apply `testlab/wildcard.yaml`:\n\n```yaml\n" + strings.TrimRight(wildcardYAML, "\n") + "\n```",
			// What istiod's validating webhook answers kubectl, in Istio's own words.
			"```sh run\nkubectl apply -n egresslab -f testlab/wildcard.yaml\n```\n\n```text output contains\n" +
				"denied the request: configuration is invalid: hosts must be FQDN",
			"Istio's validation refuses it",
			"```text\n" + strings.TrimRight(refusal, "\n") + "\n```",
			// Istio's own words, from its validation of a ServiceEntry.
			"hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, want := range tc.want {
				assert.Contains(t, md, want)
			}
		})
	}
	// Every call has its command and its expectation, once each.
	assert.Equal(t, 2, strings.Count(md, "curl -s -o /dev/null -w '%{http_code}\\n' http://api.example.org/v1\n```"))
	assert.Equal(t, 2, strings.Count(md, "\nExpected: **"))
	assert.Equal(t, 2, strings.Count(md, "```mermaid\n"))
}
