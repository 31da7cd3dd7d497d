package labfile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
)

// Bad lab files that were read as if nothing were wrong, or refused with a message that
// sent the user the wrong way (issue 24): each is refused whole, with the file, the
// line, the step, what is wrong with what was written, and the fix; and not with the
// misleading message it got before (not).
func TestBadInputIsRefusedWithWhatIsWrongAndTheFix(t *testing.T) {
	manyIDs := strings.Replace(good, "  - delete: entry.yaml\n", "  - call: http://api.example.org/v2\n    id: allowed\n"+
		"    expect: {verdict: ALLOWED}\n  - delete: entry.yaml\n", 1)
	for _, tc := range []struct {
		name     string
		lab      string
		files    []string
		want     []string
		not      []string
		problems int // how many the file has, when it matters
	}{
		{name: "a method in lower case", lab: strings.Replace(good, "  - delete: entry.yaml\n", "  - call: http://api.example.org/v2\n    method: post\n"+
			"    expect: {verdict: ALLOWED}\n  - delete: entry.yaml\n", 1),
			want: []string{`labs/mylab/lab.yaml:20: step 2 ("The entry"): method "post" is not an HTTP method`, "fix: give the HTTP method"}},
		{name: "a second YAML document", lab: good + "---\ntitle: Another lab\nsteps: []\n",
			want: []string{"labs/mylab/lab.yaml:20: a second YAML document begins here", "a lab file is one YAML document",
				"fix: remove the `---` line and everything after it"}},
		{name: "a second YAML document that is not valid YAML", lab: good + "---\ntitle: [\n",
			want: []string{"labs/mylab/lab.yaml:", "not valid YAML"}},
		{name: "two calls with one id", lab: manyIDs,
			want: []string{`labs/mylab/lab.yaml:20: step 2 ("The entry"): id "allowed" is given to two calls (the call at line 16 has it too)`,
				"fix: give each call its own id"}},
		{name: "deploy of a file with no Deployment", lab: strings.Replace(good, "  - deploy: client", "  - deploy: client\n  - deploy: entry.yaml", 1),
			want: []string{`labs/mylab/lab.yaml:11: step 1 ("Mesh and client"): deploy entry.yaml: it holds no Deployment (it holds ServiceEntry example)`,
				"fix: `deploy:` is for an app", "`- apply: entry.yaml`"}},
		{name: "an absolute path", lab: strings.Replace(good, "  - apply: entry.yaml", "  - apply: /etc/passwd", 1),
			want: []string{`labs/mylab/lab.yaml:14: step 2 ("The entry"): apply /etc/passwd: an absolute path; a lab names files relative to its folder`,
				"fix: copy the file beside lab.yaml and write `apply: passwd`"},
			not: []string{"put passwd in", "labs/etc"}},
		{name: "a folder", lab: strings.Replace(good, "  - apply: entry.yaml", "  - apply: more", 1),
			files: []string{"more/one.yaml", entry},
			want: []string{`labs/mylab/lab.yaml:14: step 2 ("The entry"): apply more: labs/mylab/more is a folder, not a file`,
				"fix: name one YAML file in it, e.g. `apply: more/one.yaml`"},
			not: []string{"no such file"}},
		{name: "an alias", lab: strings.Replace(strings.Replace(good, "  - apply: entry.yaml", "  - apply: &e entry.yaml", 1),
			"  - delete: entry.yaml", "  - delete: *e", 1),
			want: []string{`labs/mylab/lab.yaml:19: step 2 ("The entry"): *e: YAML aliases are not supported in a lab file`,
				"fix: write out what &e at line 14 stands for"},
			not: []string{"must be text", "no such file"}, problems: 1},
		{name: "an alias for an action", lab: strings.Replace(strings.Replace(good, "  - mesh: REGISTRY_ONLY", "  - &m {mesh: REGISTRY_ONLY}", 1),
			"  - delete: entry.yaml", "  - *m", 1),
			want: []string{`labs/mylab/lab.yaml:19: step 2 ("The entry"): *m: YAML aliases are not supported in a lab file`},
			not:  []string{"an action must be a mapping"}, problems: 1},
		{name: "do as a mapping", lab: strings.Replace(good, "  do:\n  - mesh: REGISTRY_ONLY\n  - deploy: client\n",
			"  do:\n    mesh: REGISTRY_ONLY\n", 1),
			want: []string{`labs/mylab/lab.yaml:8: step 1 ("Mesh and client"): ` + "`do:` must be a list of actions, not a mapping",
				"fix: start each action with `- `", "  do:\n      - mesh: REGISTRY_ONLY\n      - deploy: client"},
			not: []string{"the step does nothing", "an action must be a mapping"}},
		{name: "steps as a mapping", lab: "title: t\nsummary: s\nsteps:\n  title: Mesh\n  do:\n  - mesh: REGISTRY_ONLY\n",
			want: []string{"labs/mylab/lab.yaml:3: `steps:` must be a list of steps, not a mapping", "fix: start each step with `- title:`"},
			not:  []string{"the lab has no steps"}},
		{name: "deploy of an app that is not built in", lab: strings.Replace(good, "  - deploy: client", "  - deploy: server", 1),
			want: []string{`labs/mylab/lab.yaml:10: step 1 ("Mesh and client"): deploy server: egresslab has no app called server; its apps are: client`,
				"a file beside lab.yaml is deployed by its name with .yaml (`deploy: server.yaml`)"},
			not: []string{"put server.yaml in labs/apps"}},
		{name: "deploy of a file beside the lab without .yaml", lab: strings.Replace(good, "  - deploy: client", "  - deploy: server", 1),
			files: []string{"server.yaml", client},
			want:  []string{"deploy server: egresslab has no app called server", "fix: write `deploy: server.yaml`: server.yaml is beside lab.yaml"}},
		{name: "a file that names none", lab: strings.Replace(good, "  - apply: entry.yaml", `  - apply: ""`, 1),
			want: []string{`labs/mylab/lab.yaml:14: step 2 ("The entry"): apply names no file`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NotEqual(t, good, tc.lab, "the case changes the lab")
			l, err := load(t, tc.lab, append([]string{"entry.yaml", entry}, tc.files...)...)
			require.Error(t, err)
			assert.Nil(t, l, "a bad lab is refused whole")
			var errs labfile.Errors
			require.ErrorAs(t, err, &errs)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, err.Error(), n)
			}
			if tc.problems > 0 {
				assert.Len(t, errs, tc.problems, "%v", err)
			}
		})
	}
}

// A `---` with nothing after it (or before the lab) is no second document.
func TestAnEmptyDocumentIsNoSecondDocument(t *testing.T) {
	for _, lab := range []string{good + "---\n# nothing more\n", "---\n" + good, "# a comment\n---\n" + good, "---\n---\n" + good} {
		_, err := load(t, lab, "entry.yaml", entry)
		require.NoError(t, err, lab)
	}
}

// A user's lab file (labfile.Folder, as `lab -f` reads it) may be a symbolic link to
// anywhere: the user named it. The files it names are read from the folder the user
// named, and a link there is followed only while it stays in that folder's parent.
func TestALabFileMayBeALinkButNotTheFilesItNames(t *testing.T) {
	elsewhere, parent := t.TempDir(), t.TempDir()
	dir := filepath.Join(parent, "mylab")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "lab.yaml"), []byte(good), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "entry.yaml"), []byte(entry), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "lab.yaml"), filepath.Join(dir, "lab.yaml")))
	load := func() error {
		fsys, in, done := labfile.Folder(dir, "lab.yaml")
		defer done()
		assert.Equal(t, "mylab", in)
		_, err := labfile.Load(labfile.Source{FS: fsys, Dir: in, DirShown: dir, Apps: mapApps(), AppsShown: "labs/apps",
			Client: backend.Workload{Namespace: "egresslab", Name: "client"}}, "lab.yaml", "mylab")
		return err
	}
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "entry.yaml"), filepath.Join(dir, "entry.yaml")))
	err := load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "lab.yaml")+`:14: step 2 ("The entry"): apply entry.yaml: `+filepath.Join(dir, "entry.yaml")+
		" is a symbolic link to "+filepath.Join(elsewhere, "entry.yaml")+", outside the folder that holds the lab's folder ("+parent+")")

	require.NoError(t, os.Remove(filepath.Join(dir, "entry.yaml")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "entry.yaml"), []byte(entry), 0o644))
	require.NoError(t, load())
}

// A file full of problems is refused with the first few dozen and their count, not with
// every one: 100,000 unknown keys are 30 errors and one line that counts the rest, read
// quickly.
func TestTheProblemsListedAreCapped(t *testing.T) {
	const listed = 30 // the problems spelt out
	var b strings.Builder
	b.WriteString(good)
	const keys = 100_000
	for i := range keys {
		fmt.Fprintf(&b, "key%d: x\n", i)
	}
	start := time.Now()
	_, err := load(t, b.String(), "entry.yaml", entry)
	took := time.Since(start)
	var errs labfile.Errors
	require.ErrorAs(t, err, &errs)
	text := err.Error()
	assert.Less(t, len(text), 10_000, "the message is short")
	assert.Len(t, errs, listed)
	assert.Contains(t, text, `labs/mylab/lab.yaml:20: unknown field "key0" in the lab`)
	assert.Contains(t, text, fmt.Sprintf("labs/mylab/lab.yaml: … and %d more problems", keys-listed))
	assert.NotContains(t, text, fmt.Sprintf("key%d", listed), "none after the cap is spelt out")
	assert.Less(t, took, 10*time.Second)
}

// The rules a lab's file names follow, on a real folder read as `lab -f` reads it
// (rooted at the folder that holds the lab's folder): its own folder and a sibling
// folder, never an absolute path, never above that parent, never a file of the parent
// itself, and a symbolic link only while it stays inside the parent.
func TestWhichPathsALabMayName(t *testing.T) {
	parent := t.TempDir()
	shared := strings.Replace(entry, "name: example", "name: shared", 1)
	for name, body := range map[string]string{
		"mylab/entry.yaml": entry, "mylab/sub/more.yaml": shared, "other/shared.yaml": shared, "loose.yaml": shared,
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(parent, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(parent, name), []byte(body), 0o644))
	}
	for link, to := range map[string]string{
		"loop.yaml": "loop.yaml", "outside.yaml": "/etc/passwd", "up.yaml": "../../../../../../../etc/passwd",
		"sibling.yaml": "../other/shared.yaml", "dangling.yaml": "nothing.yaml", "etc": "/etc",
	} {
		require.NoError(t, os.Symlink(to, filepath.Join(parent, "mylab", link)))
	}
	root, err := os.OpenRoot(parent)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	src := labfile.Source{FS: root.FS(), Dir: "mylab", Shown: "my",
		Client: backend.Workload{Namespace: "egresslab", Name: "client"}}
	for _, tc := range []struct {
		name string
		want []string // nil: the lab loads
		not  []string
	}{
		{name: "entry.yaml"},
		{name: "sub/more.yaml"},
		{name: "../other/shared.yaml"},
		{name: "./../mylab/../other/shared.yaml"},
		{name: "sibling.yaml"},
		{name: "/etc/passwd", want: []string{"apply /etc/passwd: an absolute path; a lab names files relative to its folder",
			"a lab names a file in its own folder", "or in a sibling folder (`../other-lab/entry.yaml`)"}, not: []string{"put passwd"}},
		{name: "../../etc/passwd", want: []string{"apply ../../etc/passwd: it leads above the folder that holds the lab's folder (my)",
			"a lab names a file in its own folder"}},
		{name: "../.kube/config", want: []string{"apply ../.kube/config: it names a hidden file or folder (a name starting with a dot)"}},
		{name: ".hidden.yaml", want: []string{"apply .hidden.yaml: it names a hidden file or folder"}},
		{name: "../loose.yaml", want: []string{"apply ../loose.yaml: it names a file of my itself, not of a lab's folder",
			"fix: move it into a folder beside the lab's"}},
		{name: "loop.yaml", want: []string{"apply loop.yaml: my/mylab/loop.yaml is a symbolic link that cannot be followed: a loop of links (to loop.yaml)"},
			not: []string{"did you mean", "no such file"}},
		{name: "outside.yaml", want: []string{"apply outside.yaml: my/mylab/outside.yaml is a symbolic link to /etc/passwd, outside the folder that holds the lab's folder (my)",
			"symbolic links are followed only while they stay inside"}},
		{name: "up.yaml", want: []string{"apply up.yaml: my/mylab/up.yaml is a symbolic link to ../../../../../../../etc/passwd, outside the folder that holds the lab's folder (my)"}},
		{name: "etc/passwd", want: []string{"apply etc/passwd: my/mylab/etc is a symbolic link to /etc, outside the folder that holds the lab's folder (my)"}},
		{name: "dangling.yaml", want: []string{"apply dangling.yaml: my/mylab/dangling.yaml is a symbolic link to nothing.yaml, which does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := strings.Replace(good, "  - apply: entry.yaml\n", "  - apply: "+tc.name+"\n  - apply: entry.yaml\n", 1)
			require.NoError(t, os.WriteFile(filepath.Join(parent, "mylab", "lab.yaml"), []byte(lab), 0o644))
			src := src
			src.Apps = mapApps()
			l, err := labfile.Load(src, "lab.yaml", "mylab")
			if tc.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "my/mylab/lab.yaml", l.File)
				return
			}
			require.Error(t, err)
			for _, w := range append(tc.want, `my/mylab/lab.yaml:14: step 2 ("The entry"): `) {
				assert.Contains(t, err.Error(), w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, err.Error(), n)
			}
		})
	}
}

func mapApps() fstest.MapFS { return fstest.MapFS{"client.yaml": {Data: []byte(client)}} }

// An object in a namespace that neither exists on every cluster nor is created by an
// earlier step is refused with the file, before anything is applied: the lab used to
// run its first steps and fail at that one, exit 1, with nothing on stderr.
func TestAnObjectInANamespaceNoStepCreatesIsRefused(t *testing.T) {
	stray := strings.Replace(entry, "name: example", "name: example\n  namespace: nowhere", 1)
	lab := `title: t
summary: s
steps:
- title: one
  do:
  - mesh: REGISTRY_ONLY
  - deploy: client
  - apply: stray.yaml
`
	_, err := labfile.Load(labfile.Source{FS: fstest.MapFS{"l/lab.yaml": {Data: []byte(lab)}, "l/stray.yaml": {Data: []byte(stray)}},
		Dir: "l", Shown: "labs", Apps: mapApps(), AppsShown: "labs/apps", Client: backend.Workload{Namespace: "egresslab", Name: "client"}},
		labfile.FileName, "l")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `line 8 (apply stray.yaml): labs/l/stray.yaml, document 1 (ServiceEntry example): namespace "nowhere" does not exist`)
	assert.Contains(t, err.Error(), "fix: put the object in a namespace that exists (metadata.namespace), or apply that Namespace first")
}
