// Package labfile is the lab format: one YAML file per lab (labs/NAME/lab.yaml), beside
// the manifests it applies. A lab has a title, a summary and numbered steps; each step
// has a heading, its prose, and actions carried out in order: set the mesh's mode,
// deploy an app, apply or delete a manifest, make a call and expect a verdict with its
// evidence. The one engine (harness/lab) narrates it, renders it as a handout and runs
// it as scenarios; this package only reads it, and refuses a bad file whole, naming the
// file, the line, the step and the fix, before anything is applied.
package labfile

import (
	"fmt"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// FileName is the name of a lab's file in its folder.
const FileName = "lab.yaml"

// Lab is one lab file, read and checked.
type Lab struct {
	// Name is the lab's folder name ("serviceentry"), or the file's base name for a
	// user's lab outside labs/.
	Name string
	// File is the lab file as messages name it ("labs/serviceentry/lab.yaml").
	File string
	// Dir is the folder its manifests are read from, as messages name it.
	Dir     string
	Title   string
	Summary string
	// Order places the lab in the workshop: lower first.
	Order int
	// URL is the lab's main call, the one -url replaces ("" when the lab has none).
	URL string
	// Entry is the manifest (a file beside the lab) that -entry replaces ("" when none).
	Entry string
	Steps []Step
}

// Step is one numbered step of a lab.
type Step struct {
	Line    int
	Title   string
	Prose   string
	Actions []Action
}

// Action is one thing a step does. Exactly one of its groups is set, as Kind says.
type Action struct {
	Line int
	Kind ActionKind
	// Mode is the outbound traffic policy mode a Mesh action installs.
	Mode string
	// File is what a Deploy, Apply or Delete action names, as the lab wrote it, and Set
	// its objects, read and validated.
	File string
	Set  *manifest.Set
	// Call is set on a Call action.
	Call *Call
	// Refusal is what Istio's validation says of a Refuse action's file, Text that file
	// as written, and Command the kubectl command a learner would try it with.
	Refusal, Text, Command string
	// From is the workload whose sidecar's access log a Suggest action reads.
	From backend.Workload
	// Rejection is Istio's validation message alone, as istiod's webhook words it after
	// "denied the request: configuration is invalid: " ("" when the file is refused for
	// another reason).
	Rejection string
}

// ActionKind names an action by its key in the lab file.
type ActionKind string

// The actions a step can take.
const (
	// Mesh installs Istio, or reconfigures it, with manifests/istio/values.yaml in the given mode.
	Mesh ActionKind = "mesh"
	// Deploy applies an app (an app of labs/apps, or a file beside the lab) and checks
	// that each of its Deployments runs with a sidecar. Apps stay after the lab.
	Deploy ActionKind = "deploy"
	// Apply applies a manifest beside the lab; what a lab applied is deleted at its end.
	Apply ActionKind = "apply"
	// Delete deletes a manifest the lab applied earlier.
	Delete ActionKind = "delete"
	// Call makes a call from a workload and expects a verdict.
	MakeCall ActionKind = "call"
	// Refuse shows a manifest Istio's validation refuses, and its message; nothing is
	// applied. A lab whose refused file Istio accepts is itself refused.
	Refuse ActionKind = "refuse"
	// Suggest reads a workload's sidecar's access log (the calls it made since the lab
	// began), runs `egresslab suggest` on it, and applies the ServiceEntries it writes:
	// the migration from ALLOW_ANY (the migrate lab).
	Suggest ActionKind = "suggest"
)

// Actions lists the action keys, in the order the docs give them.
var Actions = []ActionKind{Mesh, Deploy, Apply, Delete, MakeCall, Refuse, Suggest}

// Call is a call a step makes, and what it expects.
type Call struct {
	// ID names the call's expectation for Go tests that reuse it (optional).
	ID  string
	URL backend.Call
	// From is the workload the call is made from: the client app unless the lab says.
	From   backend.Workload
	Expect outcome.Expect
	// Config is "before" (keep the sidecar's config for this call) or "diff" (show how
	// it changed since the call marked before); only shown with -show-config.
	Config string
	// Propagation: say how long the change before this call took to reach the sidecar.
	Propagation bool
}

// The values a call's config field takes.
const (
	ConfigBefore = "before"
	ConfigDiff   = "diff"
)

// Calls lists every call of the lab with the step it is in (numbered from 1).
func (l *Lab) Calls() []StepCall {
	var out []StepCall
	for i, s := range l.Steps {
		for _, a := range s.Actions {
			if a.Call != nil {
				out = append(out, StepCall{Step: i + 1, Call: a.Call})
			}
		}
	}
	return out
}

// StepCall is a call and the number of its step.
type StepCall struct {
	Step int
	*Call
}

// Expectation is the expectation of the call with this ID; false when there is none.
func (l *Lab) Expectation(id string) (outcome.Expect, bool) {
	for _, c := range l.Calls() {
		if c.ID == id {
			return c.Expect, true
		}
	}
	return outcome.Expect{}, false
}

// CheckNamespaces refuses a lab that would apply an object in a namespace that neither
// every cluster with Istio has (manifest.SystemNamespaces) nor an earlier action of the
// lab creates, with entry (the user's -entry, when given) in place of the lab's entry:
// refused before anything is applied, where the API server would refuse it half-way
// through the lab. The words are those every backend uses (manifest.Set.CheckNamespaces).
func (l *Lab) CheckNamespaces(entry *manifest.Set) error {
	created := map[string]bool{}
	for _, ns := range manifest.SystemNamespaces {
		created[ns] = true
	}
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			set := a.Set
			if entry != nil && a.File == l.Entry && (a.Kind == Apply || a.Kind == Delete) {
				set = entry
			}
			if set == nil || (a.Kind != Apply && a.Kind != Deploy && a.Kind != Delete) {
				continue
			}
			if a.Kind == Delete {
				for _, o := range set.Objects {
					if o.Kind == "Namespace" {
						delete(created, o.Name)
					}
				}
				continue
			}
			if err := set.CheckNamespaces(func(ns string) (bool, error) { return created[ns], nil }); err != nil {
				return fmt.Errorf("%s, line %d (%s %s): %w", l.File, a.Line, a.Kind, a.File, err)
			}
			for _, o := range set.Objects {
				if o.Kind == "Namespace" {
					created[o.Name] = true
				}
			}
		}
	}
	return nil
}
