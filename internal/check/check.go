// Package check answers `egresslab check`: would these calls, each from its workload,
// be allowed, under this mesh mode, with these Kubernetes and Istio objects applied? It
// is a tool beside the labs, not part of one. What each call should get is what Istio's
// config generator and simulator compute for the same objects (the sim backend): check
// asks it first, so input the simulator refuses (an object in a namespace that neither
// exists nor is created) is refused before a cluster is touched. On a cluster backend it
// then sets up the mesh and the calling workloads, applies the objects, makes each call
// once its sidecar has come to the simulator's verdict (or says it never did), and
// deletes the objects again. The verdicts themselves are the backends' (dataplane on
// config, outcome.Classify on a real call); check only compares them.
package check

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs"
)

// Question is what `egresslab check` answers.
type Question struct {
	Mode string // an outbound traffic policy mode; "" keeps the lab's (REGISTRY_ONLY)
	// Objects are applied in order before the calls (the files and folders of -f).
	Objects []*manifest.Set
	Calls   []Call
	// WithConfig also returns each call's sidecar config that decided it.
	WithConfig bool
}

// Call is one call of a question: the request, the workload that makes it, and what
// the user expects of it (nil: nothing, the answer only reports).
type Call struct {
	From   backend.Workload
	Call   backend.Call
	Expect *outcome.Expect
}

// CallsOf are the calls of a calls file (labfile.ParseCalls) as check asks them: a call
// that expects nothing (no verdict) is only reported.
func CallsOf(calls []*labfile.Call) []Call {
	out := make([]Call, len(calls))
	for i, c := range calls {
		out[i] = Call{From: c.From, Call: c.URL}
		if c.Expect.Kind != "" {
			e := c.Expect
			out[i].Expect = &e
		}
	}
	return out
}

// Answer is one call's verdict, with its evidence, and the sidecar config when asked for.
type Answer struct {
	Call
	Verdict outcome.Verdict
	// Simulated is what Istio's config generator and simulator compute for the same
	// objects: the verdict a cluster backend waits for.
	Simulated outcome.Verdict
	// Unsettled says why Verdict is not Simulated: the backend's sidecar did not come to
	// it within the propagation time (Verdict is then the last call's); nil when it did.
	Unsettled error
	// Mismatches lists every way Verdict differs from what the call expects.
	Mismatches    []string
	SidecarConfig string
}

// Passed reports whether the answer is settled and what the call expects.
func (a Answer) Passed() bool { return a.Unsettled == nil && len(a.Mismatches) == 0 }

// Check answers q on b. Each calling workload is deployed first: the one the objects
// deploy, or else the lab's client app deployed as that workload (labs.ClientManifest).
// The workloads stay, as a lab's apps do; the objects are deleted again, so a kept
// cluster is left as it was found. Input the simulator refuses is returned as the
// manifest errors that say why (bad input: nothing was applied to b).
func Check(ctx context.Context, b backend.Backend, q Question, propagation time.Duration) (_ []Answer, err error) {
	values, err := manifest.LoadMeshValues()
	if err != nil {
		return nil, err
	}
	if q.Mode != "" {
		if values, err = values.WithOutboundMode(q.Mode); err != nil {
			return nil, err
		}
	}
	apps, err := workloads(q)
	if err != nil {
		return nil, err
	}
	sets := append(apps, q.Objects...)

	// The simulator's verdicts; on sim, b is the simulator and they are the answers.
	ref, onSim := b.(*sim.Backend)
	if !onSim {
		ref = sim.New()
		defer ref.Close()
	}
	simulated, err := simulate(ctx, ref, values, sets, q.Calls)
	if err != nil {
		return nil, err
	}
	answers := make([]Answer, len(q.Calls))
	for i, c := range q.Calls {
		answers[i] = Answer{Call: c, Verdict: simulated[i], Simulated: simulated[i]}
	}
	if onSim {
		defer deleteAll(ctx, b, q.Objects, &err) // simulate applied them
	} else {
		if err := b.InstallMesh(ctx, values); err != nil {
			return nil, fmt.Errorf("install the mesh (%s): %w", values.OutboundMode(), err)
		}
		for _, set := range apps {
			if err := b.Apply(ctx, set); err != nil {
				return nil, fmt.Errorf("deploy %s: %w", set.Source, err)
			}
		}
		// Deleted again only once they are being applied: a Namespace of -f that the
		// cluster had before must not go because the mesh did not install.
		defer deleteAll(ctx, b, q.Objects, &err)
		for _, set := range q.Objects {
			if err := b.Apply(ctx, set); err != nil {
				return nil, fmt.Errorf("apply %s: %w", set.Source, err)
			}
		}
		// A call from a pod without a sidecar proves nothing about the mesh; on a
		// cluster this also waits for each workload's pod to run.
		checked := map[backend.Workload]bool{}
		for _, c := range q.Calls {
			if checked[c.From] {
				continue
			}
			checked[c.From] = true
			sc, err := b.Sidecar(ctx, c.From)
			if err != nil {
				return nil, fmt.Errorf("check the sidecar of %s: %w", c.From, err)
			}
			if err := sc.Missing(); err != nil {
				return nil, fmt.Errorf("%s: %w", c.From, err)
			}
		}
		for i := range answers {
			a := &answers[i]
			v, _, err := backend.AwaitExpected(ctx, b, a.From, a.Call.Call, outcome.ExpectOf(a.Simulated), propagation)
			if err != nil && v.Kind == "" {
				return nil, err
			}
			a.Verdict = v
			if err != nil {
				a.Unsettled = fmt.Errorf("the %s backend's sidecar did not come to Istio's simulator's verdict, %s (%s), within %s: %w",
					b.Name(), a.Simulated, a.Simulated.Evidence, propagation, err)
			}
		}
	}
	for i := range answers {
		a := &answers[i]
		if a.Expect != nil {
			a.Mismatches = a.Expect.Check(a.Verdict)
		}
		if q.WithConfig {
			if a.SidecarConfig, err = b.SidecarConfig(ctx, a.From, a.Call.Call); err != nil {
				return answers, fmt.Errorf("read the sidecar's config of %s: %w", a.From, err)
			}
		}
	}
	return answers, nil
}

// workloads are the manifests that deploy each calling workload the objects do not.
func workloads(q Question) ([]*manifest.Set, error) {
	deployed := map[backend.Workload]bool{}
	for _, set := range q.Objects {
		for _, o := range set.Objects {
			if o.Kind == "Deployment" {
				deployed[backend.Workload{Namespace: o.Namespace, Name: o.Name}] = true
			}
		}
	}
	var sets []*manifest.Set
	for _, c := range q.Calls {
		if deployed[c.From] {
			continue
		}
		deployed[c.From] = true
		set, err := labs.ClientManifest(c.From)
		if err != nil {
			return nil, fmt.Errorf("the client app as %s: %w", c.From, err)
		}
		sets = append(sets, set)
	}
	return sets, nil
}

// simulate is each call's verdict as Istio's config generator and simulator compute it
// with these mesh values and objects: what a cluster's sidecar should come to.
func simulate(ctx context.Context, ref *sim.Backend, values manifest.MeshValues, sets []*manifest.Set, calls []Call) ([]outcome.Verdict, error) {
	if err := ref.InstallMesh(ctx, values); err != nil {
		return nil, fmt.Errorf("Istio's simulator: install the mesh: %w", err)
	}
	for _, set := range sets {
		if err := ref.Apply(ctx, set); err != nil {
			if refused := (manifest.Errors)(nil); errors.As(err, &refused) {
				return nil, err // bad input, said in the manifest's words
			}
			return nil, fmt.Errorf("Istio's simulator: apply %s: %w", set.Source, err)
		}
	}
	out := make([]outcome.Verdict, len(calls))
	for i, c := range calls {
		v, err := ref.Call(ctx, c.From, c.Call)
		if err != nil {
			return nil, fmt.Errorf("Istio's simulator: call %s from %s: %w", c.Call, c.From, err)
		}
		out[i] = v
	}
	return out, nil
}

// deleteAll deletes the objects again, the last applied first, whatever ctx says: an
// interrupted check still leaves the cluster as it found it.
func deleteAll(ctx context.Context, b backend.Backend, sets []*manifest.Set, err *error) {
	for i := len(sets) - 1; i >= 0; i-- {
		if derr := b.Delete(context.WithoutCancel(ctx), sets[i]); derr != nil {
			*err = errors.Join(*err, fmt.Errorf("delete %s again: %w", sets[i].Source, derr))
		}
	}
}
