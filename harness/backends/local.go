package backends

import (
	"context"
	"os"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/local"
)

func init() {
	register(Registration{
		Name: local.Name,
		// Below sim: "auto" picks a real cluster when Docker answers and sim otherwise, so
		// the lab stays sub-second offline; local runs when asked for (-backend=local).
		Priority:  -1,
		Available: func(context.Context) (bool, string) { return local.Available() },
		Provider:  func() (backend.Provider, error) { return local.NewProvider(os.Stderr), nil },
	})
}
