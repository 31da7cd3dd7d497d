package serviceentry

import (
	"context"
	"fmt"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/manifests"
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
}

// Check sets up the mesh and the client app on b, applies the entries, and makes the call.
func Check(ctx context.Context, b backend.Backend, q Question) (Answer, error) {
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
	app, err := manifest.LoadEmbedded(manifests.ClientApp, backend.Client.Namespace)
	if err != nil {
		return Answer{}, err
	}
	if err := b.Apply(ctx, app); err != nil {
		return Answer{}, fmt.Errorf("deploy the client: %w", err)
	}
	for _, e := range q.Entries {
		if err := b.Apply(ctx, e); err != nil {
			return Answer{}, fmt.Errorf("apply %s: %w", e.Source, err)
		}
	}
	v, err := b.Call(ctx, backend.Client, call)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Verdict: v}
	if q.WithConfig {
		if a.SidecarConfig, err = b.SidecarConfig(ctx, backend.Client, call); err != nil {
			return a, fmt.Errorf("read the sidecar's config: %w", err)
		}
	}
	return a, nil
}
