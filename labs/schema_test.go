package labs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// The lab format's JSON Schema, for editors: each lab file names it on its first line
// (yaml-language-server's modeline), relative to the lab's folder. The schema is read
// here and by editors only, never by egresslab.
const (
	schemaFile = "lab.schema.json"
	modeline   = "# yaml-language-server: $schema=../" + schemaFile
)

func labSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err, "%s is not JSON", schemaFile)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource(schemaFile, doc))
	sch, err := c.Compile(schemaFile)
	require.NoError(t, err, "%s is not a valid JSON Schema", schemaFile)
	return sch
}

// validate checks a lab file's YAML against the schema, read as the loader reads it
// (go.yaml.in/yaml/v3, whose YAML 1.2 scalars are also yaml-language-server's).
func validate(sch *jsonschema.Schema, data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return sch.Validate(doc)
}

// The lab files, as the editor sees them: every labs/NAME/lab.yaml on disk.
func labFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("*", labfile.FileName))
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Dir(f))
	}
	require.Equal(t, labs.Names(), names, "the lab files on disk are the labs egresslab knows")
	return files
}

func TestEveryLabFileMatchesTheSchema(t *testing.T) {
	sch := labSchema(t)
	for _, file := range labFiles(t) {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		assert.NoError(t, validate(sch, data), "labs/%s", file)
	}
}

// An editor with yaml-language-server (VS Code's YAML extension, and others) checks and
// completes a lab file by the schema its first line names.
func TestEveryLabFileNamesTheSchemaOnItsFirstLine(t *testing.T) {
	for _, file := range labFiles(t) {
		f, err := os.Open(file)
		require.NoError(t, err)
		first, err := bufio.NewReader(f).ReadString('\n')
		f.Close()
		require.NoError(t, err)
		assert.Equal(t, modeline, strings.TrimRight(first, "\r\n"), "labs/%s: the first line names the schema", file)
		schema := filepath.Join(filepath.Dir(file), strings.TrimPrefix(modeline, "# yaml-language-server: $schema="))
		_, err = os.Stat(schema)
		assert.NoError(t, err, "labs/%s: the schema it names is there", file)
	}
}

// agreed is a small lab that uses every action and every field of the format; each case
// below changes one line of it. Its manifests are the serviceentry and wildcards labs'.
const agreed = modeline + `
title: A lab the schema and the loader agree on
summary: Every action and every field, once.
order: 1
url: http://jsonplaceholder.typicode.com/todos/1
entry: entry.yaml
steps:
- title: REGISTRY_ONLY, and the client
  prose: >
    The mesh, then the client.
  do:
  - mesh: REGISTRY_ONLY
  - deploy: client
- title: The entry
  do:
  - call: http://jsonplaceholder.typicode.com/todos/1
    id: blocked
    from: egresslab/client
    expect: {verdict: BLOCKED, reason: block_all, listener: 0.0.0.0_80, routeConfig: "80", virtualHost: block_all, status: 502}
    config: before
  - apply: entry.yaml
  - call: http://jsonplaceholder.typicode.com/todos/1
    address: 10.20.30.40
    expect:
      verdict: ALLOWED
      cluster: outbound|80||jsonplaceholder.typicode.com
      sni: jsonplaceholder.typicode.com
      gateway: {listener: 0.0.0.0_80, routeConfig: http.80, virtualHost: "jsonplaceholder.typicode.com:80", cluster: "outbound|80||jsonplaceholder.typicode.com"}
    config: diff
    propagation: true
  - delete: entry.yaml
  - refuse: refused.yaml
`

// loadAgreed loads a lab file with the project's loader, its manifests beside it and
// the shared apps, as a lab of labs/ is loaded.
func loadAgreed(t *testing.T, lab string) error {
	t.Helper()
	fsys := fstest.MapFS{"mylab/lab.yaml": {Data: []byte(lab)}}
	for name, from := range map[string]string{"entry.yaml": labs.SeedServiceEntry, "refused.yaml": "wildcards/wildcard-dns.yaml"} {
		data, err := fs.ReadFile(labs.FS, from)
		require.NoError(t, err)
		fsys["mylab/"+name] = &fstest.MapFile{Data: data}
	}
	appsFS, err := fs.Sub(labs.FS, "apps")
	require.NoError(t, err)
	_, err = labfile.Load(labfile.Source{FS: fsys, Dir: "mylab", Shown: "labs", Apps: appsFS, AppsShown: "labs/apps", Client: apps.Client},
		labfile.FileName, "mylab")
	return err
}

// leafLocations lists where in the lab file (JSON pointers) the schema found each problem.
func leafLocations(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, "/"+strings.Join(e.InstanceLocation, "/"))
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// The schema is not vacuous, and says what the loader says: a lab file the loader
// refuses the schema refuses, at the same place, and a spelling the loader accepts the
// schema accepts. (What a schema cannot see, the loader alone checks: that the files
// named exist and Istio accepts them, a call's workload is deployed, a delete follows
// an apply; and the few spellings the schema is stricter about, such as a lower-case
// verdict, are left out here.)
func TestTheSchemaAndTheLoaderAgree(t *testing.T) {
	sch := labSchema(t)
	require.NoError(t, validate(sch, []byte(agreed)), "the schema accepts the lab every case changes")
	require.NoError(t, loadAgreed(t, agreed), "the loader accepts the lab every case changes")

	const call2 = "/steps/1/do/0"
	for _, tc := range []struct {
		name, from, to string
		// loader is what the loader's refusal says, "" when both accept the lab; at is
		// where the schema's refusal points.
		loader, at string
	}{
		{"unknown top-level field", "order: 1", "oder: 1", `unknown field "oder" in the lab`, "/"},
		{"no summary", "summary: Every action and every field, once.\n", "", "the lab has no summary", "/"},
		{"order not a number", "order: 1", "order: first", `order "first" is not a whole number`, "/order"},
		{"url not http", "url: http://", "url: ftp://", "url: call \"ftp://", "/url"},
		{"no steps", "steps:\n", "step:\n", "the lab has no steps", "/"},
		{"unknown step field", "  prose: >", "  prose_: >", `unknown field "prose_" in a step`, "/steps/0"},
		{"step without actions", "  do:\n  - mesh: REGISTRY_ONLY\n  - deploy: client\n", "  do: []\n", "the step does nothing", "/steps/0/do"},
		{"unknown action", "  - apply: entry.yaml", "  - aply: entry.yaml", `unknown action "aply"`, "/steps/1/do/1"},
		{"two actions in one", "  - delete: entry.yaml", "  - delete: entry.yaml\n    refuse: refused.yaml", "one action holds two: delete and refuse", "/steps/1/do/3"},
		{"a call's field on another action", "  - delete: entry.yaml", "  - delete: entry.yaml\n    from: egresslab/client", `"from" belongs to a call, not to delete`, "/steps/1/do/3/from"},
		{"a call's fields with no call", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked\n", "  - id: blocked\n", "the action names no action", call2},
		{"a call without its URL", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - call:\n    id: blocked", `call "": scheme must be http, https or tcp`, call2 + "/call"},
		{"a call's URL as url:", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - url: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", `unknown action "url"`, call2},
		{"a call's URL with no host", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - call: http:///todos/1\n    id: blocked", "no host", call2 + "/call"},
		{"a call's port out of range", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - call: http://jsonplaceholder.typicode.com:65536/todos/1\n    id: blocked", "is not a number from 1 to 65535", call2 + "/call"},
		{"a call that expects nothing", "    expect: {verdict: BLOCKED, reason: block_all, listener: 0.0.0.0_80, routeConfig: \"80\", virtualHost: block_all, status: 502}\n", "", "the call expects nothing", call2},
		{"from with no namespace", "from: egresslab/client", "from: client", "name the workload as NAMESPACE/DEPLOYMENT", call2 + "/from"},
		{"address not an IP", "address: 10.20.30.40", "address: 10.20.30.400", "is not an IP address", "/steps/1/do/2/address"},
		{"unknown config", "config: before", "config: after", `config "after"`, call2 + "/config"},
		{"propagation not a boolean", "propagation: true", "propagation: soon", `propagation "soon" is not true or false`, "/steps/1/do/2/propagation"},
		{"unknown verdict", "verdict: BLOCKED", "verdict: REFUSED", `verdict "REFUSED" is not a verdict`, call2 + "/expect/verdict"},
		{"no verdict", "verdict: BLOCKED, ", "", "the expectation has no verdict", call2 + "/expect"},
		{"unknown reason", "reason: block_all", "reason: blockall", `reason "blockall" is not a reason egresslab reports`, call2 + "/expect/reason"},
		{"unknown evidence field", "listener: 0.0.0.0_80, routeConfig", "listner: 0.0.0.0_80, routeConfig", `unknown field "listner" in an expectation`, call2 + "/expect"},
		{"status out of range", "status: 502", "status: 42", `status "42" is not an HTTP status code`, call2 + "/expect/status"},
		{"unknown gateway field", "gateway: {listener:", "gateway: {listen:", `unknown field "listen" in a gateway expectation`, "/steps/1/do/2/expect/gateway"},
		{"mesh mode unknown", "mesh: REGISTRY_ONLY", "mesh: REGISTRY", `mesh mode "REGISTRY" is not an outbound traffic policy mode`, "/steps/0/do/0/mesh"},
		{"mesh mode not text", "mesh: REGISTRY_ONLY", "mesh: [REGISTRY_ONLY]", "mesh must be text", "/steps/0/do/0/mesh"},
		{"title not text", "- title: The entry", "- title: {The: entry}", "title must be text", "/steps/1/title"},

		// Spellings both accept: YAML's scalars are text to the loader, whatever their type.
		{"unquoted route config", `routeConfig: "80"`, "routeConfig: 80", "", ""},
		{"quoted status", "status: 502", `status: "502"`, "", ""},
		{"quoted order", "order: 1", `order: "1"`, "", ""},
		{"no prose", "  prose: >\n    The mesh, then the client.\n", "", "", ""},
		{"a call's URL with a port", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    address", "  - call: HTTP://jsonplaceholder.typicode.com:0080/todos/1\n    address", "", ""},
		{"a call through a proxy", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    address: 10.20.30.40", "  - call: https://jsonplaceholder.typicode.com/todos/1\n    proxy: http://proxy.corp.example:3128", "", ""},
		{"a proxy with no port", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    address: 10.20.30.40", "  - call: https://jsonplaceholder.typicode.com/todos/1\n    proxy: http://proxy.corp.example", "names no port", "/steps/1/do/2/proxy"},
		{"a TCP call", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    address", "  - call: tcp://db.postgres.example:5432\n    address", "", ""},
		{"a TCP call without its port", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - call: tcp://db.postgres.example\n    id: blocked", "names no port, and TCP has no default one", call2 + "/call"},
		{"a TCP call with a path", "  - call: http://jsonplaceholder.typicode.com/todos/1\n    id: blocked", "  - call: tcp://db.postgres.example:5432/orders\n    id: blocked", "has more than a host and a port", call2 + "/call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := strings.Replace(agreed, tc.from, tc.to, 1)
			require.NotEqual(t, agreed, lab, "the case changes the lab")
			schemaErr, loaderErr := validate(sch, []byte(lab)), loadAgreed(t, lab)
			if tc.loader == "" {
				assert.NoError(t, schemaErr, "the schema accepts it")
				assert.NoError(t, loaderErr, "the loader accepts it")
				return
			}
			if assert.Error(t, loaderErr, "the loader refuses it") {
				assert.Contains(t, loaderErr.Error(), tc.loader)
			}
			if assert.Error(t, schemaErr, "the schema refuses it") {
				assert.True(t, slices.ContainsFunc(leafLocations(schemaErr), func(at string) bool {
					return at == tc.at || strings.HasPrefix(at, tc.at+"/")
				}), "the schema refuses it at %s:\n%v", tc.at, schemaErr)
			}
		})
	}
}
