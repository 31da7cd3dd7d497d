// Package killercoda writes a lab as a Killercoda scenario: the public format in which
// Killercoda (killercoda.com) runs a course in the browser, on a VM it starts, with
// nothing to install. The scenario is made from the lab's handout (harness/handout),
// so it says exactly what the handout says and checks what the handout's by-hand test
// checks:
//
//   - index.json: the title, the description, the pages, the scripts, the assets and
//     the VM (backend.imageid kubernetes-kubeadm-1node, a one-node kubeadm cluster);
//   - intro.md, the handout's opening, and intro/background.sh, which Killercoda runs as
//     root before the attendee starts (it installs helm and waits for the node to be
//     Ready; the steps install Istio, as the handout does), with intro/foreground.sh,
//     which waits for it in the attendee's terminal;
//   - stepN/text.md, the handout's step N, each command block clickable ({{exec}});
//   - stepN/verify.sh, the step's Check: it types again the step's commands that print
//     something the handout shows, and compares, as the by-hand test does;
//   - finish.md, the handout's Clean up;
//   - assets/..., every file of the repository the commands name, copied onto the VM
//     under /root/egresslab, where the commands are typed.
//
// The layout and the keys are those of github.com/killercoda/scenario-examples
// (kubernetes-2node-multi-step-verification, kubernetes-dashboard, upload-assets,
// foreground-background-scripts-multi-step, network-traffic-kubernetes).
package killercoda

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/manifests"
)

const (
	// ImageID is the Killercoda environment the scenario runs on: one kubeadm node
	// whose control plane takes pods, with kubectl.
	ImageID = "kubernetes-kubeadm-1node"
	// Home is the folder of the VM the repository's files are copied to, and where
	// the commands are typed, as the handout types them at the repository's root.
	Home = "/root/egresslab"
	// HelmVersion is the helm the background script installs when the VM has none:
	// the release of the Helm SDK egresslab is built with (go.mod's helm.sh/helm/v4),
	// the helm the handouts' by-hand test types them with (hack/handout-tools.sh).
	HelmVersion = "v4.2.0"
	// setupDone is the marker the background script writes its exit status to, and the
	// foreground script waits for.
	setupDone = "/tmp/egresslab-setup-done"
	// heredocEnd ends the quoted here-documents verify.sh holds commands and outputs in.
	heredocEnd = "EGRESSLAB_END"
	// execMark makes a command block clickable: Killercoda types it in the terminal.
	execMark = "{{exec}}"
)

// Write writes l's scenario into dir, reading the files its commands name from the
// working directory: the commands are typed from the root of the egresslab repository,
// so that is where egresslab is run from (make, or bin/egresslab). See WriteFrom.
func Write(dir string, l *labfile.Lab) (written []string, err error) {
	return WriteFrom(dir, l, os.DirFS("."))
}

// WriteFrom writes l's scenario into dir, with the files its commands name read from
// root, the repository's root. dir must not exist, or be an empty folder; its parent
// must exist. The scenario is made in a folder beside dir, renamed to dir once whole:
// on an error nothing is left. written lists the files written, as paths under dir.
func WriteFrom(dir string, l *labfile.Lab, root fs.FS) (written []string, err error) {
	dir = filepath.Clean(dir)
	if err := checkTarget(dir); err != nil {
		return nil, err
	}
	files, err := render(l)
	if err != nil {
		return nil, fmt.Errorf("killercoda scenario of %s: %w", l.File, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("killercoda scenario of %s: %w", l.File, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range files {
		data := f.data
		if f.from != "" {
			if data, err = fs.ReadFile(root, f.from); err != nil {
				return nil, fmt.Errorf("killercoda scenario of %s: copy %s, which its commands name, from the repository's root "+
					"(run egresslab from the root of the egresslab repository): %w", l.File, f.from, err)
			}
		}
		at := filepath.Join(tmp, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(at, data, f.mode); err != nil {
			return nil, err
		}
		written = append(written, filepath.Join(dir, filepath.FromSlash(f.name)))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := checkTarget(dir); err != nil { // it may have changed while we wrote
		return nil, err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return written, nil
}

// checkTarget refuses a dir that holds anything: the scenario replaces no one's files.
func checkTarget(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !info.IsDir():
		return fmt.Errorf("%s exists and is not a folder: give a new folder for the Killercoda scenario", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s exists and is not empty: give a new or empty folder for the Killercoda scenario", dir)
	}
	return nil
}

// file is one file of the scenario, by its slash path in the scenario: data, or the
// file from (a slash path) of the repository, read as it is written.
type file struct {
	name string
	data []byte
	from string
	mode fs.FileMode
}

// index is index.json, with the keys of killercoda/scenario-examples.
type index struct {
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Details     details `json:"details"`
	Backend     struct {
		ImageID string `json:"imageid"`
	} `json:"backend"`
}

type details struct {
	Intro  page               `json:"intro"`
	Steps  []page             `json:"steps"`
	Finish page               `json:"finish"`
	Assets map[string][]asset `json:"assets,omitempty"`
}

type page struct {
	Title      string `json:"title,omitempty"`
	Text       string `json:"text"`
	Verify     string `json:"verify,omitempty"`
	Background string `json:"background,omitempty"`
	Foreground string `json:"foreground,omitempty"`
}

// asset copies assets/File onto the VM, into the folder Target.
type asset struct {
	File   string `json:"file"`
	Target string `json:"target"`
	Chmod  string `json:"chmod,omitempty"`
}

// render makes every file of l's scenario.
func render(l *labfile.Lab) ([]file, error) {
	for i, st := range l.Steps {
		for _, a := range st.Actions {
			if a.Kind == labfile.Suggest {
				// The background script installs helm only; building egresslab there
				// would need Go and the repository's module cache.
				return nil, fmt.Errorf("step %d runs `egresslab suggest` (suggest: %s), which a Killercoda VM does not have: "+
					"no scenario is written for this lab; its handout (labs/%s/README.md) is followed on a cluster of one's own", i+1, a.From, l.Name)
			}
		}
	}
	var md bytes.Buffer
	if err := handout.Write(&md, l); err != nil {
		return nil, err
	}
	p, err := handout.Parse(&md)
	if err != nil {
		return nil, fmt.Errorf("read its handout back: %w", err)
	}
	if err := checkSections(p, l); err != nil {
		return nil, err
	}
	repoFiles := namedFiles(l)
	var files []file
	add := func(name string, mode fs.FileMode, text string) {
		files = append(files, file{name: name, data: []byte(text), mode: mode})
	}
	idx := index{Title: l.Title, Description: l.Summary}
	idx.Backend.ImageID = ImageID

	idx.Details.Intro = page{Text: "intro.md", Background: "intro/background.sh", Foreground: "intro/foreground.sh"}
	add("intro.md", 0o644, intro(l, p.Sections[0]))
	add("intro/background.sh", 0o755, background(l))
	add("intro/foreground.sh", 0o755, foreground(l))

	for i, s := range l.Steps {
		sec := p.Sections[i+1]
		dir := fmt.Sprintf("step%d", i+1)
		idx.Details.Steps = append(idx.Details.Steps, page{Title: s.Title, Text: dir + "/text.md", Verify: dir + "/verify.sh"})
		add(dir+"/text.md", 0o644, stepText(sec, repoFiles))
		v, err := verify(l, i+1, sec)
		if err != nil {
			return nil, err
		}
		add(dir+"/verify.sh", 0o755, v)
	}

	idx.Details.Finish = page{Text: "finish.md"}
	add("finish.md", 0o644, stepText(p.Sections[len(p.Sections)-1], repoFiles))

	for _, name := range repoFiles {
		files = append(files, file{name: "assets/" + name, from: name, mode: 0o644})
		if idx.Details.Assets == nil {
			idx.Details.Assets = map[string][]asset{}
		}
		idx.Details.Assets["host01"] = append(idx.Details.Assets["host01"],
			asset{File: name, Target: path.Join(Home, path.Dir(name)), Chmod: "+w"})
	}

	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(idx); err != nil {
		return nil, err
	}
	add("index.json", 0o644, js.String())
	return files, nil
}

// checkSections checks that the handout has the sections this package reads: the
// opening, one per step of the lab, in order, and the clean-up.
func checkSections(p handout.Page, l *labfile.Lab) error {
	var want []string
	for i, s := range l.Steps {
		want = append(want, fmt.Sprintf("Step %d. %s", i+1, s.Title))
	}
	want = append(want, "Clean up")
	var got []string
	for _, s := range p.Sections[1:] {
		got = append(got, s.Title)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("its handout's sections are %q, not the lab's steps and Clean up (%q)", got, want)
	}
	return nil
}

// namedFiles lists, sorted, the files of the repository (slash paths from its root)
// the lab's commands name: the Istio values every mesh action installs with, the
// manifests its deploy, apply and delete actions apply, and the files it tries.
func namedFiles(l *labfile.Lab) []string {
	var out []string
	add := func(name string) {
		if name = path.Clean(name); !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			switch {
			case a.Kind == labfile.Mesh:
				add(path.Join("manifests", manifests.IstioValues))
			case a.Kind == labfile.Refuse:
				add(path.Join(l.Dir, a.File))
			case a.Set != nil:
				add(a.Set.Source)
			}
		}
	}
	slices.Sort(out)
	return out
}

// provenance is the comment each Markdown page opens with.
func provenance(l *labfile.Lab) string {
	return fmt.Sprintf("<!-- Made from %s by `egresslab lab %s -killercoda DIR`: edit the lab file, not this page. -->", l.File, l.Name)
}

// intro is the handout's opening (its summary, and how to follow it), and where the
// commands are typed on Killercoda's VM.
func intro(l *labfile.Lab, opening handout.Section) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(opening.Markdown), "\n") {
		// The handout's own provenance, and its title, which Killercoda shows from index.json.
		if len(lines) == 0 && (strings.HasPrefix(line, "<!--") || line == "# "+l.Title || line == "") {
			continue
		}
		lines = append(lines, line)
	}
	body := strings.TrimSpace(strings.Join(lines, "\n"))
	if !strings.Contains(body, l.Summary) {
		body = l.Summary + "\n\n" + body
	}
	note := fmt.Sprintf("On this Killercoda scenario the cluster is a one-node kubeadm cluster with `kubectl`; "+
		"the setup installs `helm` (%s) and waits for the node to be Ready. The files of the egresslab repository "+
		"the commands name are in `%s`: the commands are typed there (`cd %s`), and each step's **Check** types "+
		"again, there, the step's commands that print something and compares, as egresslab's by-hand test does.",
		HelmVersion, Home, Home)
	return provenance(l) + "\n\n" + body + "\n\n" + note + "\n"
}

// stepText is a section of the handout as a Killercoda page: its Markdown without its
// heading (Killercoda shows index.json's title), each block marked to run made
// clickable (```plain, and {{exec}} after the closing fence, as the examples'
// network-traffic-kubernetes/step1.md), the other blocks as they are; a section whose
// commands name a file of the repository starts in the folder the files are in.
func stepText(sec handout.Section, repoFiles []string) string {
	var b strings.Builder
	if namesAFile(sec, repoFiles) {
		fmt.Fprintf(&b, "The commands are typed in `%s`: `cd %s`{{exec}}\n\n", Home, Home)
	}
	md := strings.Trim(sec.Markdown, "\n")
	if heading := "## " + sec.Title; strings.HasPrefix(md, heading+"\n") {
		md = strings.TrimLeft(strings.TrimPrefix(md, heading), "\n")
	}
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, "```") {
			b.WriteString(line + "\n")
			continue
		}
		run := line == "```"+handout.RunMark
		if run {
			line = "```plain"
		}
		b.WriteString(line + "\n")
		for i++; i < len(lines); i++ {
			if lines[i] == "```" {
				if run {
					b.WriteString("```" + execMark + "\n")
				} else {
					b.WriteString("```\n")
				}
				break
			}
			b.WriteString(lines[i] + "\n")
		}
	}
	return b.String()
}

// namesAFile says whether a command of sec names one of files.
func namesAFile(sec handout.Section, files []string) bool {
	for _, r := range sec.Runs {
		for _, f := range files {
			if strings.Contains(r.Commands, f) {
				return true
			}
		}
	}
	return false
}

// verifyHead is the part of every verify.sh before its checks.
const verifyHead = `
# Each check types again, from the repository's files, one of the step's commands the
# handout shows an output for (calls and reads: what egresslab's by-hand test compares)
# and checks what it prints, stdout and stderr as a terminal mixes them: all of it
# (exact) or a part (contains), trailing blanks aside; its exit code does not matter, as
# the output shows it. A refused kubectl apply is typed as a server-side dry run, so
# that nothing is applied even if Istio's validation let it through. Commands that
# change the cluster (apply, delete, helm) are not typed again. Exit 0: the step is
# done; otherwise stderr says what was printed instead. EGRESSLAB_DIR, when set,
# replaces the folder the commands are typed in (for egresslab's own test).

cd "${EGRESSLAB_DIR:-` + Home + `}" || exit 1

# check HOW COMMANDS WANT
check() {
  local got want
  got=$(timeout 120 bash -e -o pipefail -c "$2" 2>&1 | sed 's/[[:space:]]*$//')
  want=$(printf '%s' "$3" | sed 's/[[:space:]]*$//')
  case $1 in
  exact) [[ $got == "$want" ]] && return 0 ;;
  contains) [[ $got == *"$want"* ]] && return 0 ;;
  esac
  printf '%s\nshould print (%s)\n%s\nbut printed\n%s\n' "$2" "$1" "$want" "$got" >&2
  exit 1
}
`

// verify is step n's verify.sh: the runs of its section that have an output, each
// typed again and compared.
func verify(l *labfile.Lab, n int, sec handout.Section) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/bash\n# The Check of step %d of egresslab's lab %s (%q), for Killercoda: made from %s\n"+
		"# by `egresslab lab %s -killercoda DIR`; edit the lab file, not this script.\n",
		n, l.Name, l.Steps[n-1].Title, l.File, l.Name)
	b.WriteString(verifyHead)
	checks := 0
	for _, r := range sec.Runs {
		if r.Output == "" {
			continue
		}
		for _, text := range []string{r.Commands, r.Output} {
			if slices.Contains(strings.Split(text, "\n"), heredocEnd) {
				return "", fmt.Errorf("step %d: a command or output holds the line %s, which ends verify.sh's here-documents", n, heredocEnd)
			}
		}
		how := "exact"
		if r.Contains {
			how = "contains"
		}
		fmt.Fprintf(&b, "\nIFS= read -r -d '' commands <<'%[1]s'\n%[2]s\n%[1]s\nIFS= read -r -d '' want <<'%[1]s'\n%[3]s\n%[1]s\ncheck %[4]s \"$commands\" \"$want\"\n",
			heredocEnd, dryRun(r.Commands), r.Output, how)
		checks++
	}
	if checks == 0 {
		b.WriteString("\n# This step changes the cluster and prints nothing to compare: typing its commands\n" +
			"# again would change it again, so the Check types nothing and passes; the next step's\n" +
			"# checks show whether the change holds.\n")
	}
	b.WriteString("exit 0\n")
	return b.String(), nil
}

// dryRun makes each kubectl apply of commands a server-side dry run: Istio's
// validating webhook still answers, and nothing is applied.
func dryRun(commands string) string {
	return strings.ReplaceAll(commands, "kubectl apply ", "kubectl apply --dry-run=server ")
}

// background is intro/background.sh.
func background(l *labfile.Lab) string {
	return fmt.Sprintf(`#!/bin/bash
# The setup of egresslab's lab %[1]s on Killercoda, made by `+"`egresslab lab %[1]s -killercoda DIR`"+`.
# Killercoda runs it as root on the VM before the attendee starts; its output goes to
# /var/log/killercoda. It installs helm if the VM has none and waits for the
# Kubernetes node to be Ready, nothing more: the steps install Istio, as the handout
# does. It writes its exit status to %[2]s, which intro/foreground.sh waits for.
set -euo pipefail
trap 'echo $? > %[2]s' EXIT

if ! command -v helm >/dev/null 2>&1; then
  case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "no helm release for $(uname -m)" >&2; exit 1 ;;
  esac
  curl -fsSL "https://get.helm.sh/helm-%[3]s-linux-${arch}.tar.gz" | tar -xz -C /tmp "linux-${arch}/helm"
  install -m 0755 "/tmp/linux-${arch}/helm" /usr/local/bin/helm
fi
helm version

until kubectl get nodes >/dev/null 2>&1; do sleep 2; done
kubectl wait --for=condition=Ready node --all --timeout=10m
`, l.Name, setupDone, HelmVersion)
}

// foreground is intro/foreground.sh: it waits in the attendee's terminal for the
// background script, then checks that the repository's files are in place.
func foreground(l *labfile.Lab) string {
	files := namedFiles(l)
	return fmt.Sprintf(`#!/bin/bash
# Waits for intro/background.sh (helm, the node Ready), then goes where the commands are
# typed. Killercoda may type it in the attendee's terminal: it never ends the shell. Made by `+"`egresslab lab %[1]s -killercoda DIR`"+`.
echo "Preparing the cluster: helm, and the node Ready..."
while [ ! -f %[2]s ]; do sleep 1; done
if [ "$(cat %[2]s)" != 0 ]; then
  echo "The setup failed: see /var/log/killercoda."
fi
cd %[3]s
for f in %[4]s; do
  [ -f "$f" ] || echo "Missing %[3]s/$f, which the commands name."
done
echo "Ready: type the commands in %[3]s."
`, l.Name, setupDone, Home, strings.Join(files, " "))
}
