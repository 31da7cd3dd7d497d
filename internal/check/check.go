// Package check answers `egresslab check`: would a call to a URL from the client be
// allowed, under this mesh mode, with these ServiceEntries applied? It is a tool beside
// the labs, not part of one: it sets up the mesh and the client, applies the entries,
// waits for the sidecar to have them as a lab does, calls, and takes the entries away.
package check

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// Question is what `egresslab check` answers: would a call to URL from the lab's
// client be allowed, under this mesh mode, with these ServiceEntries applied?
type Question struct {
	URL     string
	Mode    string          // REGISTRY_ONLY or ALLOW_ANY
	Entries []*manifest.Set // applied in order
	// WithConfig also returns the sidecar's config that decided the call.
	WithConfig bool
}

// Answer is the verdict, with its evidence, and the sidecar config when asked for.
type Answer struct {
	Verdict       outcome.Verdict
	SidecarConfig string
	// Simulated is what Istio's config generator and simulator compute for the same
	// objects: the verdict a cluster backend waits for.
	Simulated outcome.Verdict
	// Unsettled says why Verdict is not Simulated: the backend's sidecar did not come to
	// it within the propagation time (Verdict is then the last call's); nil when it did.
	Unsettled error
}

// Check sets up the mesh and the client app on b, applies the entries, makes the call
// once the sidecar has them, and deletes the entries again (a kept cluster is left as
// it was found). What the call should get is what Istio's simulator computes for the
// same objects (sim); on a backend where config takes time to arrive, Check repeats the
// call until the verdict and its evidence are that, up to propagation. When they never
// are, the answer says so (Unsettled), with the last verdict seen: never a stale one
// passed off as the answer.
func Check(ctx context.Context, b backend.Backend, q Question, propagation time.Duration) (_ Answer, err error) {
	call, err := backend.ParseCall(q.URL)
	if err != nil {
		return Answer{}, err
	}
	values, err := manifest.LoadMeshValues()
	if err != nil {
		return Answer{}, err
	}
	if q.Mode != "" {
		if values, err = values.WithOutboundMode(q.Mode); err != nil {
			return Answer{}, err
		}
	}
	if err := b.InstallMesh(ctx, values); err != nil {
		return Answer{}, fmt.Errorf("install the mesh (%s): %w", values.OutboundMode(), err)
	}
	app, err := labs.Manifest(labs.ClientApp, apps.Client.Namespace)
	if err != nil {
		return Answer{}, err
	}
	if err := b.Apply(ctx, app); err != nil {
		return Answer{}, fmt.Errorf("deploy the client: %w", err)
	}
	defer func() {
		for i := len(q.Entries) - 1; i >= 0; i-- {
			if derr := b.Delete(context.WithoutCancel(ctx), q.Entries[i]); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete %s again: %w", q.Entries[i].Source, derr))
			}
		}
	}()
	for _, e := range q.Entries {
		if err := b.Apply(ctx, e); err != nil {
			return Answer{}, fmt.Errorf("apply %s: %w", e.Source, err)
		}
	}
	simulated, err := simulate(ctx, values, app, q.Entries, call)
	if err != nil {
		return Answer{}, err
	}
	v, _, err := backend.AwaitExpected(ctx, b, apps.Client, call, outcome.ExpectOf(simulated), propagation)
	if err != nil && v.Kind == "" {
		return Answer{}, err
	}
	a := Answer{Verdict: v, Simulated: simulated}
	if err != nil {
		a.Unsettled = fmt.Errorf("the %s backend's sidecar did not come to Istio's simulator's verdict, %s (%s), within %s: %w",
			b.Name(), simulated, simulated.Evidence, propagation, err)
	}
	if q.WithConfig {
		if a.SidecarConfig, err = b.SidecarConfig(ctx, apps.Client, call); err != nil {
			return a, fmt.Errorf("read the sidecar's config: %w", err)
		}
	}
	return a, nil
}

// simulate is the verdict Istio's config generator and simulator compute for the call
// with the same mesh values and objects: what a cluster's sidecar should come to.
func simulate(ctx context.Context, values manifest.MeshValues, app *manifest.Set, entries []*manifest.Set, call backend.Call) (outcome.Verdict, error) {
	ref := sim.New()
	defer ref.Close()
	if err := ref.InstallMesh(ctx, values); err != nil {
		return outcome.Verdict{}, fmt.Errorf("Istio's simulator: install the mesh: %w", err)
	}
	for _, set := range append([]*manifest.Set{app}, entries...) {
		if err := ref.Apply(ctx, set); err != nil {
			return outcome.Verdict{}, fmt.Errorf("Istio's simulator: apply %s: %w", set.Source, err)
		}
	}
	v, err := ref.Call(ctx, apps.Client, call)
	if err != nil {
		return outcome.Verdict{}, fmt.Errorf("Istio's simulator: %w", err)
	}
	return v, nil
}
