package killercoda_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/handout/killercoda"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// repoRoot is the repository's root, from this package's folder.
const repoRoot = "../../.."

// index is index.json as killercoda/scenario-examples writes it; decoding refuses any
// other key.
type index struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Details     struct {
		Intro  page   `json:"intro"`
		Steps  []page `json:"steps"`
		Finish page   `json:"finish"`
		Assets struct {
			Host01 []struct {
				File   string `json:"file"`
				Target string `json:"target"`
				Chmod  string `json:"chmod"`
			} `json:"host01"`
		} `json:"assets"`
	} `json:"details"`
	Backend struct {
		ImageID string `json:"imageid"`
	} `json:"backend"`
}

type page struct {
	Title      string `json:"title"`
	Text       string `json:"text"`
	Verify     string `json:"verify"`
	Background string `json:"background"`
	Foreground string `json:"foreground"`
}

// scenario writes the serviceentry lab's scenario into a new folder.
func scenario(t *testing.T) (dir string, l *labfile.Lab, idx index, written []string) {
	t.Helper()
	l, err := labs.Load("serviceentry")
	require.NoError(t, err)
	dir = filepath.Join(t.TempDir(), "serviceentry")
	written, err = killercoda.WriteFrom(dir, l, os.DirFS(repoRoot))
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&idx), "index.json")
	return dir, l, idx, written
}

// handoutOf is l's handout, read back as the by-hand test reads it.
func handoutOf(t *testing.T, l *labfile.Lab) handout.Page {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, handout.Write(&b, l))
	p, err := handout.Parse(&b)
	require.NoError(t, err)
	require.Len(t, p.Sections, len(l.Steps)+2)
	return p
}

func read(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(data)
}

// index.json has the examples' keys and names every file of the scenario, each of
// which exists; nothing else is written.
func TestIndexNamesEveryFileAndEachExists(t *testing.T) {
	dir, l, idx, written := scenario(t)
	assert.Equal(t, l.Title, idx.Title)
	assert.Equal(t, l.Summary, idx.Description)
	assert.Equal(t, "kubernetes-kubeadm-1node", idx.Backend.ImageID)
	assert.Equal(t, page{Text: "intro.md", Background: "intro/background.sh", Foreground: "intro/foreground.sh"}, idx.Details.Intro)
	assert.Equal(t, page{Text: "finish.md"}, idx.Details.Finish)

	named := []string{"index.json", idx.Details.Intro.Text, idx.Details.Intro.Background, idx.Details.Intro.Foreground, idx.Details.Finish.Text}
	for _, s := range idx.Details.Steps {
		named = append(named, s.Text, s.Verify)
	}
	for _, a := range idx.Details.Assets.Host01 {
		named = append(named, path.Join("assets", a.File))
		// Onto the VM where the commands name it: Target is the folder it goes into.
		assert.Equal(t, path.Join(killercoda.Home, path.Dir(a.File)), a.Target, a.File)
		assert.Equal(t, "+w", a.Chmod, a.File)
	}
	for _, name := range named {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if assert.NoError(t, err, "index.json names %s", name) {
			assert.True(t, info.Mode().IsRegular(), name)
		}
	}
	var onDisk []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			onDisk = append(onDisk, filepath.ToSlash(rel))
		}
		return err
	}))
	slices.Sort(named)
	slices.Sort(onDisk)
	assert.Equal(t, named, onDisk, "the files written are those index.json names")
	var writtenRel []string
	for _, w := range written {
		rel, err := filepath.Rel(dir, w)
		require.NoError(t, err)
		writtenRel = append(writtenRel, filepath.ToSlash(rel))
	}
	slices.Sort(writtenRel)
	assert.Equal(t, onDisk, writtenRel, "Write lists what it wrote")
}

// One Killercoda step per lab step, with the lab's titles, and the handout's step as
// its page, each command to type clickable.
func TestOneStepPerLabStepWithItsCommandsClickable(t *testing.T) {
	dir, l, idx, _ := scenario(t)
	p := handoutOf(t, l)
	require.Len(t, idx.Details.Steps, len(l.Steps))
	for i, s := range l.Steps {
		assert.Equal(t, s.Title, idx.Details.Steps[i].Title)
		assert.Equal(t, fmt.Sprintf("step%d/text.md", i+1), idx.Details.Steps[i].Text)
		text := read(t, filepath.Join(dir, idx.Details.Steps[i].Text))
		sec := p.Sections[i+1]
		require.NotEmpty(t, sec.Runs, "step %d", i+1)
		for _, r := range sec.Runs {
			assert.Contains(t, text, "```plain\n"+r.Commands+"\n```{{exec}}\n", "step %d", i+1)
		}
		assert.NotContains(t, text, "```"+handout.RunMark)
		assert.NotContains(t, text, "## Step", "Killercoda shows the title itself")
		if s.Prose != "" {
			assert.Contains(t, text, s.Prose)
		}
	}
	// Outputs and diagrams stay as the handout has them.
	step3 := read(t, filepath.Join(dir, "step3", "text.md"))
	assert.Contains(t, step3, "```text output\n502\n```\n")
	assert.Contains(t, step3, "```mermaid\n")
	// The steps whose commands name a repository file start where the files are.
	assert.True(t, strings.HasPrefix(read(t, filepath.Join(dir, "step4", "text.md")), "The commands are typed in `/root/egresslab`: `cd /root/egresslab`{{exec}}\n"))
	assert.NotContains(t, step3, "cd /root/egresslab")
	// The intro is the handout's opening: the summary, once, and where to type.
	intro := read(t, filepath.Join(dir, "intro.md"))
	assert.Equal(t, 1, strings.Count(intro, l.Summary))
	assert.Contains(t, intro, "`cd /root/egresslab`")
	assert.NotContains(t, intro, "# "+l.Title+"\n")
	// The finish page is the clean-up.
	finish := read(t, filepath.Join(dir, "finish.md"))
	assert.Contains(t, finish, "```plain\nkubectl delete --ignore-not-found -n egresslab -f labs/serviceentry/jsonplaceholder.yaml\n```{{exec}}\n")
	assert.Contains(t, finish, "helm uninstall")
}

// Each verify.sh is a bash script, executable, that holds exactly the checks of its
// step: the commands with an output, and those outputs.
func TestEachVerifyHoldsItsStepsExpectedOutputs(t *testing.T) {
	dir, l, idx, _ := scenario(t)
	p := handoutOf(t, l)
	for i := range l.Steps {
		name := filepath.Join(dir, filepath.FromSlash(idx.Details.Steps[i].Verify))
		assert.Equal(t, fmt.Sprintf("step%d/verify.sh", i+1), idx.Details.Steps[i].Verify)
		info, err := os.Stat(name)
		require.NoError(t, err)
		assert.NotZero(t, info.Mode().Perm()&0o111, "%s is executable", name)
		script := read(t, name)
		assert.True(t, strings.HasPrefix(script, "#!/bin/bash\n"), name)
		out, err := exec.Command("bash", "-n", name).CombinedOutput()
		assert.NoError(t, err, "bash -n %s: %s", name, out)
		checks := 0
		for _, r := range p.Sections[i+1].Runs {
			if r.Output == "" {
				// What changes the cluster is not typed again.
				assert.NotContains(t, script, r.Commands, "step %d", i+1)
				continue
			}
			checks++
			assert.Contains(t, script, "\n"+r.Commands+"\n", "step %d", i+1)
			assert.Contains(t, script, "\n"+r.Output+"\n", "step %d", i+1)
		}
		assert.Equal(t, checks, strings.Count(script, "\ncheck "), "step %d", i+1)
		if checks == 0 {
			assert.Contains(t, script, "the Check types nothing and passes", "step %d", i+1)
		} else {
			assert.NotContains(t, script, "the Check types nothing and passes", "step %d", i+1)
		}
	}
	assert.Contains(t, read(t, filepath.Join(dir, "step3", "verify.sh")), "<<'EGRESSLAB_END'\n502\nEGRESSLAB_END\ncheck exact ")
	assert.Contains(t, read(t, filepath.Join(dir, "step2", "verify.sh")), "\ndeployment \"client\" successfully rolled out\nEGRESSLAB_END\ncheck contains ")
	assert.NotContains(t, read(t, filepath.Join(dir, "step1", "verify.sh")), "helm ")
}

// The assets are the repository's files the commands name, byte for byte: at least the
// Istio values and the lab's entry, and every file a command applies with -f.
func TestAssetsAreTheFilesTheCommandsName(t *testing.T) {
	dir, l, idx, _ := scenario(t)
	var files []string
	for _, a := range idx.Details.Assets.Host01 {
		files = append(files, a.File)
		want, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(a.File)))
		require.NoError(t, err)
		assert.Equal(t, string(want), read(t, filepath.Join(dir, "assets", filepath.FromSlash(a.File))), a.File)
	}
	require.NotEmpty(t, l.Entry)
	assert.Contains(t, files, "manifests/istio/values.yaml")
	assert.Contains(t, files, path.Join(l.Dir, l.Entry))
	named := regexp.MustCompile(`-f (\S+)`)
	for _, sec := range handoutOf(t, l).Sections {
		for _, r := range sec.Runs {
			for _, m := range named.FindAllStringSubmatch(r.Commands, -1) {
				if m[1] != "-" {
					assert.Contains(t, files, m[1], "%s names it", r.Commands)
				}
			}
		}
	}
}

// The setup installs helm at the version the handouts are tested with and waits for the
// node, and nothing more; the foreground waits for it.
func TestBackgroundInstallsHelmAndWaitsForTheNode(t *testing.T) {
	dir, _, _, _ := scenario(t)
	gomod := read(t, filepath.Join(repoRoot, "go.mod"))
	m := regexp.MustCompile(`(?m)^\s*helm\.sh/helm/v4 (v\S+)`).FindStringSubmatch(gomod)
	require.NotNil(t, m, "go.mod requires helm.sh/helm/v4")
	assert.Equal(t, m[1], killercoda.HelmVersion, "the helm the scenario installs is go.mod's (hack/handout-tools.sh builds that one)")
	for _, name := range []string{"background.sh", "foreground.sh"} {
		at := filepath.Join(dir, "intro", name)
		out, err := exec.Command("bash", "-n", at).CombinedOutput()
		assert.NoError(t, err, "bash -n %s: %s", name, out)
		info, err := os.Stat(at)
		require.NoError(t, err)
		assert.NotZero(t, info.Mode().Perm()&0o111, name)
	}
	bg := read(t, filepath.Join(dir, "intro", "background.sh"))
	assert.Contains(t, bg, "https://get.helm.sh/helm-"+killercoda.HelmVersion+"-linux-${arch}.tar.gz")
	assert.Contains(t, bg, "if ! command -v helm ")
	assert.Contains(t, bg, "kubectl wait --for=condition=Ready node --all")
	assert.NotContains(t, bg, "helm upgrade", "the steps install Istio, not the setup")
	assert.NotContains(t, bg, "kubectl apply")
	fg := read(t, filepath.Join(dir, "intro", "foreground.sh"))
	marker := regexp.MustCompile(`> (/tmp/\S+)' EXIT`).FindStringSubmatch(bg)
	require.NotNil(t, marker, bg)
	assert.Contains(t, fg, "while [ ! -f "+marker[1]+" ]")
	assert.NotContains(t, fg, "exit", "it may be typed in the attendee's terminal")
}

// fakeKubectl puts first on PATH a kubectl that answers its n-th call with answers[n]
// (its stdout, then a line "command terminated with exit code N" on stderr and that
// exit code, as kubectl exec prints a command's failure), and returns the PATH and a
// function that counts the calls.
func fakeKubectl(t *testing.T, answers []string) (pathEnv string, calls func() int) {
	t.Helper()
	bin, state := t.TempDir(), t.TempDir()
	script := `#!/bin/bash
n=$(( $(cat "` + state + `/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "` + state + `/count"
[ -f "` + state + `/$n.out" ] || { echo "fake kubectl: no answer for call $n: $*" >&2; exit 99; }
cat "` + state + `/$n.out"
[ -f "` + state + `/$n.err" ] && cat "` + state + `/$n.err" >&2
exit "$(cat "` + state + `/$n.code" 2>/dev/null || echo 0)"
`
	require.NoError(t, os.WriteFile(filepath.Join(bin, "kubectl"), []byte(script), 0o755))
	terminated := regexp.MustCompile(`(?m)^command terminated with exit code (\d+)$`)
	for i, a := range answers {
		out, errOut, code := a, "", "0"
		if m := terminated.FindStringSubmatchIndex(a); m != nil {
			out, errOut, code = a[:m[0]], a[m[0]:], a[m[2]:m[3]]
		}
		for ext, text := range map[string]string{"out": out, "err": errOut, "code": code} {
			require.NoError(t, os.WriteFile(filepath.Join(state, fmt.Sprintf("%d.%s", i+1, ext)), []byte(text), 0o644))
		}
	}
	return bin + string(os.PathListSeparator) + os.Getenv("PATH"), func() int {
		data, err := os.ReadFile(filepath.Join(state, "count"))
		if err != nil {
			return 0
		}
		var n int
		fmt.Sscan(string(data), &n)
		return n
	}
}

// runVerify runs a verify.sh as Killercoda does, with PATH and the folder it types in.
func runVerify(t *testing.T, script, pathEnv string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "PATH="+pathEnv, "EGRESSLAB_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Each verify.sh passes when kubectl prints what the handout shows (trailing blanks
// aside), fails when one of its commands prints anything else, and types nothing for
// a step whose commands only change the cluster.
func TestVerifyPassesOnTheRightOutputAndFailsOnAWrongOne(t *testing.T) {
	dir, l, _, _ := scenario(t)
	p := handoutOf(t, l)
	checked := 0
	for i := range l.Steps {
		script := filepath.Join(dir, fmt.Sprintf("step%d", i+1), "verify.sh")
		var right []string
		for _, r := range p.Sections[i+1].Runs {
			if r.Output != "" {
				require.Equal(t, 1, strings.Count(r.Commands, "kubectl "), "the fake answers one kubectl call per command: %s", r.Commands)
				right = append(right, r.Output)
			}
		}
		t.Run(fmt.Sprintf("step%d", i+1), func(t *testing.T) {
			blanks := make([]string, len(right))
			for j, a := range right {
				blanks[j] = strings.ReplaceAll(a, "\n", "  \n") + " \t\n\n"
			}
			pathEnv, calls := fakeKubectl(t, blanks)
			out, err := runVerify(t, script, pathEnv)
			assert.NoError(t, err, "with the right output: %s", out)
			assert.Equal(t, len(right), calls(), "kubectl is called once per command with an output, and for nothing else")
			for j := range right {
				wrong := slices.Clone(right)
				wrong[j] = "503"
				pathEnv, _ := fakeKubectl(t, wrong)
				out, err := runVerify(t, script, pathEnv)
				assert.Error(t, err, "with a wrong output for check %d: %s", j+1, out)
				assert.Contains(t, out, "but printed\n")
			}
		})
		if len(right) > 0 {
			checked++
		}
	}
	assert.GreaterOrEqual(t, checked, 5, "the lab's steps with an output")
	// A part is enough where the handout shows a part; the whole is needed where it
	// shows the whole.
	step2 := filepath.Join(dir, "step2", "verify.sh")
	pathEnv, _ := fakeKubectl(t, []string{"Waiting for deployment \"client\" rollout to finish: 0 of 1 updated replicas are available...\ndeployment \"client\" successfully rolled out\n"})
	out, err := runVerify(t, step2, pathEnv)
	assert.NoError(t, err, out)
	step3 := filepath.Join(dir, "step3", "verify.sh")
	pathEnv, _ = fakeKubectl(t, []string{"502\n502\n"})
	out, err = runVerify(t, step3, pathEnv)
	assert.Error(t, err, "an exact output with more lines: %s", out)
}

// Write reads the files the commands name from the working directory: the
// repository's root, where the commands are typed.
func TestWriteReadsTheRepositoryFromTheWorkingDirectory(t *testing.T) {
	l, err := labs.Load("serviceentry")
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "scenario")
	t.Chdir(repoRoot)
	written, err := killercoda.Write(dir, l)
	require.NoError(t, err)
	assert.Contains(t, written, filepath.Join(dir, "assets", "manifests", "istio", "values.yaml"))
	assert.FileExists(t, filepath.Join(dir, "assets", "labs", "serviceentry", "jsonplaceholder.yaml"))

	t.Chdir(t.TempDir()) // not the repository's root
	_, err = killercoda.Write(filepath.Join(t.TempDir(), "scenario"), l)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run egresslab from the root of the egresslab repository")
}

// A folder that holds anything is refused and left as it was; an empty one is used.
func TestRefusesAFolderThatIsNotEmpty(t *testing.T) {
	l, err := labs.Load("serviceentry")
	require.NoError(t, err)
	parent := t.TempDir()
	dir := filepath.Join(parent, "scenario")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.md"), []byte("mine"), 0o644))
	_, err = killercoda.WriteFrom(dir, l, os.DirFS(repoRoot))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exists and is not empty")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "mine", read(t, filepath.Join(dir, "notes.md")))
	assertOnly(t, parent, "scenario")

	file := filepath.Join(parent, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err = killercoda.WriteFrom(file, l, os.DirFS(repoRoot))
	assert.ErrorContains(t, err, "is not a folder")

	empty := filepath.Join(parent, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	_, err = killercoda.WriteFrom(empty, l, os.DirFS(repoRoot))
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(empty, "index.json"))
	assertOnly(t, parent, "empty", "file", "scenario")
}

// assertOnly checks that dir holds these names and nothing else: no folder half-written.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	assert.Equal(t, names, got)
}

// A small lab, as harness/handout's test has it, with a refused file.
const (
	testLab = `title: A scenario test
summary: Deploy, block, apply, refuse.
steps:
- title: Install the mesh
  do:
  - mesh: REGISTRY_ONLY
- title: Deploy the client
  do:
  - deploy: client
- title: Apply the entry
  do:
  - apply: entry.yaml
  - call: http://api.example.org/v1
    expect: {verdict: ALLOWED, reason: registered service, cluster: "outbound|80||api.example.org", status: 200}
- title: Try a wildcard with DNS
  do:
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

// testLabAndRoot reads the small lab, and a repository root holding what it names.
func testLabAndRoot(t *testing.T) (*labfile.Lab, fstest.MapFS) {
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
	values, err := os.ReadFile(filepath.Join(repoRoot, "manifests", "istio", "values.yaml"))
	require.NoError(t, err)
	client, err := fs.ReadFile(labs.FS, "apps/client.yaml")
	require.NoError(t, err)
	root := fstest.MapFS{
		"manifests/istio/values.yaml": {Data: values},
		"labs/apps/client.yaml":       {Data: client},
		"testlab/entry.yaml":          {Data: []byte(entryYAML)},
		"testlab/wildcard.yaml":       {Data: []byte(wildcardYAML)},
	}
	return l, root
}

// When a file the commands name is missing, nothing is written: neither the folder nor
// the one it was being made in.
func TestNothingIsLeftOnAFailure(t *testing.T) {
	l, root := testLabAndRoot(t)
	delete(root, "testlab/wildcard.yaml")
	parent := t.TempDir()
	dir := filepath.Join(parent, "scenario")
	written, err := killercoda.WriteFrom(dir, l, root)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "testlab/wildcard.yaml")
	assert.Empty(t, written)
	assertOnly(t, parent)
	assert.NoDirExists(t, dir)
}

// A refused file is tried again in its step's Check as a server-side dry run: Istio's
// validation answers the same, and nothing is applied.
func TestVerifyTriesARefusedFileAsADryRun(t *testing.T) {
	l, root := testLabAndRoot(t)
	dir := filepath.Join(t.TempDir(), "scenario")
	_, err := killercoda.WriteFrom(dir, l, root)
	require.NoError(t, err)
	script := read(t, filepath.Join(dir, "step4", "verify.sh"))
	assert.Contains(t, script, "\nkubectl apply --dry-run=server -n egresslab -f testlab/wildcard.yaml\n")
	assert.Contains(t, script, "\ndenied the request: configuration is invalid: "+l.Steps[3].Actions[0].Rejection+"\n")
	assert.Contains(t, script, "check contains ")
	// The apply of step 3 changes the cluster: not typed again; its call is.
	step3 := read(t, filepath.Join(dir, "step3", "verify.sh"))
	assert.NotContains(t, step3, "kubectl apply -n egresslab -f testlab/entry.yaml")
	assert.Contains(t, step3, "\n200\n")
	assert.FileExists(t, filepath.Join(dir, "assets", "testlab", "wildcard.yaml"))
	assert.FileExists(t, filepath.Join(dir, "assets", "testlab", "entry.yaml"))
}

// A lab that runs egresslab suggest is not made a scenario: the VM has no egresslab.
// Nothing is written.
func TestALabThatRunsSuggestIsNoScenario(t *testing.T) {
	l, err := labs.Load("migrate")
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "migrate")
	_, err = killercoda.WriteFrom(dir, l, os.DirFS(repoRoot))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "runs `egresslab suggest` (suggest: egresslab/legacy), which a Killercoda VM does not have")
	_, statErr := os.Stat(dir)
	assert.True(t, os.IsNotExist(statErr), "nothing written")
}
