// Package lab is the one engine every lab runs on: it carries out a lab file's steps
// (harness/labfile) on any backend, tells them as a story on a narrator, and checks
// each call against the verdict and evidence the lab states. The narrated walkthrough
// (egresslab lab), the scenarios (go test ./scenarios/...) and the handouts are all
// made from the same lab file through this package.
//
// The backend reaches each call's verdict; this package decides whether each step
// passed, and records it in its Result. A call passes when outcome.Expect.Check (and,
// where sidecars log, the access log) finds no mismatch with what the lab states, or,
// with -url or -entry, with what Istio's simulator computes. A step fails when one of
// its calls does not pass or one of its actions cannot be carried out; a call the
// backend cannot make as Envoy would is skipped. harness/narrate only prints what this
// package hands it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Options change what a lab applies and shows.
type Options struct {
	// Entry replaces the lab's entry (the manifest its `entry:` names).
	Entry *manifest.Set
	// URL replaces the lab's main call (its `url:`), and the same host and path over
	// HTTPS, and the host wherever a step's title or prose names it.
	URL string
	// ShowConfig prints the sidecar's config for the calls the lab marks, before and
	// after a change, as a diff.
	ShowConfig bool
	// Propagation bounds how long a call waits for a change to reach the sidecar
	// (backend.DefaultTimeouts when 0).
	Propagation time.Duration
}

// Result is what a run saw: each call's verdict, and every step that did not behave as
// expected (none when all did). The engine fills it; it is the run's verdict.
type Result struct {
	Calls []CallResult
	// Propagation is how long the first call marked `propagation: true` waited for the
	// change before it to reach the sidecar.
	Propagation time.Duration
	// Failures lists, in order, "step N: ..." for each call whose verdict or evidence was
	// not the one expected (its mismatches, joined by "; "), each step that could not be
	// carried out, and what the lab applied that it could not delete at its end. The lab
	// passed when it is empty.
	Failures []string
	// Skipped lists, as "step N: the call (what it needs): why", the calls this backend
	// could not make as Envoy would. A skipped call is not a failure.
	Skipped []string
}

// Passed reports whether every step behaved as expected.
func (r *Result) Passed() bool { return len(r.Failures) == 0 }

// CallResult is one call a step made, its verdict, and how it differed from the
// verdict expected (nothing when it passed).
type CallResult struct {
	Step int
	URL  string
	// Call is the call as made: its URL, and the address or proxy it names.
	Call       backend.Call
	Verdict    outcome.Verdict
	Mismatches []string
}

// Verdict is the verdict of the call to url in step, and whether that call was made.
func (r *Result) Verdict(step int, url string) (outcome.Verdict, bool) {
	for _, c := range r.Calls {
		if c.Step == step && c.URL == url {
			return c.Verdict, true
		}
	}
	return outcome.Verdict{}, false
}

// Run walks through the lab l on b, telling the story on n, and deletes what it applied
// at the end. The error is for a lab that was stopped (ctx ended) or could not start;
// a step that did not behave as expected is in Result.Failures and the steps after it
// run, while a step that could not be carried out stops the lab there and is counted
// as a failure.
func Run(ctx context.Context, b backend.Backend, l *labfile.Lab, n *narrate.Narrator, opts Options) (*Result, error) {
	r, err := Start(b, l, n, opts)
	if err != nil {
		return nil, err
	}
	defer r.Cleanup(ctx)
	for i := range r.lab.Steps {
		if err := n.Pause(ctx); err != nil {
			return r.Result(), fmt.Errorf("lab stopped: %w", err)
		}
		if err := r.Step(ctx, i); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return r.Result(), fmt.Errorf("lab stopped: %w", err)
			}
			// Each step builds on the one before: after a step that could not be
			// carried out, the rest would only repeat its failure.
			r.failed(i+1, err)
			break
		}
	}
	if err := r.Cleanup(ctx); err != nil {
		r.failed(r.step, err)
	}
	n.Finish(r.res.Failures, r.res.Skipped)
	return r.Result(), nil
}

// A Runner is one run of a lab, step by step: Run drives it for the narrated lab, and
// harness/steps drives it one e2e-framework assessment per step.
type Runner struct {
	b    backend.Backend
	lab  *labfile.Lab
	n    *narrate.Narrator
	opts Options
	// derived: the lab's expectations describe its own entry and url; with either
	// replaced, each call is expected to get what Istio's simulator computes for the
	// same mesh and objects: ref, fed every install, apply and delete the run makes.
	derived bool
	ref     *sim.Backend

	applied []*manifest.Set // in order, not yet deleted
	res     Result
	step    int // the step carried out last (from 1), 0 before the first

	configBefore  string
	changedBefore []string // kinds applied or deleted since the config marked before
	cleaned       bool
	// began is when the run started: a suggest action reads the access log from then.
	began time.Time
}

// Start checks the options against the lab and prepares a run; nothing is applied.
func Start(b backend.Backend, l *labfile.Lab, n *narrate.Narrator, opts Options) (*Runner, error) {
	l, derived, err := Override(l, opts)
	if err != nil {
		return nil, err
	}
	if opts.Propagation == 0 {
		opts.Propagation = backend.DefaultTimeouts().Propagation
	}
	r := &Runner{b: b, lab: l, n: n, opts: opts, derived: derived, began: time.Now()}
	if derived {
		r.ref = sim.New()
	}
	return r, nil
}

// reference does to the simulator what the run just did to its backend, when the
// expectations are derived from it.
func (r *Runner) reference(what string, do func(backend.Backend) error) error {
	if r.ref == nil {
		return nil
	}
	if err := do(r.ref); err != nil {
		return fmt.Errorf("Istio's simulator, which says what each call should get with the lab's url or entry replaced: %s: %w", what, err)
	}
	return nil
}

// Result is what the run has seen so far.
func (r *Runner) Result() *Result { return &r.res }

// failed records that step (from 1) could not be carried out, and tells it.
func (r *Runner) failed(step int, err error) {
	r.res.Failures = append(r.res.Failures, fmt.Sprintf("step %d: %v", step, err))
	r.n.Failed(err)
}

// Step carries out step i (from 0): its heading and prose, then each action. It
// returns an error when an action could not be carried out (the caller decides what
// that means for the run); a call whose verdict was not the expected one is a failure
// recorded in the Result, not an error, and the step goes on.
func (r *Runner) Step(ctx context.Context, i int) error {
	s := r.lab.Steps[i]
	r.step = i + 1
	r.n.Step(s.Title, s.Prose)
	for _, a := range s.Actions {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.act(ctx, i+1, a); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) act(ctx context.Context, step int, a labfile.Action) error {
	switch a.Kind {
	case labfile.Mesh:
		return r.installMesh(ctx, a.Mode)
	case labfile.Deploy:
		return r.deploy(ctx, a.Set)
	case labfile.Apply:
		return r.apply(ctx, r.setOf(a))
	case labfile.Delete:
		return r.delete(ctx, r.setOf(a))
	case labfile.MakeCall:
		return r.call(ctx, step, a.Call)
	case labfile.Suggest:
		return r.suggestEntries(ctx, a.From)
	case labfile.Refuse:
		r.n.Block(path.Join(r.lab.Dir, a.File), a.Text)
		r.n.Command(a.Command)
		r.n.Say("Istio's validation refuses it, so nothing is applied: egresslab checks every manifest with Istio's own " +
			"validation before it applies any, and on a cluster istiod's validating webhook runs the same checks.")
		r.n.Block("refused", a.Refusal)
		return nil
	}
	return fmt.Errorf("%s: unknown action %q", r.lab.File, a.Kind)
}

func (r *Runner) installMesh(ctx context.Context, mode string) error {
	values, err := manifest.LoadMeshValues()
	if err != nil {
		return err
	}
	cmd := "helm upgrade --install istiod istio/istiod -n istio-system -f " + values.Source
	if mode != values.OutboundMode() {
		cmd += " --set meshConfig.outboundTrafficPolicy.mode=" + mode
	}
	if values, err = values.WithOutboundMode(mode); err != nil {
		return err
	}
	r.n.Block(values.Source, values.MeshConfigYAML())
	r.n.Command(cmd)
	if err := r.b.InstallMesh(ctx, values); err != nil {
		return fmt.Errorf("install the mesh (%s): %w", mode, err)
	}
	if err := r.reference("install the mesh", func(b backend.Backend) error { return b.InstallMesh(ctx, values) }); err != nil {
		return err
	}
	r.n.Say("The mesh config's outboundTrafficPolicy.mode is %s.", values.OutboundMode())
	return nil
}

// deploy applies an app and checks that each of its Deployments has a sidecar: a call
// from a pod without one proves nothing about the mesh.
func (r *Runner) deploy(ctx context.Context, set *manifest.Set) error {
	var objects string
	for _, o := range set.Objects {
		objects += o.Ref() + "\n"
	}
	r.n.Block(set.Source, objects)
	r.n.Command("kubectl apply -f " + set.Source)
	if err := r.b.Apply(ctx, set); err != nil {
		return fmt.Errorf("deploy %s: %w", set.Source, err)
	}
	if err := r.reference("deploy "+set.Source, func(b backend.Backend) error { return b.Apply(ctx, set) }); err != nil {
		return err
	}
	for _, w := range workloads(set) {
		sc, err := r.b.Sidecar(ctx, w)
		if err != nil {
			return fmt.Errorf("check the sidecar of %s: %w", w, err)
		}
		how, err := narrate.SidecarSentence(sc)
		if err != nil {
			return err
		}
		r.n.Say("Sidecar: %s.", how)
	}
	return nil
}

func workloads(set *manifest.Set) []backend.Workload {
	var out []backend.Workload
	for _, o := range set.Objects {
		if o.Kind == "Deployment" {
			out = append(out, backend.Workload{Namespace: o.Namespace, Name: o.Name})
		}
	}
	return out
}

func (r *Runner) apply(ctx context.Context, set *manifest.Set) error {
	r.n.Block(set.Source, set.YAML())
	r.n.Command("kubectl apply " + set.NamespaceFlag() + "-f " + set.Source)
	if err := r.b.Apply(ctx, set); err != nil {
		return fmt.Errorf("apply %s: %w", set.Source, err)
	}
	if err := r.reference("apply "+set.Source, func(b backend.Backend) error { return b.Apply(ctx, set) }); err != nil {
		return err
	}
	if !slices.Contains(r.applied, set) {
		r.applied = append(r.applied, set)
	}
	r.changed(set)
	return nil
}

func (r *Runner) delete(ctx context.Context, set *manifest.Set) error {
	r.n.Command("kubectl delete " + set.NamespaceFlag() + "-f " + set.Source)
	if err := r.b.Delete(ctx, set); err != nil {
		return fmt.Errorf("delete %s: %w", set.Source, err)
	}
	if err := r.reference("delete "+set.Source, func(b backend.Backend) error { return b.Delete(ctx, set) }); err != nil {
		return err
	}
	r.applied = slices.DeleteFunc(r.applied, func(s *manifest.Set) bool { return s == set })
	r.changed(set)
	return nil
}

// setOf is what an apply or delete action applies: its file, or the user's -entry
// where the file is the lab's entry.
func (r *Runner) setOf(a labfile.Action) *manifest.Set {
	if r.opts.Entry != nil && a.File == r.lab.Entry {
		return r.opts.Entry
	}
	return a.Set
}

func (r *Runner) changed(set *manifest.Set) {
	for _, o := range set.Objects {
		if !slices.Contains(r.changedBefore, o.Kind) {
			r.changedBefore = append(r.changedBefore, o.Kind)
		}
	}
}

// expected is what a call must get: what the lab states, or, with its entry or url
// replaced, what Istio's simulator computes for the same mesh and objects (its
// verdict, and the listener, route and cluster it matched).
func (r *Runner) expected(ctx context.Context, c *labfile.Call) (outcome.Expect, error) {
	if !r.derived {
		return c.Expect, nil
	}
	v, err := r.ref.Call(ctx, c.From, c.URL)
	if err != nil {
		return outcome.Expect{}, fmt.Errorf("Istio's simulator, for what %s should get: %w", c.URL, err)
	}
	return outcome.ExpectOf(v), nil
}

// needs are the data-plane behaviours an expectation's verdict depends on, beyond a
// sidecar's routing.
func needs(want outcome.Expect) []backend.Need {
	var out []backend.Need
	if want.UpstreamSNI != "" {
		out = append(out, backend.TLSOrigination)
	}
	if want.Gateway != nil {
		out = append(out, backend.EgressGateway)
	}
	return out
}

func (r *Runner) call(ctx context.Context, step int, c *labfile.Call) error {
	want, err := r.expected(ctx, c)
	if err != nil {
		return err
	}
	r.n.Command(c.URL.KubectlCommand(c.From))
	for _, need := range needs(want) {
		if why := backend.CannotDo(r.b, need); why != "" {
			what := c.URL.String() + " (it needs " + string(need) + ")"
			r.res.Skipped = append(r.res.Skipped, fmt.Sprintf("step %d: %s: %s", step, what, why))
			r.n.Skip(what, why)
			return nil
		}
	}
	since := time.Now()
	v, waited, err := backend.AwaitExpected(ctx, r.b, c.From, c.URL, want, r.opts.Propagation)
	if err != nil && v.Kind == "" {
		return err
	}
	mismatches := want.Check(v)
	logLine, logMismatch, err := r.accessLog(ctx, c, want, v, since)
	if err != nil {
		mismatches = append(mismatches, err.Error())
	} else if logMismatch != "" {
		mismatches = append(mismatches, logMismatch)
	}
	r.res.Calls = append(r.res.Calls, CallResult{Step: step, URL: c.URL.String(), Call: c.URL, Verdict: v, Mismatches: mismatches})
	if len(mismatches) > 0 {
		r.res.Failures = append(r.res.Failures, fmt.Sprintf("step %d: %s", step, strings.Join(mismatches, "; ")))
	}
	r.n.Verdict(v, want.Kind, mismatches)
	if r.derived && c.Expect.Kind != "" && c.Expect.Kind != want.Kind {
		// The step's prose tells the lab's own story; say where the user's options
		// change its ending, so that "allowed" above a BLOCKED verdict is not a puzzle.
		r.n.Say("The lab's text expects %s here, for its own url and entry; with yours, Istio's simulator computes %s.%s",
			c.Expect.Kind, want.Kind, entryHint(r.lab, r.opts, c.URL))
	}
	if logLine != "" {
		r.n.Block("the sidecar's access log", logLine)
	}
	r.n.Say("%s", Explain(v, c.URL))
	if c.Propagation {
		r.sayPropagation(waited)
	}
	if r.opts.ShowConfig && c.Config != "" {
		cfg, err := r.b.SidecarConfig(ctx, c.From, c.URL)
		if err != nil {
			return fmt.Errorf("read the sidecar's config: %w", err)
		}
		switch c.Config {
		case labfile.ConfigBefore:
			r.configBefore, r.changedBefore = cfg, nil
		case labfile.ConfigDiff:
			r.n.Diff("The sidecar's config for this call, before and after the "+strings.Join(r.changedBefore, " and "),
				"before", r.configBefore, "after", cfg)
		}
	}
	return nil
}

// accessLog reads, on a backend with a real sidecar, the access-log line of the call:
// the cluster it names is read from the data plane rather than its config.
func (r *Runner) accessLog(ctx context.Context, c *labfile.Call, want outcome.Expect, v outcome.Verdict, since time.Time) (line, mismatch string, err error) {
	al, ok := r.b.(backend.AccessLogger)
	if !ok || !backend.ChecksLog(want) || !v.Evidence.FromCall {
		return "", "", nil
	}
	e, err := al.AccessLogEntry(ctx, c.From, c.URL, v.Evidence.ClientAddress, since)
	if err != nil {
		return "", "", err
	}
	line = e.Line
	if e.Gateway != nil {
		line += "\nthen the egress gateway " + e.GatewayName + ":\n" + e.Gateway.Line
	}
	return line, e.Mismatch(want), nil
}

func (r *Runner) sayPropagation(waited backend.Waited) {
	if r.res.Propagation == 0 {
		r.res.Propagation = waited.Took
	}
	took := waited.Took.Round(time.Millisecond)
	switch i, ok := r.b.(backend.Instant); {
	case ok && i.Instant():
		r.n.Say("%s computes the new config at once (%s to generate it); on a cluster this is how long istiod takes to push it to the sidecar.",
			r.b.Name(), took)
	case waited.Resolution == 0:
		r.n.Say("The first call after the change already saw it: the sidecar had the new config within %s of the "+
			"change (the time that one call took).", took)
	default:
		r.n.Say("The sidecar had the new config %s after the change (the call was repeated every %s by then, "+
			"so the figure is good to within that).", took, waited.Resolution.Round(time.Millisecond))
	}
}

// Cleanup deletes what the lab applied and did not delete, newest first, so that a
// kept cluster is left as the lab found it (the mesh and the deployed apps stay). It
// runs once; it goes on when ctx has ended, since it is how a stopped lab cleans up.
func (r *Runner) Cleanup(ctx context.Context) error {
	if r.cleaned {
		return nil
	}
	r.cleaned = true
	if r.ref != nil {
		defer r.ref.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backend.DefaultTimeouts().Propagation)
	defer cancel()
	var errs []error
	for i := len(r.applied) - 1; i >= 0; i-- {
		if err := r.b.Delete(ctx, r.applied[i]); err != nil {
			errs = append(errs, fmt.Errorf("delete %s, which the lab applied: %w", r.applied[i].Source, err))
		}
	}
	r.applied = nil
	return errors.Join(errs...)
}
