// Package backends picks a backend by name, for the lab's -backend flag and the
// scenarios' -backend flag alike.
package backends

import (
	"fmt"
	"sort"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/sim"
)

// Names lists the backends that can be asked for, besides "auto".
func Names() []string {
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// providers maps a backend name to how it is opened.
var providers = map[string]func() (backend.Provider, error){
	"sim": func() (backend.Provider, error) { return sim.Provider{}, nil },
}

// Select returns the provider called name. "auto" is sim for now: it will pick kind
// when a Docker daemon answers, once the kind backend exists.
func Select(name string) (backend.Provider, string, error) {
	if name == "" || name == "auto" {
		return sim.Provider{}, "no cluster backend is available yet, so the lab runs on the offline simulator", nil
	}
	open, ok := providers[name]
	if !ok {
		return nil, "", fmt.Errorf("unknown backend %q: use one of auto, %s", name, strings.Join(Names(), ", "))
	}
	p, err := open()
	if err != nil {
		return nil, "", fmt.Errorf("backend %s: %w", name, err)
	}
	return p, "asked for with -backend=" + name, nil
}
