// Package all registers every backend with package backend, as image/png registers a
// decoder: the CLI and the scenarios import it for that alone.
package all

import (
	// Each registers itself in its init.
	_ "github.com/egresslab/egresslab/harness/backend/kind"
	_ "github.com/egresslab/egresslab/harness/backend/local"
	_ "github.com/egresslab/egresslab/harness/backend/sim"
)
