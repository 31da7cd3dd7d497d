package backend

import "time"

// Timeouts bound the waits a lab and the scenarios share with the backends; each caller
// passes its own copy down. The waits only a backend knows (a rollout, an install, a
// cluster's start, one call) are that backend's own, set where it waits.
type Timeouts struct {
	// Propagation: from a change (an applied entry, a new mesh mode) to the sidecar
	// acting on it.
	Propagation time.Duration
}

// DefaultTimeouts are generous enough for a first run on a laptop that pulls images.
func DefaultTimeouts() Timeouts {
	return Timeouts{Propagation: 60 * time.Second}
}

// The poll intervals Await uses: short first, since istiod usually pushes within a few
// hundred milliseconds, then growing, so a slow cluster is not called in a tight loop.
const (
	firstPoll = 20 * time.Millisecond
	maxPoll   = time.Second
)
