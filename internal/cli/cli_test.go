package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/internal/cli"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), args, cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLabOnSimPassesAndExitsZero(t *testing.T) {
	code, out, errs := run(t, "", "lab", "serviceentry", "-backend=sim")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "Backend: sim")
	assert.Contains(t, out, "Step 7.")
	assert.Contains(t, out, "All 7 steps behaved as expected")
	assert.NotContains(t, out, "\x1b[", "no colour when not writing to a terminal")
}

func TestInstructorModeReadsEnterBeforeEachStep(t *testing.T) {
	code, out, _ := run(t, strings.Repeat("\n", 7), "lab", "serviceentry", "-backend=sim", "-instructor")
	assert.Equal(t, cli.ExitOK, code)
	assert.Equal(t, 7, strings.Count(out, "[press Enter for step"))
}

func TestBadEntryIsRefusedBeforeAnythingRuns(t *testing.T) {
	bad := writeFile(t, "no-hosts.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: nohosts\nspec:\n  resolution: DNS\n")
	for _, args := range [][]string{
		{"lab", "serviceentry", "-backend=sim", "-entry", bad},
		{"check", "-entry", bad, "http://jsonplaceholder.typicode.com/"},
	} {
		code, out, errs := run(t, "", args...)
		assert.Equal(t, cli.ExitBadInput, code)
		assert.Empty(t, out, "nothing narrated, nothing applied")
		for _, want := range []string{bad, "ServiceEntry nohosts", "Istio rejects it", "at least one host", "fix:", "Nothing was applied."} {
			assert.Contains(t, errs, want)
		}
	}
}

func TestEntryFileWithANonIstioObjectIsRefused(t *testing.T) {
	f := writeFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
	code, _, errs := run(t, "", "check", "-entry", f, "http://jsonplaceholder.typicode.com/")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, "ConfigMap x")
	assert.Contains(t, errs, "-entry takes ServiceEntry files")
}

func TestCheckAnswersWithEvidence(t *testing.T) {
	code, out, errs := run(t, "", "check", "http://jsonplaceholder.typicode.com/todos/1", "-entry", "../../labs/serviceentry/jsonplaceholder.yaml", "-expect", "allowed")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "ALLOWED (registered service)")
	assert.Contains(t, out, "outbound|80||jsonplaceholder.typicode.com")

	code, out, errs = run(t, "", "check", "-expect", "allowed", "https://jsonplaceholder.typicode.com/", "-entry", "../../labs/serviceentry/jsonplaceholder.yaml")
	assert.Equal(t, cli.ExitUnexpected, code)
	assert.Contains(t, out, "BLOCKED (BlackHoleCluster)")
	assert.Contains(t, errs, "expected ALLOWED")
}

// A TCP call is a connection, not a GET: check says so, and judges it by address and
// port alone (the tcp-egress lab's entry takes the whole port, other hosts too).
func TestCheckSaysATCPCallIsAConnection(t *testing.T) {
	code, out, errs := run(t, "", "check", "-f", "../../labs/tcp-egress/billing.yaml", "tcp://orders.db.example:5432")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "TCP connection to tcp://orders.db.example:5432 under REGISTRY_ONLY")
	assert.NotContains(t, out, "GET")
	assert.Contains(t, out, "outbound|5432||billing.db.example")
}

// -method asks about a request with that method: through the egress-authz lab's gateway
// and policy, the client's GET goes out and its POST gets the gateway's RBAC denial.
func TestCheckAsksWithTheMethodGiven(t *testing.T) {
	args := []string{"check", "-f", "../../labs/apps/egress-gateway.yaml", "-f", "../../labs/egress-gateway/mutual-tls.yaml",
		"-f", "../../labs/egress-authz/get-only-for-client.yaml"}
	code, out, errs := run(t, "", append(args, "-expect", "allowed", "http://jsonplaceholder.typicode.com/todos/1")...)
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "GET http://jsonplaceholder.typicode.com/todos/1")
	code, out, errs = run(t, "", append(args, "-method", "POST", "-expect", "denied", "http://jsonplaceholder.typicode.com/todos/1")...)
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "POST http://jsonplaceholder.typicode.com/todos/1")
	assert.Contains(t, out, "rbac_access_denied_matched_policy[none]")
	code, _, errs = run(t, "", append(args, "-method", "post", "http://jsonplaceholder.typicode.com/todos/1")...)
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, "-method")
}

func TestCheckRefusesBadArguments(t *testing.T) {
	for name, args := range map[string][]string{
		"no url":        {"check"},
		"bad scheme":    {"check", "ftp://example.com/"},
		"bad mode":      {"check", "-mode", "OPEN", "http://example.com/"},
		"bad expect":    {"check", "-expect", "maybe", "http://example.com/"},
		"bad backend":   {"check", "-backend", "nope", "http://example.com/"},
		"unknown cmd":   {"frobnicate"},
		"missing entry": {"check", "-entry", "/does/not/exist.yaml", "http://example.com/"},
		"two urls":      {"check", "http://example.com/", "http://example.org/"},
		"bad from":      {"check", "-from", "client", "http://example.com/"},
		"bad address":   {"check", "-address", "proxy.corp", "http://example.com/"},
		"bad evidence":  {"check", "-expect", "{verdict: ALLOWED, clustr: x}", "http://example.com/"},
		"url and calls": {"check", "-calls", "x.yaml", "http://example.com/"},
		"missing -f":    {"check", "-f", "/does/not/exist", "http://example.com/"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errs := run(t, "", args...)
			assert.Equal(t, cli.ExitBadInput, code)
			assert.NotEmpty(t, errs)
		})
	}
}

func TestCancelledLabReportsInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := cli.Run(ctx, []string{"lab", "serviceentry", "-backend=sim"}, cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	assert.Equal(t, cli.ExitInterrupted, code)
	assert.Contains(t, errb.String(), "interrupted")
}

func TestCleanWithoutDockerSaysThereIsNothingToDelete(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	code, out, _ := run(t, "", "clean")
	assert.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "no kind cluster to delete")
}

// A backend that cannot start is not bad input: before, it printed "Nothing was
// applied." and exited 2, though on kind opening the backend creates a cluster.
func TestABackendThatCannotRunIsAnInfrastructureFailure(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no docker CLI
	code, out, errs := run(t, "", "lab", "serviceentry", "-backend=kind")
	assert.Equal(t, cli.ExitInfrastructure, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, "backend kind cannot run here: the docker CLI is not on PATH")
	assert.NotContains(t, errs, "Nothing was applied")
}

// A bad -url is refused before any backend is opened (on kind, before a cluster is made).
func TestBadLabURLIsRefusedBeforeTheBackendOpens(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // were kind opened first, this would fail as infrastructure
	code, _, errs := run(t, "", "lab", "serviceentry", "-backend=kind", "-url", "https://jsonplaceholder.typicode.com/")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, "give the plain http:// URL")
}

// check names what it applied by kind: a Sidecar is not "1 ServiceEntry".
func TestCheckNamesWhatItAppliedByKind(t *testing.T) {
	sidecar := writeFile(t, "sidecar.yaml", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\nspec:\n  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n")
	code, out, errs := run(t, "", "check", "-entry", sidecar, "-entry", "../../labs/serviceentry/jsonplaceholder.yaml",
		"http://jsonplaceholder.typicode.com/todos/1")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "under REGISTRY_ONLY with 1 Sidecar and 1 ServiceEntry: ALLOWED")
	code, out, _ = run(t, "", "check", "http://example.com/")
	assert.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "under REGISTRY_ONLY with no objects: BLOCKED")
}

func TestLabListShowsTheLabsInWorkshopOrder(t *testing.T) {
	code, out, _ := run(t, "", "lab", "list")
	assert.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, " 1. serviceentry")
	assert.Regexp(t, `serviceentry +ServiceEntry .* \(7 steps, \d+\.\d\ds on sim\)`, out, "each lab's time on sim, measured")
	assert.Less(t, strings.Index(out, "serviceentry"), strings.Index(out, "modes"), "workshop order, not alphabetical")
	code, out, _ = run(t, "", "lab", "list", "-names")
	assert.Equal(t, cli.ExitOK, code)
	assert.Equal(t, "serviceentry", strings.SplitN(out, "\n", 2)[0])
}

func TestUnknownLabNamesTheLabs(t *testing.T) {
	code, _, errs := run(t, "", "lab", "serviceentri", "-backend=sim")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, `no lab called "serviceentri": the labs are`)
	assert.Contains(t, errs, "serviceentry")
}

// userLab writes a lab folder, as a user would, and returns its lab file.
func userLab(t *testing.T, lab string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"lab.yaml": lab, "entry.yaml": "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n" +
		"metadata:\n  name: example\nspec:\n  hosts: [api.example.org]\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  resolution: DNS\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "lab.yaml")
}

const usersLab = `title: My own lab
summary: api.example.org, blocked then let out.
steps:
- title: Set up
  do:
  - mesh: REGISTRY_ONLY
  - deploy: client
- title: Let api.example.org out
  do:
  - apply: entry.yaml
  - call: http://api.example.org/v1
    expect: {verdict: ALLOWED, cluster: "outbound|80||api.example.org"}
`

func TestUsersLabFileRunsWithF(t *testing.T) {
	file := userLab(t, usersLab)
	code, out, errs := run(t, "", "lab", "-f", file, "-backend=sim")
	assert.Equal(t, cli.ExitOK, code, errs+out)
	assert.Contains(t, out, "egresslab · lab: My own lab")
	assert.Contains(t, out, "kind: ServiceEntry")
	assert.Contains(t, out, "All 2 steps behaved as expected")

	// The same lab expecting the wrong cluster: the lab says so, and exits 1.
	file = userLab(t, strings.Replace(usersLab, "outbound|80||api.example.org", "PassthroughCluster", 1))
	code, out, _ = run(t, "", "lab", "-f", file, "-backend=sim")
	assert.Equal(t, cli.ExitUnexpected, code)
	assert.Contains(t, out, `mismatch: cluster: want "PassthroughCluster", got "outbound|80||api.example.org"`)
}

func TestBadLabFileIsRefusedBeforeAnythingRuns(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // were a backend opened first, kind would fail as infrastructure
	file := userLab(t, strings.Replace(usersLab, "  - apply: entry.yaml", "  - aply: entry.yaml", 1))
	code, out, errs := run(t, "", "lab", "-f", file, "-backend=kind")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, file+`:10: step 2 ("Let api.example.org out"): unknown action "aply"`)
	assert.Contains(t, errs, "fix: did you mean `apply`?")
	assert.Contains(t, errs, "Nothing was applied.")
}

// -markdown writes the handout and opens no backend (here kind, which cannot run).
func TestMarkdownWritesTheHandoutWithoutABackend(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, out, errs := run(t, "", "lab", "serviceentry", "-markdown", "-backend=kind")
	assert.Equal(t, cli.ExitOK, code, errs)
	want, err := os.ReadFile("../../labs/serviceentry/README.md")
	assert.NoError(t, err)
	assert.Equal(t, string(want), out)
}

func TestTheBannerSaysWhatTheUsersEntryChanges(t *testing.T) {
	code, out, errs := run(t, "", "lab", "serviceentry", "-backend=sim", "-entry", "../../labs/wildcards/misspelt.yaml")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "your -entry (../../labs/wildcards/misspelt.yaml) replaces")
	assert.Contains(t, out, "jsonplaceholder.yaml: the lab's expectations describe its own")
}

func TestEntryAndURLOnALabThatHasNoneAreRefused(t *testing.T) {
	code, _, errs := run(t, "", "lab", "modes", "-backend=sim", "-url", "http://example.com/")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, "-url: lab modes has no main call to replace")
}

func TestBundleRefusesBadArgumentsBeforeFetchingAnything(t *testing.T) {
	code, _, stderr := run(t, "", "bundle")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, stderr, "egresslab bundle: name the one file to write (got 0 arguments)")
	assert.Contains(t, stderr, "Usage: egresslab bundle [flags] FILE")

	code, _, stderr = run(t, "", "bundle", "a.bundle", "b.bundle")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, stderr, "(got 2 arguments)")

	code, _, stderr = run(t, "", "bundle", filepath.Join(t.TempDir(), "no-such-folder", "x.bundle"))
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, stderr, "no-such-folder does not exist: create it")

	// Istio built from source needs both its tree and its images.
	code, _, stderr = run(t, "", "bundle", "-istio-source", t.TempDir(), filepath.Join(t.TempDir(), "x.bundle"))
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, stderr, "-istio-source and -images go together")
}

// check -o json gives the whole answer as one object a CI job can read: the verdict,
// its reason and evidence, and what Istio's simulator computes for the same objects.
func TestCheckAnswersInJSON(t *testing.T) {
	code, out, errs := run(t, "", "check", "-o", "json", "-entry", "../../labs/serviceentry/jsonplaceholder.yaml",
		"http://jsonplaceholder.typicode.com/todos/1")
	require.Equal(t, cli.ExitOK, code, errs)
	var got struct {
		URL      string   `json:"url"`
		Mode     string   `json:"mode"`
		Files    []string `json:"files"`
		From     string   `json:"from"`
		Passed   bool     `json:"passed"`
		Backend  string   `json:"backend"`
		Verdict  string   `json:"verdict"`
		Reason   string   `json:"reason"`
		Evidence struct {
			Listener string `json:"listener"`
			Cluster  string `json:"cluster"`
		} `json:"evidence"`
		Simulated struct {
			Verdict string `json:"verdict"`
		} `json:"simulated"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, "http://jsonplaceholder.typicode.com/todos/1", got.URL)
	assert.Equal(t, "REGISTRY_ONLY", got.Mode)
	assert.Equal(t, []string{"../../labs/serviceentry/jsonplaceholder.yaml"}, got.Files, "the files as given")
	assert.Equal(t, "egresslab/client", got.From)
	assert.True(t, got.Passed)
	assert.Equal(t, "sim", got.Backend)
	assert.Equal(t, "ALLOWED", got.Verdict)
	assert.Equal(t, "registered service", got.Reason)
	assert.Equal(t, "0.0.0.0_80", got.Evidence.Listener)
	assert.Equal(t, "outbound|80||jsonplaceholder.typicode.com", got.Evidence.Cluster)
	assert.Equal(t, "ALLOWED", got.Simulated.Verdict)

	code, _, errs = run(t, "", "check", "-o", "yaml", "http://jsonplaceholder.typicode.com/todos/1")
	assert.Equal(t, cli.ExitBadInput, code)
	assert.Contains(t, errs, "-o \"yaml\": use text or json")
}

// A file that is not a regular file, or too big for a manifest, is refused at once
// with exit 2, wherever it is named: reading a FIFO blocked the program (Ctrl-C did not
// stop it), /dev/zero ran it out of memory, a directory was "no such file".
func TestAnInputThatIsNotARegularFileIsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	big := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 500_000), 0o644))
	labDir := filepath.Join(dir, "lab")
	require.NoError(t, os.MkdirAll(labDir, 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(labDir, "entry.yaml"), 0o644))
	labFile := writeFile(t, "lab.yaml", `title: A lab whose entry is a FIFO
summary: it must be refused before anything runs.
steps:
- title: one
  do:
  - mesh: REGISTRY_ONLY
  - apply: entry.yaml
`)
	require.NoError(t, os.Rename(labFile, filepath.Join(labDir, "lab.yaml")))
	fifoLab := filepath.Join(dir, "fifo-lab")
	require.NoError(t, os.MkdirAll(fifoLab, 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(fifoLab, "lab.yaml"), 0o644))

	cases := map[string]struct {
		args []string
		says string
	}{
		"check -entry FIFO":       {[]string{"check", "-entry", fifo, "http://example.com/"}, "named pipe"},
		"check -entry /dev/zero":  {[]string{"check", "-entry", "/dev/zero", "http://example.com/"}, "device"},
		"check -entry directory":  {[]string{"check", "-entry", dir, "http://example.com/"}, "directory"},
		"check -entry too big":    {[]string{"check", "-entry", big, "http://example.com/"}, "more than the"},
		"lab -f FIFO":             {[]string{"lab", "-f", filepath.Join(fifoLab, "lab.yaml")}, "named pipe"},
		"lab step applies a FIFO": {[]string{"lab", "-f", filepath.Join(labDir, "lab.yaml")}, "named pipe"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			type result struct {
				code      int
				out, errs string
			}
			done := make(chan result, 1)
			go func() {
				code, out, errs := run(t, "", tc.args...)
				done <- result{code, out, errs}
			}()
			select {
			case r := <-done:
				assert.Equal(t, cli.ExitBadInput, r.code, "%s\n%s", r.out, r.errs)
				assert.Contains(t, r.errs, tc.says)
			case <-time.After(20 * time.Second):
				t.Fatalf("%v still runs after 20 s: it waits on the input", tc.args)
			}
		})
	}
}

// A team's configuration kept as a folder: a Namespace, and an entry there exported to
// that namespace only. -from names the calling workload (the client app deployed as
// payments/api): the entry lets it out, and not the lab's client.
func TestCheckTakesAFolderOfObjectsAndTheCallingWorkload(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "entry.yaml"), []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: jsonplaceholder, namespace: payments}
spec:
  hosts: [jsonplaceholder.typicode.com]
  exportTo: ["."]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "namespace.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {istio-injection: enabled}}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a manifest"), 0o644))

	code, out, errs := run(t, "", "check", "-f", dir, "-from", "payments/api", "-o", "json",
		"-expect", `{verdict: ALLOWED, cluster: "outbound|80||jsonplaceholder.typicode.com"}`, "http://jsonplaceholder.typicode.com/todos/1")
	require.Equal(t, cli.ExitOK, code, errs)
	var got struct {
		From     string `json:"from"`
		Verdict  string `json:"verdict"`
		Passed   bool   `json:"passed"`
		Evidence struct {
			Cluster string `json:"cluster"`
		} `json:"evidence"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, "payments/api", got.From)
	assert.Equal(t, "ALLOWED", got.Verdict)
	assert.True(t, got.Passed)

	code, out, errs = run(t, "", "check", "-f", dir, "-expect", "allowed", "http://jsonplaceholder.typicode.com/todos/1")
	assert.Equal(t, cli.ExitUnexpected, code, out)
	assert.Contains(t, out, "with 1 Namespace and 1 ServiceEntry: BLOCKED")
	assert.Contains(t, errs, "from egresslab/client: expected ALLOWED, got BLOCKED")
}

// An object in a namespace nobody creates is bad input, refused before anything is
// applied (it was a backend failure, exit 3).
func TestCheckRefusesAnObjectInANamespaceThatDoesNotExist(t *testing.T) {
	f := writeFile(t, "stray.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x, namespace: nowhere}\n"+
		"spec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n")
	code, out, errs := run(t, "", "check", "-f", f, "http://api.example.com/")
	assert.Equal(t, cli.ExitBadInput, code, out)
	assert.Contains(t, errs, `namespace "nowhere" does not exist`)
	assert.Contains(t, errs, "Nothing was applied.")
	assert.Empty(t, out)
}

// Several calls in one run, from a calls file written as a lab's calls: a table, and
// exit 1 when any call is not what it expects, naming that call.
func TestCheckRunsACallsFileAsATable(t *testing.T) {
	calls := writeFile(t, "calls.yaml", `calls:
- call: http://jsonplaceholder.typicode.com/todos/1
  expect: {verdict: ALLOWED, cluster: "outbound|80||jsonplaceholder.typicode.com"}
- call: https://jsonplaceholder.typicode.com/
  expect: {verdict: BLOCKED, reason: BlackHoleCluster}
- call: http://example.com/
  from: team-b/client
`)
	code, out, errs := run(t, "", "check", "-entry", "../../labs/serviceentry/jsonplaceholder.yaml", "-calls", calls)
	require.Equal(t, cli.ExitOK, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 5, out)
	assert.Contains(t, lines[0], "3 calls under REGISTRY_ONLY with 1 ServiceEntry (sim backend)")
	assert.Regexp(t, `^CALL\s+FROM\s+VERDICT\s+REASON\s+CLUSTER\s+RESULT$`, lines[1])
	assert.Regexp(t, `^http://jsonplaceholder.typicode.com/todos/1\s+egresslab/client\s+ALLOWED\s+registered service\s+outbound\|80\|\|jsonplaceholder.typicode.com\s+ok$`, lines[2])
	assert.Regexp(t, `^https://jsonplaceholder.typicode.com/\s+egresslab/client\s+BLOCKED\s+BlackHoleCluster\s+BlackHoleCluster\s+ok$`, lines[3])
	assert.Regexp(t, `^http://example.com/\s+team-b/client\s+BLOCKED\s+block_all\s+-\s+-$`, lines[4])

	// Without the entry the first call is blocked: exit 1, and the table says which.
	code, out, errs = run(t, "", "check", "-calls", calls)
	assert.Equal(t, cli.ExitUnexpected, code)
	assert.Contains(t, out, "UNEXPECTED: verdict: want ALLOWED, got BLOCKED")
	assert.Contains(t, errs, "http://jsonplaceholder.typicode.com/todos/1 from egresslab/client: expected ALLOWED")
}

func TestACallsFileIsRefusedWholeWithTheLineAndTheFix(t *testing.T) {
	calls := writeFile(t, "calls.yaml", `calls:
- call: http://example.com/
  expect: {verdict: MAYBE}
- apply: entry.yaml
- call: http://example.com/
  adress: 10.0.0.1
`)
	code, out, errs := run(t, "", "check", "-calls", calls)
	assert.Equal(t, cli.ExitBadInput, code, out)
	for _, want := range []string{calls + ":3", `verdict "MAYBE" is not a verdict`, calls + ":4", "a calls file holds calls only, not apply",
		calls + ":6", "did you mean `address`?", "Nothing was applied."} {
		assert.Contains(t, errs, want)
	}
}

// A password in a URL is not echoed back, in text or JSON.
func TestCheckDoesNotEchoAPasswordInTheURL(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		code, out, errs := run(t, "", "check", "-o", format, "http://user:s3cret@example.com/")
		assert.Equal(t, cli.ExitOK, code, errs)
		assert.NotContains(t, out+errs, "s3cret")
		assert.Contains(t, out, "user:xxxxx@example.com")
	}
}

// A command line egresslab does not take says what is wrong with it, not only usage.
func TestAWrongCommandLineSaysWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"-v"}, "-v is not a command"},
		{nil, "name a command"},
		{[]string{"lab"}, "name a lab"},
		{[]string{"lab", "serviceentry", "modes"}, `name one lab (got 2: ["serviceentry" "modes"])`},
		{[]string{"lab", "list", "extra"}, "egresslab lab list takes no arguments"},
		{[]string{"check", "http://a.example/", "http://b.example/"}, "give one URL to call (got 2"},
		{[]string{"clean", "now"}, "egresslab clean takes no arguments"},
	} {
		code, out, errs := run(t, "", tc.args...)
		assert.Equal(t, cli.ExitBadInput, code, "%q: %s", tc.args, out)
		assert.Contains(t, errs, tc.says, "%q", tc.args)
	}
}

// -expect takes every verdict egresslab gives, IN_MESH too.
func TestCheckExpectTakesEveryVerdict(t *testing.T) {
	code, _, errs := run(t, "", "check", "-expect", "in_mesh", "http://example.com/")
	assert.Equal(t, cli.ExitUnexpected, code, "a blocked call is not IN_MESH; but in_mesh is not bad input: %s", errs)
	assert.Contains(t, errs, "expected IN_MESH, got BLOCKED")
}

// (The Istio library's line comes from the binary's build information, whose
// dependencies a test binary does not list: `bin/egresslab version` shows it.)
func TestVersionNamesWhatEachBackendRuns(t *testing.T) {
	code, out, errs := run(t, "", "version")
	require.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "egresslab ")
	assert.Contains(t, out, "kind backend: Istio release installed: 1.31.0")
	assert.Contains(t, out, "kind backend: kind node image: kindest/node:v1.35.8")
	assert.Contains(t, out, "local backend: kube-apiserver: v1.35.8")
}

// A lab's -entry with an object in a namespace that does not exist is refused before
// anything runs, exit 2: the lab used to run steps 1 to 3 and fail at step 4, exit 1.
func TestALabEntryInANamespaceThatDoesNotExistIsRefusedAtOnce(t *testing.T) {
	f := writeFile(t, "stray.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x, namespace: nowhere}\n"+
		"spec:\n  hosts: [jsonplaceholder.typicode.com]\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n")
	code, out, errs := run(t, "", "lab", "serviceentry", "-backend=sim", "-entry", f)
	assert.Equal(t, cli.ExitBadInput, code, out)
	assert.Empty(t, out, "no step ran")
	assert.Contains(t, errs, `namespace "nowhere" does not exist`)
	assert.Contains(t, errs, "Nothing was applied.")
}

// A -url for another host, without an -entry for it: the lab said "Call HOST again:
// allowed" above a BLOCKED verdict and never said why. The banner and each call whose
// ending changed now say that the lab's entry does not name the host, and what to add.
func TestALabURLWithoutAnEntryForItSaysWhatToAdd(t *testing.T) {
	code, out, errs := run(t, "", "lab", "serviceentry", "-backend=sim", "-url", "http://api.example.org/v1")
	require.Equal(t, cli.ExitOK, code, errs)
	flat := strings.Join(strings.Fields(out), " ")
	assert.Contains(t, flat, "The lab's entry (jsonplaceholder.yaml) names jsonplaceholder.typicode.com, not api.example.org: "+
		"the steps that apply it do not let api.example.org out. To see them do, add -entry FILE with a ServiceEntry for api.example.org.")
	assert.Contains(t, flat, "The lab's text expects ALLOWED here, for its own url and entry; with yours, Istio's simulator computes BLOCKED.")
	assert.NotContains(t, flat, "ALLOWED only where the mesh's mode or an applied ServiceEntry", "the rule of thumb is gone")

	// With an entry for the host, the lab's story holds: nothing to explain.
	entry := writeFile(t, "api.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\n"+
		"spec:\n  hosts: [api.example.org]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n")
	code, out, errs = run(t, "", "lab", "serviceentry", "-backend=sim", "-url", "http://api.example.org/v1", "-entry", entry)
	require.Equal(t, cli.ExitOK, code, errs)
	assert.NotContains(t, strings.Join(strings.Fields(out), " "), "To see them do")
}
