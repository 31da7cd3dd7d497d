package cli_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/internal/cli"
)

// An istio-proxy log under ALLOW_ANY, as kubectl logs gives it: pilot-agent's line,
// HTTP out through allow_any, TLS by SNI, a database by address, HTTPS on the
// catch-all (no SNI), and a call to a registered service.
const allowAnyLog = `2026-11-25T09:43:15.173450Z	info	Envoy proxy is ready
[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "jsonplaceholder.typicode.com" "203.0.113.61:80" PassthroughCluster 10.244.0.8:57672 203.0.113.61:80 10.244.0.8:57658 - allow_any
[2026-11-29T10:00:03.000Z] "- - -" 0 - - - "-" 517 4012 35 - "-" "-" "-" "-" "203.0.113.62:443" PassthroughCluster 10.244.0.8:41020 203.0.113.62:443 10.244.0.8:41012 api.github.com -
[2026-11-29T10:07:00.000Z] "- - -" 0 - - - "-" 96 220 4100 - "-" "-" "-" "-" "203.0.113.10:5432" PassthroughCluster 10.244.0.8:44000 203.0.113.10:5432 10.244.0.8:43998 - -
[2026-11-29T10:00:02.000Z] "- - -" 0 - - - "-" 517 4012 35 - "-" "-" "-" "-" "10.244.0.4:443" PassthroughCluster 10.244.0.8:41010 10.244.0.4:443 10.244.0.8:41002 - -
[2026-11-25T09:43:16.273Z] "GET /todos/1 HTTP/1.1" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551d" "httpbin.org" "10.244.0.4:80" outbound|80||httpbin.org 10.244.0.8:57672 10.244.0.4:80 10.244.0.8:57658 - default
`

func TestSuggestWritesEntriesThatTheReplayAllows(t *testing.T) {
	log := writeFile(t, "istio-proxy.log", allowAnyLog)
	out := filepath.Join(t.TempDir(), "entries.yaml")
	code, stdout, errs := run(t, "", "suggest", "-f", "team-a/api="+log, "-o", out)
	require.Equal(t, cli.ExitOK, code, errs)
	assert.Equal(t, "egresslab suggest: wrote 3 ServiceEntries to "+out+"\n", stdout)

	// Each call replayed under REGISTRY_ONLY, from the workload that made it.
	for _, want := range []string{
		"3 calls under REGISTRY_ONLY with 3 ServiceEntries (sim backend):",
		"http://jsonplaceholder.typicode.com:80/ @203.0.113.61  team-a/api  ALLOWED  registered service  outbound|80||jsonplaceholder.typicode.com",
		"https://api.github.com:443/ @203.0.113.62",
		"tcp://203.0.113.10:5432",
		"Not replayed: 10.244.0.4:443 (1 call): no entry covers it",
		"NOT COVERED: 1 destination will be blocked under REGISTRY_ONLY",
		"1 call to registered services (outbound|PORT||HOST): no entry needed",
	} {
		assert.Contains(t, errs, want)
	}
	assert.Equal(t, 3, strings.Count(errs, "  ok\n"), "%s", errs)

	set, err := manifest.LoadFile(out, "team-a")
	require.NoError(t, err, "the file is what Istio's validation accepts")
	var names []string
	for _, o := range set.Objects {
		names = append(names, o.Name)
	}
	assert.Equal(t, []string{"api.github.com", "jsonplaceholder.typicode.com", "ip-203-0-113-10"}, names)
	written, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Contains(t, string(written), "  exportTo:\n  - team-a\n")
	assert.Contains(t, string(written), "# - 10.244.0.4:443: 1 call from team-a/api (1 call), first at "+log+":5.")
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left beside it")
}

func TestSuggestWritesToStandardOutputAndReadsStandardInput(t *testing.T) {
	code, stdout, errs := run(t, allowAnyLog, "suggest", "-f", "-", "-verify=false")
	require.Equal(t, cli.ExitOK, code, errs)
	assert.True(t, strings.HasPrefix(stdout, "# ServiceEntries that keep working"), stdout)
	assert.Contains(t, stdout, "from 1 log: standard input.")
	assert.Contains(t, errs, "Not replayed (-verify=false)")
	assert.NotContains(t, errs, "calls under REGISTRY_ONLY")
	_, err := manifest.Parse("stdout", []byte(stdout), "egresslab")
	assert.NoError(t, err)
}

// Bad input exits 2, says which file and line and what to do, and writes nothing: a
// file already at -o is left as it was, and no temporary file is left beside it.
func TestSuggestRefusesBadInputAndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "entries.yaml")
	require.NoError(t, os.WriteFile(out, []byte("# yesterday's entries\n"), 0o644))
	good := writeFile(t, "good.log", allowAnyLog)
	empty := writeFile(t, "empty.log", "")
	nginx := writeFile(t, "nginx.log", `203.0.113.5 - - [25/Nov/2026:09:43:16 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"`+"\n")
	cut := writeFile(t, "cut.log", allowAnyLog+allowAnyLog[:420]+"\n")

	cases := map[string]struct {
		args []string
		says []string
	}{
		"no log":            {[]string{"suggest", "-o", out}, []string{"name at least one access log with -f FILE"}},
		"a log as argument": {[]string{"suggest", good, "-o", out}, []string{"takes its logs with -f FILE, not as arguments"}},
		"a missing file":    {[]string{"suggest", "-f", good, "-f", "/nonexistent/x.log", "-o", out}, []string{"/nonexistent/x.log: cannot be read", "fix: check the path"}},
		"an empty file":     {[]string{"suggest", "-f", empty, "-o", out}, []string{empty + ": is empty", "fix:"}},
		"an unknown format": {[]string{"suggest", "-f", nginx, "-o", out}, []string{nginx + ":1: no line is in Istio's default access-log format"}},
		"a line cut short":  {[]string{"suggest", "-f", cut, "-o", out}, []string{cut + ":9: the line is cut short", "fix: capture the log again"}},
		"a folder":          {[]string{"suggest", "-f", dir, "-o", out}, []string{dir + ": is a folder"}},
		"a device":          {[]string{"suggest", "-f", "/dev/urandom", "-o", out}, []string{"/dev/urandom: is not a file or a pipe"}},
		"-o in no folder":   {[]string{"suggest", "-f", good, "-o", "/nonexistent/out.yaml"}, []string{"-o /nonexistent/out.yaml: the folder /nonexistent does not exist"}},
		"a bad workload":    {[]string{"suggest", "-f", "Team_A/api=" + good, "-o", out}, []string{"Team_A/api=" + good + ": cannot be read"}},
		"a bad flag":        {[]string{"suggest", "-f", good, "-verify=maybe"}, []string{"invalid boolean value"}},
		"-context alone":    {[]string{"suggest", "-context", "kind-egresslab", "-o", out}, []string{"-context kind-egresslab: name the namespaces to read there with -n NAMESPACE"}},
		"an unknown context": {[]string{"suggest", "-context", "nope", "-n", "egresslab", "-o", out},
			[]string{`-context "nope"`, `context "nope" does not exist`, "kubectl config get-contexts"}},
	}
	// No cluster of the user's: a kubeconfig with no contexts.
	t.Setenv("KUBECONFIG", writeFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\n"))
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			done := make(chan struct{})
			var code int
			var stdout, errs string
			go func() {
				defer close(done)
				code, stdout, errs = run(t, "", tc.args...)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%v still runs after 20 s: it waits on its input", tc.args)
			}
			assert.Equal(t, cli.ExitBadInput, code, "%s\n%s", stdout, errs)
			for _, want := range tc.says {
				assert.Contains(t, errs, want)
			}
			if name != "a bad flag" {
				assert.Contains(t, errs, "Nothing was written.")
			}
			assert.Empty(t, stdout)
			kept, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.Equal(t, "# yesterday's entries\n", string(kept))
			left, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, left, 1, "no temporary file")
		})
	}
}

// Logs that show no passed-through call leave nothing to write: exit 0, and -o is not
// touched.
func TestSuggestWithNothingToSuggestWritesNothing(t *testing.T) {
	registered := strings.Split(allowAnyLog, "\n")[5]
	log := writeFile(t, "registered.log", registered+"\n")
	out := filepath.Join(t.TempDir(), "entries.yaml")
	code, stdout, errs := run(t, "", "suggest", "-f", log, "-o", out)
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Empty(t, stdout)
	assert.Contains(t, errs, "no entry to write")
	assert.NoFileExists(t, out)
}

// A log from a pipe is read as it comes: -f <(kubectl logs …), or a named FIFO that
// kubectl writes. One nobody writes waits, and Ctrl-C stops the wait at once.
func TestSuggestReadsAPipeAndCtrlCStopsOneNobodyWrites(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the reader, as kubectl would
		if err == nil {
			_, _ = w.WriteString(allowAnyLog)
			_ = w.Close()
		}
	}()
	code, stdout, errs := run(t, "", "suggest", "-f", fifo, "-verify=false")
	require.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, stdout, "name: api.github.com")

	out := filepath.Join(t.TempDir(), "entries.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var errb bytes.Buffer
	start := time.Now()
	code = cli.Run(ctx, []string{"suggest", "-f", fifo, "-o", out}, cli.Streams{In: strings.NewReader(""), Out: io.Discard, Err: &errb})
	assert.Equal(t, cli.ExitInterrupted, code, errb.String())
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Contains(t, errb.String(), "interrupted; nothing written")
	assert.NoFileExists(t, out)
	t.Cleanup(func() { // let the open still waiting on the FIFO return
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
	})
}

// An -o that cannot be written once everything was read and proved (a folder no file
// can be made in, even by root: /proc) is not the input's fault: exit 3, nothing
// written, and the reason.
func TestSuggestThatCannotWriteItsFileSaysSo(t *testing.T) {
	log := writeFile(t, "istio-proxy.log", allowAnyLog)
	code, stdout, errs := run(t, "", "suggest", "-verify=false", "-f", log, "-o", "/proc/egresslab-entries.yaml")
	assert.Equal(t, cli.ExitInfrastructure, code, errs)
	assert.Empty(t, stdout)
	assert.Contains(t, errs, "Nothing was written.")
}
