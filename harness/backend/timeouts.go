package backend

import "time"

// Timeouts bound the waits of a run. One set, named, so that a lab, the scenarios and
// the backends agree on them; each caller passes its own copy down.
type Timeouts struct {
	// Propagation: from a change (an applied entry, a new mesh mode) to the sidecar
	// acting on it.
	Propagation time.Duration
	// Rollout: a Deployment's pods to be running and ready.
	Rollout time.Duration
	// Install: each of Istio's charts to install, and istiod to be ready.
	Install time.Duration
	// Cluster: a kind cluster's control plane to be ready once its node runs.
	Cluster time.Duration
	// Call: one call from the client (its own --timeout).
	Call time.Duration
}

// DefaultTimeouts are generous enough for a first run on a laptop that pulls images.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Propagation: 60 * time.Second,
		Rollout:     3 * time.Minute,
		Install:     5 * time.Minute,
		Cluster:     3 * time.Minute,
		Call:        10 * time.Second,
	}
}

// The poll intervals Await uses: short first, since istiod usually pushes within a few
// hundred milliseconds, then growing, so a slow cluster is not called in a tight loop.
const (
	firstPoll = 20 * time.Millisecond
	maxPoll   = time.Second
)
