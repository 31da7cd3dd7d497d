package backends

import (
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/kindbackend"
)

func init() {
	register(Registration{
		Name:      "kind",
		Priority:  10, // the real thing, wherever a Docker daemon answers
		Available: kindbackend.Available,
		Provider:  func() (backend.Provider, error) { return kindbackend.FromEnv(), nil },
	})
}
