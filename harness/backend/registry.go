package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Env looks up one setting of the environment a run was started in. Only the edges (the
// CLI's main and the scenarios' TestMain) read the process environment: they pass
// os.Getenv down, and each backend turns what it needs into its own typed config.
type Env func(key string) string

// NoEnv is an environment with nothing set, for tests.
func NoEnv(string) string { return "" }

// Settings are what the edge (the CLI, the scenarios' TestMain) knows of a run and
// hands to the backend it picks.
type Settings struct {
	// Env is the process environment; nil is an empty one.
	Env Env
	// Progress receives a backend's progress lines (steps, elapsed times).
	Progress io.Writer
	// CallsTo are the hosts (host:port) the run will call, for a preflight to check.
	CallsTo []string
	// Keep is the caller's rule for what a backend sets up to last (a kind cluster): kept
	// at the end for the next run to reuse, or deleted. The zero value is the scenarios':
	// deleted unless the environment asks to keep it.
	Keep Keep
}

// Keep says whether a backend keeps what it set up (a kind cluster) at the end of a run,
// for the next run to reuse. The command line wins over the environment
// (EGRESSLAB_KEEP, which the backend reads), which wins over the caller's default.
type Keep struct {
	// ByDefault keeps it unless the environment or Flag says otherwise: the lab and check
	// commands, which a workshop runs one after another on one cluster. The scenarios
	// leave it false: their cluster is deleted unless EGRESSLAB_KEEP=1.
	ByDefault bool
	// Flag is what the command line asked for (-keep, -keep=false); nil when it asked nothing.
	Flag *bool
}

func (s Settings) env() Env {
	if s.Env == nil {
		return NoEnv
	}
	return s.Env
}

func (s Settings) progress() io.Writer {
	if s.Progress == nil {
		return io.Discard
	}
	return s.Progress
}

// Registration is how a backend is opened, and whether "auto" should pick it. Each
// backend registers itself from its own package (init); package backend/all imports
// them all.
type Registration struct {
	Name string
	// Priority orders the candidates for "auto": the highest whose Available says yes wins.
	Priority int
	// Available says whether the backend can run here, and why (or why not).
	Available func(ctx context.Context, env Env) (bool, string)
	// Provider builds the backend's provider, configured from the settings.
	Provider func(env Env, progress io.Writer, callsTo []string) (Provider, error)
	// ProviderFor, when set, builds the provider instead of Provider, from all the
	// settings: for a backend that heeds more than the environment (kind keeps its
	// cluster as Settings.Keep says).
	ProviderFor func(s Settings) (Provider, error)
}

// provider builds r's provider from the settings.
func (r Registration) provider(s Settings) (Provider, error) {
	if r.ProviderFor != nil {
		s.Env, s.Progress = s.env(), s.progress()
		return r.ProviderFor(s)
	}
	return r.Provider(s.env(), s.progress(), s.CallsTo)
}

// Cleaner is implemented by providers that can leave something behind on purpose (the
// kind cluster the lab and check commands keep for the next run): `egresslab clean`
// removes it.
type Cleaner interface {
	// Clean removes what earlier runs kept, and says what it did.
	Clean(ctx context.Context) (string, error)
}

// Versioned is implemented by providers that run software of their own choosing (a
// kind node image, an Istio release, a kube-apiserver): `egresslab version` lists it.
type Versioned interface {
	// Versions names each piece and its version, e.g. "Istio release installed: 1.31.0".
	Versions() []string
}

var registry = map[string]Registration{}

// UnknownError is Select's error for a name no backend is registered under: bad input,
// where a backend that cannot run is not.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("unknown backend %q: use auto or one of %s", e.Name, strings.Join(Names(), ", "))
}

// Register adds a backend; a second registration of the same name is a programming error.
func Register(r Registration) {
	if _, dup := registry[r.Name]; dup {
		panic("backend " + r.Name + " registered twice")
	}
	registry[r.Name] = r
}

// Names lists the backends that can be asked for, besides "auto".
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Providers builds the provider of every registered backend, by name, without checking
// that it can run here (for `egresslab clean`).
func Providers(s Settings) map[string]Provider {
	out := map[string]Provider{}
	for _, n := range Names() {
		if p, err := registry[n].provider(s); err == nil {
			out[n] = p
		}
	}
	return out
}

// Select returns the provider called name, and a sentence saying why it was chosen.
// "auto" picks the most realistic backend that can run here.
func Select(ctx context.Context, name string, s Settings) (Provider, string, error) {
	if name == "" || name == "auto" {
		return selectAuto(ctx, s)
	}
	r, ok := registry[name]
	if !ok {
		return nil, "", &UnknownError{Name: name}
	}
	if ok, why := r.Available(ctx, s.env()); !ok {
		return nil, "", fmt.Errorf("backend %s cannot run here: %s", name, why)
	}
	p, err := r.provider(s)
	if err != nil {
		return nil, "", fmt.Errorf("open backend %s: %w", name, err)
	}
	return p, "asked for with -backend=" + name, nil
}

func selectAuto(ctx context.Context, s Settings) (Provider, string, error) {
	candidates := make([]Registration, 0, len(registry))
	for _, r := range registry {
		candidates = append(candidates, r)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].Priority > candidates[j].Priority })
	var passed []string
	for _, r := range candidates {
		ok, why := r.Available(ctx, s.env())
		if !ok {
			passed = append(passed, r.Name+": "+why)
			continue
		}
		p, err := r.provider(s)
		if err != nil {
			return nil, "", fmt.Errorf("open backend %s: %w", r.Name, err)
		}
		reason := "picked automatically: " + why
		if len(passed) > 0 {
			reason = "picked automatically; passed over " + strings.Join(passed, "; ")
		}
		return p, reason, nil
	}
	return nil, "", fmt.Errorf("no backend can run here: %s", strings.Join(passed, "; "))
}

// Bundler is implemented by providers that download and pull what they run (the kind
// backend): `egresslab bundle FILE` saves all of it in one file, which a later run serves
// to itself instead of the internet.
type Bundler interface {
	// WriteBundle writes the bundle to path, and says what it wrote.
	WriteBundle(ctx context.Context, path string, from BundleSource) (string, error)
}

// BundleSource is where a bundle's contents come from: by default where an online run
// gets them; for Istio built from source (hack/kind-offline-images.sh), its source tree
// (whose charts are packaged as Istio's release packages them) and a `docker save` of
// its images, tagged as Istio publishes them.
type BundleSource struct {
	IstioSource, DockerArchive string
}

// Check says what is wrong with the source before anything is fetched: Istio built
// from source needs both its tree and its images.
func (s BundleSource) Check() error {
	if (s.IstioSource == "") != (s.DockerArchive == "") {
		return errors.New("-istio-source and -images go together: a bundle of Istio built from source needs both its source tree and a docker save of its images")
	}
	return nil
}
