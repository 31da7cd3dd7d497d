package scenarios

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind"
	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/steps"
	"github.com/egresslab/egresslab/labs"
)

var handoutTools = flag.String("handout-tools", "",
	"a folder holding the kubectl and helm the handouts are typed with (hack/handout-tools.sh builds them at the project's versions); default: those on PATH")

// TestHandoutsByHand types every handout (labs/NAME/README.md), lab after lab in
// workshop order, as istio.io's doc tests type a page's snippets: each block the page
// marks to run, in order, with real kubectl and helm, at the scenarios' cluster, from
// the repository's root, and with one substitution: Istio's chart repository URL
// becomes the run's (offline, the bundle's server). A block the page shows no output
// for must exit 0; one it shows an output for must print it (all of it, or the part
// shown). Blocks with an output are typed again until they print it, for a bounded
// time, as a person does while config reaches the sidecar.
//
// It starts from a cluster without Istio or the labs' apps, as an attendee's, and
// leaves it so: Istio installed here by helm's command line is not the release the
// kind backend's Helm SDK manages.
func TestHandoutsByHand(t *testing.T) {
	all, err := labs.All()
	if err != nil {
		t.Fatal(err)
	}
	test(t, features.New("handouts typed by hand").
		WithSetup("open backend", steps.OpenBackend()).
		Assess("every handout's commands print what the handout shows", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			b := steps.Backend(ctx)
			typed, ok := b.(backend.Typed)
			if !ok {
				t.Skipf("handouts are typed at a real cluster; backend %s has none (run with -backend=kind)", b.Name())
			}
			sh := newTypist(t, typed.TypedAt())
			sh.plainCluster(all)
			t.Cleanup(func() { sh.plainCluster(all) })
			for _, l := range all {
				if t.Failed() {
					return ctx // the labs build on each other: one failure makes the next ones' noise
				}
				sh.typePage(l)
			}
			return ctx
		}))
}

// typist types a handout's commands at a cluster.
type typist struct {
	t    *testing.T
	env  []string
	repo string // the chart repository the run's cluster installs from
	root string // the repository's root, where a handout is typed from
}

func newTypist(t *testing.T, at backend.TypedTarget) *typist {
	path := os.Getenv("PATH")
	if *handoutTools != "" {
		dir, err := filepath.Abs(*handoutTools)
		if err != nil {
			t.Fatal(err)
		}
		path = dir + string(os.PathListSeparator) + path
	}
	home := t.TempDir()
	env := append(os.Environ(), "PATH="+path, "KUBECONFIG="+at.Kubeconfig, "HOME="+home,
		// Helm's repositories, cache and plugins in the test's own folder, not the user's.
		"HELM_CONFIG_HOME="+filepath.Join(home, "helm-config"), "HELM_CACHE_HOME="+filepath.Join(home, "helm-cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm-data"))
	for _, tool := range []string{"kubectl", "helm"} {
		if _, err := lookPath(tool, path); err != nil {
			t.Fatalf("%s: not found on PATH; give -handout-tools=DIR (hack/handout-tools.sh builds kubectl and helm at the project's versions)", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return &typist{t: t, env: env, repo: at.ChartRepo, root: root}
}

// lookPath finds a program on the PATH the commands run with.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// plainCluster removes Istio and every app a lab deploys, as a person would find a
// cluster before the workshop.
func (sh *typist) plainCluster(all []*labfile.Lab) {
	pub := kind.PublishedRelease()
	cmds := []string{fmt.Sprintf("helm uninstall %s %s -n %s --ignore-not-found --wait", pub.IstiodRelease, pub.BaseRelease, pub.Namespace)}
	seen := map[string]bool{}
	for _, l := range all {
		for _, s := range l.Steps {
			for _, a := range s.Actions {
				if a.Kind == labfile.Deploy && !seen[a.Set.Source] {
					seen[a.Set.Source] = true
					cmds = append(cmds, "kubectl delete --ignore-not-found --timeout=3m -f "+a.Set.Source)
				}
			}
		}
	}
	for _, c := range cmds {
		if out, err := sh.typeOnce(c, 5*time.Minute); err != nil {
			sh.t.Errorf("making the cluster plain: %s: %v\n%s", c, err, out)
		}
	}
}

// typePage types the marked blocks of a lab's handout, in order.
func (sh *typist) typePage(l *labfile.Lab) {
	file := filepath.Join(l.Dir, "README.md")
	f, err := os.Open(filepath.Join(sh.root, file))
	if err != nil {
		sh.t.Fatal(err)
	}
	defer f.Close()
	page, err := handout.Parse(f)
	if err != nil {
		sh.t.Fatalf("%s: %v", file, err)
	}
	runs := 0
	for _, sec := range page.Sections {
		for _, r := range sec.Runs {
			runs++
			cmds := strings.ReplaceAll(r.Commands, handout.ChartRepo(), sh.repo)
			where := fmt.Sprintf("%s:%d (%s)", file, r.Line, sec.Title)
			start := time.Now()
			if r.Output == "" {
				out, err := sh.typeOnce(cmds, 5*time.Minute)
				if err != nil {
					sh.t.Fatalf("%s:\n%s\nfailed: %v\n%s", where, r.Commands, err, out)
				}
				sh.t.Logf("%s: exit 0 in %s", where, time.Since(start).Round(time.Millisecond))
				continue
			}
			got, tries := sh.typeUntil(cmds, r, backend.DefaultTimeouts().Propagation)
			if !prints(got, r) {
				how := "print"
				if r.Contains {
					how = "print, among other lines,"
				}
				sh.t.Fatalf("%s:\n%s\nshould %s\n%s\nbut printed, %d times in %s:\n%s", where, r.Commands, how, r.Output, tries,
					time.Since(start).Round(time.Millisecond), got)
			}
			sh.t.Logf("%s: printed what the page shows in %s (%d tries)", where, time.Since(start).Round(time.Millisecond), tries)
		}
	}
	if runs == 0 {
		sh.t.Errorf("%s marks no command to run", file)
	}
}

// typeOnce runs commands as a shell a person types them into, stopping at the first
// that fails, and returns what they printed, stdout and stderr as a terminal mixes them.
func (sh *typist) typeOnce(commands string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", commands)
	cmd.Dir, cmd.Env = sh.root, sh.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// typeUntil types commands until they print what r shows, trying again for at most
// timeout after the first try, and returns the last output and how many times they
// were typed.
func (sh *typist) typeUntil(commands string, r handout.Run, timeout time.Duration) (string, int) {
	var deadline time.Time
	var out string
	tries := 0
	for pause := 200 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		// Each try as long as a command of the page may take (a rollout's own --timeout is
		// 3 minutes: the first pull of the curl image through the mirror, on a loaded
		// machine, took over a minute); the exit code is part of what is printed.
		out, _ = sh.typeOnce(commands, 5*time.Minute)
		tries++
		if tries == 1 {
			deadline = time.Now().Add(timeout)
		}
		if prints(out, r) || time.Now().After(deadline) {
			return out, tries
		}
		time.Sleep(pause)
	}
}

// prints says whether out is what r shows, trailing blanks aside.
func prints(out string, r handout.Run) bool {
	got, want := tidy(out), tidy(r.Output)
	if r.Contains {
		return strings.Contains(got, want)
	}
	return got == want
}

func tidy(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.Join(lines, "\n")
}
