package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/internal/cli"
	"github.com/egresslab/egresslab/labs"
)

// writeLab writes files (name: body; a body "-> TARGET" is a symbolic link) in a new
// folder of a new parent folder, and returns the folder.
func writeLab(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mylab")
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		if to, ok := strings.CutPrefix(body, "-> "); ok {
			require.NoError(t, os.Symlink(to, p))
			continue
		}
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

const configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"

// Issue 24: lab files egresslab read as if nothing were wrong, or refused with a message
// that sent the user the wrong way. Each is refused whole before a backend is opened
// (kind, which cannot run here, would be exit 3), exit 2, naming the file, the line, the
// step, what is wrong and the fix; and not with the message it got before (not).
func TestABadLabFileIsRefusedWholeSayingWhatIsWrong(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var unknown strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&unknown, "key%d: x\n", i)
	}
	for _, tc := range []struct {
		name  string
		edit  func(lab string) string
		files map[string]string
		want  []string
		not   []string
	}{
		{"a second YAML document", func(l string) string { return l + "---\ntitle: Another lab\n" }, nil,
			[]string{"lab.yaml:13: a second YAML document begins here (after `---`): a lab file is one YAML document", "fix: remove the `---` line"}, nil},
		{"two calls with one id", func(l string) string {
			return strings.Replace(l, "    expect:", "    id: out\n    expect:", 1) +
				"  - call: http://api.example.org/v2\n    id: out\n    expect: {verdict: ALLOWED}\n"
		}, nil, []string{`lab.yaml:15: step 2 ("Let api.example.org out"): id "out" is given to two calls (the call at line 12 has it too)`}, nil},
		{"deploy of a file with no Deployment", func(l string) string {
			return strings.Replace(l, "  - deploy: client", "  - deploy: client\n  - deploy: settings.yaml", 1)
		}, map[string]string{"settings.yaml": configMap},
			[]string{`lab.yaml:8: step 1 ("Set up"): deploy settings.yaml: it holds no Deployment (it holds ConfigMap settings)`, "`- apply: settings.yaml`"}, nil},
		{"an absolute path", func(l string) string { return strings.Replace(l, "apply: entry.yaml", "apply: /etc/passwd", 1) }, nil,
			[]string{`lab.yaml:10: step 2 ("Let api.example.org out"): apply /etc/passwd: an absolute path; a lab names files relative to its folder`},
			[]string{"put passwd in"}},
		{"a path above the lab's parent", func(l string) string { return strings.Replace(l, "apply: entry.yaml", "apply: ../../etc/passwd", 1) }, nil,
			[]string{"apply ../../etc/passwd: it leads above the folder that holds the lab's folder", "or in a sibling folder (`../other-lab/entry.yaml`)"}, nil},
		{"a symbolic link loop", func(l string) string { return strings.Replace(l, "apply: entry.yaml", "apply: loop.yaml", 1) },
			map[string]string{"loop.yaml": "-> loop.yaml"},
			[]string{"apply loop.yaml: ", "loop.yaml is a symbolic link that cannot be followed: a loop of links"}, []string{"did you mean"}},
		{"a symbolic link out of the parent", func(l string) string { return strings.Replace(l, "apply: entry.yaml", "apply: passwd.yaml", 1) },
			map[string]string{"passwd.yaml": "-> /etc/passwd"},
			[]string{"passwd.yaml is a symbolic link to /etc/passwd, outside the folder that holds the lab's folder"}, nil},
		{"a folder", func(l string) string { return strings.Replace(l, "apply: entry.yaml", "apply: more", 1) },
			map[string]string{"more/entry.yaml": configMap},
			[]string{"apply more: ", "more is a folder, not a file", "fix: name one YAML file in it, e.g. `apply: more/entry.yaml`"}, []string{"no such file"}},
		{"an alias", func(l string) string {
			return strings.Replace(l, "apply: entry.yaml", "apply: &e entry.yaml", 1) + "  - delete: *e\n"
		}, nil, []string{`lab.yaml:13: step 2 ("Let api.example.org out"): *e: YAML aliases are not supported in a lab file`}, []string{"must be text"}},
		{"do as a mapping", func(l string) string {
			return strings.Replace(l, "  do:\n  - mesh: REGISTRY_ONLY\n  - deploy: client\n", "  do:\n    mesh: REGISTRY_ONLY\n", 1)
		}, nil, []string{`lab.yaml:5: step 1 ("Set up"): ` + "`do:` must be a list of actions, not a mapping", "- mesh: REGISTRY_ONLY"},
			[]string{"the step does nothing"}},
		{"deploy of an app that is not built in", func(l string) string { return strings.Replace(l, "deploy: client", "deploy: server", 1) }, nil,
			[]string{`lab.yaml:7: step 1 ("Set up"): deploy server: egresslab has no app called server; its apps are: client`,
				"a file beside lab.yaml is deployed by its name with .yaml (`deploy: server.yaml`)"},
			[]string{"labs/apps;"}},
		{"100,000 unknown keys", func(l string) string { return l + unknown.String() }, nil,
			[]string{`lab.yaml:13: unknown field "key0" in the lab`, "… and 99970 more problems"}, []string{"key30\""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"lab.yaml": tc.edit(usersLab), "entry.yaml": entryYAML}
			for n, b := range tc.files {
				files[n] = b
			}
			file := filepath.Join(writeLab(t, files), "lab.yaml")
			start := time.Now()
			code, out, errs := run(t, "", "lab", "-f", file, "-backend=kind")
			assert.Less(t, time.Since(start), 20*time.Second)
			assert.Equal(t, cli.ExitBadInput, code, errs)
			assert.Empty(t, out)
			assert.Less(t, len(errs), 10_000, "the message is short")
			assert.Contains(t, errs, file+":")
			for _, w := range append(tc.want, "Nothing was applied.") {
				assert.Contains(t, errs, w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, errs, n)
			}
		})
	}
}

const entryYAML = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n" +
	"metadata:\n  name: example\nspec:\n  hosts: [api.example.org]\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  resolution: DNS\n"

// copyLab copies the repository's lab folder name into parent.
func copyLab(t *testing.T, parent, name string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("..", "..", "labs", name))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(parent, name), 0o755))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("..", "..", "labs", name, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(parent, name, e.Name()), data, 0o644))
	}
}

// A lab run with -f may name a file of a sibling folder (../OTHER/FILE), as the labs of
// labs/ do: the repository's own labs run with -f, and so does a copy of two of them
// elsewhere, or a user's lab beside them; an absolute path, or one that leads above the
// folder that holds the lab's, is refused with the rule.
func TestALabRunWithFNamesFilesOfItsFolderAndItsSiblings(t *testing.T) {
	for _, name := range []string{"modes", "per-workload", "egress-gateway"} {
		l, err := labs.LoadFile(filepath.Join("..", "..", "labs", name, "lab.yaml"))
		require.NoError(t, err, name)
		assert.Equal(t, name, l.Name)
		assert.Equal(t, "../../labs/"+name+"/lab.yaml", l.File)
	}
	code, out, errs := run(t, "", "lab", "-f", "../../labs/modes/lab.yaml", "-markdown")
	assert.Equal(t, cli.ExitOK, code, errs)
	assert.Contains(t, out, "kubectl apply -n egresslab -f ../../labs/serviceentry/jsonplaceholder.yaml")

	parent := t.TempDir()
	copyLab(t, parent, "modes")
	copyLab(t, parent, "serviceentry")
	l, err := labs.LoadFile(filepath.Join(parent, "modes", "lab.yaml"))
	require.NoError(t, err)
	var sources []string
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			if a.File == "../serviceentry/jsonplaceholder.yaml" {
				sources = append(sources, a.Set.Source)
			}
		}
	}
	require.NotEmpty(t, sources)
	assert.Equal(t, filepath.Join(parent, "serviceentry", "jsonplaceholder.yaml"), sources[0], "the sibling's file, as messages name it")

	mine := strings.Replace(usersLab, "apply: entry.yaml", "apply: ../serviceentry/jsonplaceholder.yaml", 1)
	mine = strings.ReplaceAll(mine, "api.example.org", "jsonplaceholder.typicode.com")
	require.NoError(t, os.MkdirAll(filepath.Join(parent, "mine"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "mine", "lab.yaml"), []byte(mine), 0o644))
	code, out, errs = run(t, "", "lab", "-f", filepath.Join(parent, "mine", "lab.yaml"), "-backend=sim")
	assert.Equal(t, cli.ExitOK, code, errs+out)
	assert.Contains(t, out, "All 2 steps behaved as expected")

	for name, want := range map[string]string{
		"../../etc/passwd": "apply ../../etc/passwd: it leads above the folder that holds the lab's folder (" + parent + ")",
		"/etc/passwd":      "apply /etc/passwd: an absolute path; a lab names files relative to its folder",
		"../passwd":        "apply ../passwd: it names a file of " + parent + " itself, not of a lab's folder",
	} {
		bad := strings.Replace(usersLab, "apply: entry.yaml", "apply: "+name, 1)
		require.NoError(t, os.WriteFile(filepath.Join(parent, "mine", "lab.yaml"), []byte(bad), 0o644))
		_, err := labs.LoadFile(filepath.Join(parent, "mine", "lab.yaml"))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), filepath.Join(parent, "mine", "lab.yaml")+`:10: step 2 ("Let api.example.org out"): `+want)
		assert.Contains(t, err.Error(), "a lab names a file in its own folder (`entry.yaml`, `more/entry.yaml`) or in a sibling folder (`../other-lab/entry.yaml`)")
	}
}
