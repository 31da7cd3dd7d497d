package backends

import (
	"context"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/sim"
)

func init() {
	register(Registration{
		Name:      "sim",
		Priority:  0, // the fallback: it runs anywhere Go does
		Available: func(context.Context) (bool, string) { return true, "needs nothing but Go" },
		Provider:  func() (backend.Provider, error) { return sim.Provider{}, nil },
	})
}
