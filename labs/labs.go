// Package labs holds egresslab's labs, one folder each: its lab.yaml (the steps, their
// prose, what each applies and calls, and the verdict each call must get), the
// manifests it applies, and its handout (README.md, made from lab.yaml). The apps the
// labs deploy are in apps/. A lab is data: writing one needs no Go (see
// docs/lab-format.md); harness/lab runs it.
package labs

import (
	"cmp"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs/apps"
)

// FS holds every lab's files and the shared apps, by "NAME/FILE".
//
//go:embed */*.yaml
var FS embed.FS

// Folder is where the labs are, relative to the module root, as messages name them.
const Folder = "labs"

// Manifests the Go tests of the backends share with the labs (paths in FS).
const (
	ClientApp            = "apps/client.yaml"
	SeedServiceEntry     = "serviceentry/jsonplaceholder.yaml"
	MisspeltServiceEntry = "wildcards/misspelt.yaml"
)

// Names lists the labs (the folders with a lab file), by name.
func Names() []string {
	var names []string
	entries, _ := fs.ReadDir(FS, ".")
	for _, e := range entries {
		if _, err := fs.Stat(FS, path.Join(e.Name(), labfile.FileName)); err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// Load reads the lab called name.
func Load(name string) (*labfile.Lab, error) {
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("no lab called %q: the labs are %s (or run a lab file with -f FILE)", name, strings.Join(Names(), ", "))
	}
	return labfile.Load(source(FS, name, Folder), labfile.FileName, name)
}

// LoadFile reads a user's lab file, with the manifests beside it; a deploy may name
// the shared apps (deploy: client). The lab's folder is read through the folder that
// holds it, as labs/ holds the labs (labfile.Folder): a lab may name a file of its own
// folder and, as ../OTHER/FILE, of a sibling folder (a lab beside labs/modes uses
// ../serviceentry/jsonplaceholder.yaml as modes does); never an absolute path, nothing
// above that parent, and a symbolic link only while it stays inside it.
func LoadFile(file string) (*labfile.Lab, error) {
	dir, base := filepath.Split(file)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	name := strings.TrimSuffix(base, filepath.Ext(base))
	if name == "lab" {
		name = filepath.Base(dir)
		if abs, err := filepath.Abs(dir); err == nil {
			name = filepath.Base(abs)
		}
	}
	fsys, in, done := labfile.Folder(dir, base)
	defer done() // Load reads every file the lab names before it returns
	src := source(fsys, in, "")
	src.DirShown = filepath.ToSlash(dir)
	return labfile.Load(src, base, name)
}

func source(fsys fs.FS, dir, shown string) labfile.Source {
	appsFS, _ := fs.Sub(FS, "apps")
	return labfile.Source{FS: fsys, Dir: dir, Shown: shown, Apps: appsFS, AppsShown: path.Join(Folder, "apps"), Client: apps.Client}
}

// All reads every lab, in workshop order.
func All() ([]*labfile.Lab, error) {
	var all []*labfile.Lab
	for _, name := range Names() {
		l, err := Load(name)
		if err != nil {
			return nil, err
		}
		all = append(all, l)
	}
	slices.SortStableFunc(all, func(a, b *labfile.Lab) int { return cmp.Compare(a.Order, b.Order) })
	return all, nil
}

// Manifest reads one of the labs' manifests (a path in FS) for a Go test; objects that
// name no namespace go in namespace.
func Manifest(name, namespace string) (*manifest.Set, error) {
	data, err := fs.ReadFile(FS, name)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	return manifest.Parse(path.Join(Folder, name), data, namespace)
}

// ClientManifest is the client app (apps/client.yaml) deployed as workload w: its
// namespace (sidecar injection on), service account, Service and Deployment named for
// w, and its pods labelled app: NAME, so that a Sidecar's workload selector or an
// AuthorizationPolicy's service account picks it out as it would a team's own app. The
// container is named NAME too: the backends exec into the container named for the
// workload.
func ClientManifest(w backend.Workload) (*manifest.Set, error) {
	if w == apps.Client {
		return Manifest(ClientApp, w.Namespace)
	}
	data, err := fs.ReadFile(FS, ClientApp)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", ClientApp, err)
	}
	text := clientNamespace.ReplaceAllString(string(data), "${1}"+w.Namespace)
	text = clientName.ReplaceAllString(text, "${1}"+w.Name)
	return manifest.Parse(fmt.Sprintf("%s (as %s)", path.Join(Folder, ClientApp), w), []byte(text), w.Namespace)
}

// The lines of apps/client.yaml that name its namespace, and those that name the
// workload (metadata and container names, the app label, the service account).
var (
	clientNamespace = regexp.MustCompile(`(?m)^(\s*(?:name|namespace): )` + regexp.QuoteMeta(apps.Client.Namespace) + `$`)
	clientName      = regexp.MustCompile(`(?m)^(\s*(?:- )?(?:name|app|serviceAccountName): )` + regexp.QuoteMeta(apps.Client.Name) + `$`)
)

// Expect is the expectation a lab's call with this id states, for the Go tests that
// hold a backend to the same expectations as the lab. It panics when there is none:
// a test that names a missing expectation is a bug in the test.
func Expect(lab, id string) outcome.Expect {
	l, err := Load(lab)
	if err != nil {
		panic(err)
	}
	e, ok := l.Expectation(id)
	if !ok {
		panic(fmt.Sprintf("lab %s has no call with id %q", lab, id))
	}
	return e
}
