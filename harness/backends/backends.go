// Package backends picks a backend by name, for the lab's -backend flag and the
// scenarios' -backend flag alike. Each backend registers itself from a file of its own
// here (sim.go, kind.go, ...), so adding one touches nothing else.
package backends

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
)

// Registration is how a backend is opened, and whether "auto" should pick it.
type Registration struct {
	Name string
	// Priority orders the candidates for "auto": the highest whose Available says yes wins.
	Priority int
	// Available says whether the backend can run here, and why (or why not).
	Available func(ctx context.Context) (bool, string)
	// Provider builds the backend's provider.
	Provider func() (backend.Provider, error)
}

var registry = map[string]Registration{}

func register(r Registration) { registry[r.Name] = r }

// Names lists the backends that can be asked for, besides "auto".
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Select returns the provider called name, and a sentence saying why it was chosen.
// "auto" picks the most realistic backend that can run here.
func Select(ctx context.Context, name string) (backend.Provider, string, error) {
	if name == "" || name == "auto" {
		return selectAuto(ctx)
	}
	r, ok := registry[name]
	if !ok {
		return nil, "", fmt.Errorf("unknown backend %q: use auto or one of %s", name, strings.Join(Names(), ", "))
	}
	if ok, why := r.Available(ctx); !ok {
		return nil, "", fmt.Errorf("backend %s cannot run here: %s", name, why)
	}
	p, err := r.Provider()
	if err != nil {
		return nil, "", fmt.Errorf("open backend %s: %w", name, err)
	}
	return p, "asked for with -backend=" + name, nil
}

func selectAuto(ctx context.Context) (backend.Provider, string, error) {
	candidates := make([]Registration, 0, len(registry))
	for _, r := range registry {
		candidates = append(candidates, r)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].Priority > candidates[j].Priority })
	var passed []string
	for _, r := range candidates {
		ok, why := r.Available(ctx)
		if !ok {
			passed = append(passed, r.Name+": "+why)
			continue
		}
		p, err := r.Provider()
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
