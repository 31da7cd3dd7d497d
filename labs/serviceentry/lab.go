// Package serviceentry is egresslab's first lab. Istio runs with
// outboundTrafficPolicy REGISTRY_ONLY, so a client in the mesh may only call hosts the
// mesh knows. Its call to the public API jsonplaceholder.typicode.com is blocked; a
// ServiceEntry registers that host; the same call now succeeds.
//
// Read Run from top to bottom: each step is one paragraph of the story, and the same
// code runs on the offline simulator and on a real cluster.
package serviceentry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/labs/apps"
	"github.com/egresslab/egresslab/manifests"
)

// DefaultURL is the call the lab makes from the client.
const DefaultURL = "http://jsonplaceholder.typicode.com/todos/1"

// Options change what the lab applies and shows.
type Options struct {
	// Entry is the ServiceEntry to apply; the seed's (manifests/serviceentry/) when nil.
	Entry *manifest.Set
	// URL is the plain-HTTP call to make; DefaultURL when empty.
	URL string
	// ShowConfig prints the sidecar's config for the call before and after the entry, as a diff.
	ShowConfig bool
	// Propagation bounds how long to wait for a change to reach the sidecar
	// (backend.DefaultTimeouts when 0).
	Propagation time.Duration
}

// Result is what each step that made a call saw; Failures is empty when every step
// behaved as expected.
type Result struct {
	Verdicts    map[string]outcome.Verdict
	Propagation time.Duration // from applying the entry to the first allowed call
	Failures    []string
}

// The steps that make a call, as keys of Result.Verdicts.
const (
	StepBlocked      = "blocked"
	StepAllowed      = "allowed"
	StepBlockedAgain = "blocked-again"
	StepHTTPSBlocked = "https"
)

// Run walks through the lab on b, telling the story on n.
func Run(ctx context.Context, b backend.Backend, n *narrate.Narrator, opts Options) (*Result, error) {
	lab, err := newLab(b, n, opts)
	if err != nil {
		return nil, err
	}
	steps := []func(context.Context) error{
		lab.installMesh,
		lab.deployClient,
		lab.callBlocked,
		lab.applyEntry,
		lab.callAllowed,
		lab.deleteEntry,
		lab.callHTTPS,
	}
	for _, step := range steps {
		if err := n.Pause(ctx); err != nil {
			return lab.result(), fmt.Errorf("lab stopped: %w", err)
		}
		if err := step(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return lab.result(), fmt.Errorf("lab stopped: %w", err)
			}
			// Each step builds on the one before: after a step that could not be
			// carried out, the rest would only repeat its failure.
			n.Fail(err)
			break
		}
	}
	n.Finish()
	return lab.result(), nil
}

type lab struct {
	b      backend.Backend
	n      *narrate.Narrator
	opts   Options
	mesh   manifest.MeshValues
	app    *manifest.Set
	entry  *manifest.Set
	http   backend.Call
	https  backend.Call
	client backend.Workload

	res          Result
	configBefore string
}

// CheckOptions refuses options the lab cannot run with, before any backend is opened.
func CheckOptions(opts Options) error {
	url := opts.URL
	if url == "" {
		url = DefaultURL
	}
	c, err := backend.ParseCall(url)
	if err != nil {
		return err
	}
	if c.HTTPS() {
		return fmt.Errorf("-url %s: give the plain http:// URL; step 7 makes the https:// call itself", url)
	}
	return nil
}

func newLab(b backend.Backend, n *narrate.Narrator, opts Options) (*lab, error) {
	if err := CheckOptions(opts); err != nil {
		return nil, err
	}
	l := &lab{b: b, n: n, opts: opts, client: apps.Client,
		res: Result{Verdicts: map[string]outcome.Verdict{}}}
	if l.opts.Propagation == 0 {
		l.opts.Propagation = backend.DefaultTimeouts().Propagation
	}
	var err error
	if l.mesh, err = manifest.LoadMeshValues(); err != nil {
		return nil, err
	}
	if l.app, err = manifest.LoadEmbedded(manifests.ClientApp, l.client.Namespace); err != nil {
		return nil, err
	}
	l.entry = opts.Entry
	if l.entry == nil {
		if l.entry, err = manifest.LoadEmbedded(manifests.SeedServiceEntry, l.client.Namespace); err != nil {
			return nil, err
		}
	}
	url := opts.URL
	if url == "" {
		url = DefaultURL
	}
	if l.http, err = backend.ParseCall(url); err != nil {
		return nil, err
	}
	https := *l.http.URL
	https.Scheme, https.Host = "https", l.http.Host()
	l.https = backend.Call{URL: &https}
	return l, nil
}

func (l *lab) result() *Result {
	l.res.Failures = l.n.Failures()
	return &l.res
}

// Step 1: Istio, with a mesh that only lets out what is in its registry.
func (l *lab) installMesh(ctx context.Context) error {
	l.n.Step("A mesh that only lets out what it knows",
		"Istio's outboundTrafficPolicy decides what a sidecar does with a call to a host it does not know. "+
			"ALLOW_ANY (the default) passes it through; REGISTRY_ONLY refuses it. The lab installs Istio with REGISTRY_ONLY.")
	l.n.Block(l.mesh.Source, l.mesh.MeshConfigYAML())
	l.n.Command("helm install istiod istio/istiod -n istio-system -f manifests/istio/values.yaml")
	if err := l.b.InstallMesh(ctx, l.mesh); err != nil {
		return fmt.Errorf("install the mesh: %w", err)
	}
	if mode := l.mesh.OutboundMode(); mode != manifest.RegistryOnly {
		return fmt.Errorf("%s sets outboundTrafficPolicy.mode %s: this lab needs %s", l.mesh.Source, mode, manifest.RegistryOnly)
	}
	l.n.Say("The mesh config's outboundTrafficPolicy.mode is %s.", l.mesh.OutboundMode())
	return nil
}

// Step 2: the client app, in a namespace whose pods get an istio-proxy sidecar.
func (l *lab) deployClient(ctx context.Context) error {
	l.n.Step("The client app, inside the mesh",
		"The client is a Deployment in namespace "+l.client.Namespace+", labelled for sidecar injection: every call it makes "+
			"leaves through its istio-proxy sidecar, which is where the policy is enforced.")
	var objects string
	for _, o := range l.app.Objects {
		objects += o.Ref() + "\n"
	}
	l.n.Block(l.app.Source, objects)
	l.n.Command("kubectl apply -f " + l.app.Source)
	if err := l.b.Apply(ctx, l.app); err != nil {
		return fmt.Errorf("deploy the client: %w", err)
	}
	sc, err := l.b.Sidecar(ctx, l.client)
	if err != nil {
		return fmt.Errorf("check the client's sidecar: %w", err)
	}
	how, err := narrate.SidecarSentence(sc)
	if err != nil {
		return err
	}
	l.n.Say("Sidecar: %s.", how)
	return nil
}

// Step 3: the call, refused by the sidecar.
func (l *lab) callBlocked(ctx context.Context) error {
	l.n.Step("Call "+l.http.Host()+": blocked",
		"No Service and no ServiceEntry names "+l.http.Host()+", so under REGISTRY_ONLY the sidecar has no route for it.")
	v, err := l.call(ctx, StepBlocked, l.http, l.expect(l.http, false))
	if err != nil {
		return err
	}
	l.n.Say("%s", explain(v, l.http))
	if l.opts.ShowConfig {
		l.configBefore, err = l.b.SidecarConfig(ctx, l.client, l.http)
		if err != nil {
			return fmt.Errorf("read the sidecar's config: %w", err)
		}
	}
	return nil
}

// Step 4: the ServiceEntry that adds the host to the mesh's registry.
func (l *lab) applyEntry(ctx context.Context) error {
	l.n.Step("Register the host with a ServiceEntry",
		"A ServiceEntry adds an external host to the mesh's service registry. Istio then gives every sidecar a route "+
			"and a cluster for it, and REGISTRY_ONLY lets the call out.")
	l.n.Block(l.entry.Source, l.entry.YAML())
	l.n.Command("kubectl apply -n " + l.client.Namespace + " -f " + l.entry.Source)
	if err := l.b.Apply(ctx, l.entry); err != nil {
		return fmt.Errorf("apply %s: %w", l.entry.Source, err)
	}
	return nil
}

// Step 5: the same call, now allowed once the new config reaches the sidecar.
func (l *lab) callAllowed(ctx context.Context) error {
	want := l.expect(l.http, true)
	l.n.Step("Call "+l.http.Host()+" again: allowed",
		"Istio pushes the new route and cluster to the sidecar; the lab repeats the call until the config has arrived.")
	l.n.Command(l.http.KubectlCommand(l.client))
	v, waited, err := backend.Await(ctx, l.b, l.client, l.http, want.Kind, l.opts.Propagation)
	if err != nil && v.Kind == "" {
		return err
	}
	l.res.Propagation = waited.Took
	l.record(StepAllowed, v, want)
	l.n.Say("%s", explain(v, l.http))
	if i, ok := l.b.(backend.Instant); ok && i.Instant() {
		l.n.Say("%s computes the new config at once (%s to generate it); on a cluster this is how long istiod takes to push it to the sidecar.",
			l.b.Name(), waited.Took.Round(time.Millisecond))
	} else if waited.Resolution == 0 {
		l.n.Say("The first call after the apply was already allowed: the sidecar had the new config within %s of the "+
			"entry being applied (the time that one call took).", waited.Took.Round(time.Millisecond))
	} else {
		l.n.Say("The sidecar had the new config %s after the entry was applied (the call was repeated every %s by then, "+
			"so the figure is good to within that).", waited.Took.Round(time.Millisecond), waited.Resolution.Round(time.Millisecond))
	}
	if l.opts.ShowConfig {
		after, err := l.b.SidecarConfig(ctx, l.client, l.http)
		if err != nil {
			return fmt.Errorf("read the sidecar's config: %w", err)
		}
		l.n.Diff("The sidecar's config for this call, before and after the ServiceEntry",
			"before", l.configBefore, "after", after)
	}
	return nil
}

// Step 6: delete the entry, and the host is unknown again.
func (l *lab) deleteEntry(ctx context.Context) error {
	l.n.Step("Delete the ServiceEntry: blocked again",
		"The registry is the whole policy: take the entry away and the sidecar forgets the host.")
	l.n.Command("kubectl delete -n " + l.client.Namespace + " -f " + l.entry.Source)
	if err := l.b.Delete(ctx, l.entry); err != nil {
		return fmt.Errorf("delete %s: %w", l.entry.Source, err)
	}
	want := l.expect(l.http, false)
	l.n.Command(l.http.KubectlCommand(l.client))
	v, _, err := backend.Await(ctx, l.b, l.client, l.http, want.Kind, l.opts.Propagation)
	if err != nil && v.Kind == "" {
		return err
	}
	l.record(StepBlockedAgain, v, want)
	l.n.Say("%s", explain(v, l.http))
	return nil
}

// Step 7: the entry back in place, and HTTPS to port 443.
func (l *lab) callHTTPS(ctx context.Context) error {
	want := l.expect(l.https, true)
	why := "The entry opens the ports it lists and no others."
	if want.Kind == outcome.Blocked {
		why += fmt.Sprintf(" It lists no port %d, so HTTPS stays blocked even with the entry applied.", l.https.Port())
	}
	l.n.Step("HTTPS to port 443, with the entry applied", why)
	l.n.Command("kubectl apply -n " + l.client.Namespace + " -f " + l.entry.Source)
	if err := l.b.Apply(ctx, l.entry); err != nil {
		return fmt.Errorf("apply %s: %w", l.entry.Source, err)
	}
	defer func() { _ = l.b.Delete(context.WithoutCancel(ctx), l.entry) }() // leave the cluster as step 6 left it
	// Wait for the entry's port 80 to be open again, so that a block on 443 is the entry's doing.
	if _, _, err := backend.Await(ctx, l.b, l.client, l.http, l.expect(l.http, true).Kind, l.opts.Propagation); err != nil {
		return fmt.Errorf("re-apply %s: %w", l.entry.Source, err)
	}
	_, err := l.call(ctx, StepHTTPSBlocked, l.https, want)
	if err != nil {
		return err
	}
	l.n.Say("%s", explain(l.res.Verdicts[StepHTTPSBlocked], l.https))
	return nil
}

// call makes c once, shows the verdict against want and records it under step.
func (l *lab) call(ctx context.Context, step string, c backend.Call, want outcome.Expect) (outcome.Verdict, error) {
	l.n.Command(c.KubectlCommand(l.client))
	v, err := l.b.Call(ctx, l.client, c)
	if err != nil {
		return v, fmt.Errorf("call %s: %w", c, err)
	}
	l.record(step, v, want)
	return v, nil
}

func (l *lab) record(step string, v outcome.Verdict, want outcome.Expect) {
	l.res.Verdicts[step] = v
	l.n.Verdict(v, want.Kind, want.Check(v))
}

// expect is what the lab expects of call c: allowed only when the entry is applied and
// it lists c's host and port. Which listener and cluster are involved is the backend's
// to say; the scenarios pin those down.
func (l *lab) expect(c backend.Call, entryApplied bool) outcome.Expect {
	if entryApplied && backend.Opens(l.entry, c) {
		return outcome.Expect{Kind: outcome.Allowed}
	}
	return outcome.Expect{Kind: outcome.Blocked}
}

// explain says in a sentence why the sidecar did what it did.
func explain(v outcome.Verdict, c backend.Call) string {
	switch v.Reason {
	case outcome.ReasonBlockAll:
		return fmt.Sprintf("Port %d has an HTTP listener (a Service in the mesh uses that port), but no virtual host on it "+
			"matches %s, so Envoy's catch-all virtual host block_all answers 502 itself: the call never leaves the pod.", c.Port(), c.Host())
	case outcome.ReasonBlackHole:
		return fmt.Sprintf("No listener knows port %d, so the catch-all listener sends the connection to BlackHoleCluster, "+
			"which resets it: the client sees a reset (for HTTPS, during the TLS handshake).", c.Port())
	case outcome.ReasonRegistered:
		return fmt.Sprintf("The sidecar now has a virtual host for %s and routes the call to the cluster %s, which leads out of the mesh.",
			c.Host(), v.Evidence.Cluster)
	case outcome.ReasonPassthrough:
		return "The host is unknown, but the mesh allows any: PassthroughCluster sends the call on to its original destination."
	case outcome.ReasonUpstream:
		return fmt.Sprintf("%s answered %d through the sidecar.", c.Host(), v.Evidence.Status)
	}
	if v.Kind == outcome.Unreachable {
		return "The mesh let the call out, but it failed beyond the sidecar (" + v.Reason + "): check DNS and internet access."
	}
	return v.String()
}
