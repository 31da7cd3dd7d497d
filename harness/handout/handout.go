// Package handout renders a lab file as the walkthrough a workshop attendee follows on a
// real cluster: each step's prose, the YAML applied, the kubectl and helm commands to
// type, and for each call the expected verdict, its evidence, why, what curl shows, and
// a Mermaid diagram of the call's path through the sidecar. It is made from the lab
// file alone, so it says exactly what the lab checks; the labs' own test fails when a
// committed handout is stale.
package handout

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/suggest"
)

// Write renders l's handout to w.
func Write(w io.Writer, l *labfile.Lab) error {
	values, err := manifest.LoadMeshValues()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	h := &writer{b: &b, values: values, dir: l.Dir}
	h.p("<!-- Made from %s by `egresslab lab %s -markdown` (make handouts): edit the lab file, not this page. -->", l.File, l.Name)
	h.p("# %s", l.Title)
	h.p("%s", l.Summary)
	h.p("Run it with egresslab: `make lab LAB=%s` (on Istio's own config generator and simulator, offline), or "+
		"`bin/egresslab lab %s -backend=kind`, which makes a kind cluster with Istio and keeps it for the next lab "+
		"(`bin/egresslab clean` deletes it).", l.Name, l.Name)
	h.p("To follow it by hand on a cluster of your own (kind, or any cluster where you may install Istio), with `kubectl` "+
		"and `helm`, type the commands below from the root of the egresslab repository. The calls are made with curl, "+
		"from Istio's curl sample image (`%s`), in place of egresslab's own client, which egresslab builds and publishes "+
		"nowhere. Where an output follows a command, the command prints it: egresslab's tests type every command of this "+
		"page, in order, on a kind cluster, and compare. Configuration takes a moment to reach the sidecar: a call that "+
		"prints something else at once prints what is shown when typed again.", published.CurlImage)
	if own := labOwnHosts(l); len(own) > 0 {
		h.p("%s exist only in this lab: no public server stands behind them. egresslab's kind cluster serves them "+
			"(`egresslab lab %s -backend=kind` makes one and keeps it; the stand-in answers each connection's first line "+
			"with the line shown below), outside the mesh, and its DNS names them. On a cluster of your own, run a server "+
			"outside the mesh that answers on their port and give them addresses in your cluster's DNS first.",
			strings.Join(own, " and "), l.Name)
	}
	for i, s := range l.Steps {
		h.p("## Step %d. %s", i+1, s.Title)
		if s.Prose != "" {
			h.p("%s", s.Prose)
		}
		for _, a := range s.Actions {
			if err := h.action(a); err != nil {
				return fmt.Errorf("handout of %s, step %d: %w", l.File, i+1, err)
			}
		}
	}
	h.cleanUp()
	_, err = w.Write(b.Bytes())
	return err
}

type writer struct {
	b      *bytes.Buffer
	values manifest.MeshValues
	dir    string // the lab's folder, as commands name it
	// istio: Istio was installed by an earlier step of the page.
	istio bool
	// applied is what the page applied and has not deleted yet, in the order applied,
	// kept as the engine keeps it (harness/lab: Runner.applied): a set a lab applies and
	// deletes is one *manifest.Set.
	applied []*manifest.Set
	// suggested: the page applied the entries egresslab suggest wrote, in these
	// namespaces.
	suggested []string
	// passedThrough counts, by workload, the calls the page expects to go out
	// through PassthroughCluster: the lines a suggest action's log must hold.
	passedThrough map[backend.Workload]int
}

// p writes a paragraph.
func (h *writer) p(format string, args ...any) {
	fmt.Fprintf(h.b, format+"\n\n", args...)
}

func (h *writer) code(lang, text string) {
	h.p("```%s\n%s\n```", lang, strings.TrimRight(text, "\n"))
}

// run writes commands a person types, marked for the by-hand test, and the output they
// print when the page knows it: all of it, or with contains a part.
func (h *writer) run(commands, output string, contains bool) {
	h.code(RunMark, commands)
	switch {
	case output == "":
	case contains:
		h.code(ContainsMark, output)
	default:
		h.code(OutputMark, output)
	}
}

func (h *writer) action(a labfile.Action) error {
	switch a.Kind {
	case labfile.Mesh:
		values, err := h.values.WithOutboundMode(a.Mode)
		if err != nil {
			return fmt.Errorf("mode %s: %w", a.Mode, err)
		}
		set := ""
		if a.Mode != h.values.OutboundMode() {
			set = " --set meshConfig.outboundTrafficPolicy.mode=" + a.Mode
		}
		istiod := fmt.Sprintf("helm upgrade --install %s istio/%s -n %s --version %s -f %s%s --wait",
			published.IstiodRelease, published.IstiodChart, published.Namespace, published.IstioVersion, h.values.Source, set)
		if !h.istio {
			h.p("Install Istio %s from its Helm chart repository, with outboundTrafficPolicy mode **%s** (on a cluster that has "+
				"Istio, the same commands change its mesh config): the `%s` chart (Istio's CRDs), and the `%s` chart with "+
				"`%s`, whose mesh config is", published.IstioVersion, a.Mode, published.BaseChart, published.IstiodChart, h.values.Source)
			h.code("yaml", values.MeshConfigYAML())
			h.run(strings.Join([]string{
				"helm repo add istio " + published.ChartRepo + " --force-update",
				fmt.Sprintf("helm upgrade --install %s istio/%s -n %s --create-namespace --version %s --wait",
					published.BaseRelease, published.BaseChart, published.Namespace, published.IstioVersion),
				istiod}, "\n"), "", false)
		} else {
			h.p("Change the mesh config: outboundTrafficPolicy mode **%s**,", a.Mode)
			h.code("yaml", values.MeshConfigYAML())
			h.run(istiod, "", false)
		}
		h.istio = true
		h.p("Istio's config map now says:")
		h.run("kubectl -n "+published.Namespace+" get configmap istio -o jsonpath='{.data.mesh}' | grep -A1 outboundTrafficPolicy",
			"outboundTrafficPolicy:\n  mode: "+a.Mode, false)
	case labfile.Deploy:
		var refs []string
		for _, o := range a.Set.Objects {
			refs = append(refs, o.Ref())
		}
		text, curl, err := byHand(a.Set)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", a.Set.Source, err)
		}
		if curl {
			h.p("Deploy what `%s` deploys (%s), with Istio's curl sample image in place of egresslab's client, "+
				"and check that each pod runs with its `istio-proxy` sidecar (READY 2/2 in `kubectl get pods`):", a.Set.Source, strings.Join(refs, ", "))
			h.run("kubectl apply -f - <<'EOF'\n"+strings.TrimRight(text, "\n")+"\nEOF", "", false)
		} else {
			h.p("Deploy `%s` (%s), and check that each pod runs with its `istio-proxy` sidecar (READY 2/2 in `kubectl get pods`):",
				a.Set.Source, strings.Join(refs, ", "))
			h.run("kubectl apply -f "+a.Set.Source, "", false)
		}
		for _, o := range a.Set.Objects {
			if o.Kind == "Deployment" {
				h.run(fmt.Sprintf("kubectl -n %s rollout status deploy/%s --timeout=3m", o.Namespace, o.Name),
					fmt.Sprintf("deployment %q successfully rolled out", o.Name), true)
			}
		}
	case labfile.Apply:
		h.p("Apply `%s`:", a.Set.Source)
		h.code("yaml", a.Set.YAML())
		h.run("kubectl apply "+a.Set.NamespaceFlag()+"-f "+a.Set.Source, "", false)
		h.applied = append(h.applied, a.Set)
	case labfile.Delete:
		h.p("Delete `%s`:", a.Set.Source)
		h.run("kubectl delete "+a.Set.NamespaceFlag()+"-f "+a.Set.Source, "", false)
		h.applied = slices.DeleteFunc(h.applied, func(s *manifest.Set) bool { return s == a.Set })
	case labfile.MakeCall:
		h.call(a.Call)
	case labfile.Suggest:
		h.p("Turn %s's sidecar's access log into ServiceEntries with `egresslab suggest` (`make` builds it into `bin/`: "+
			"put that folder on your `PATH`), and apply them. suggest writes the entries on its standard output, and what it read "+
			"and each entry on its standard error; it writes nothing unless every call it read, replayed with the entries "+
			"under REGISTRY_ONLY on Istio's simulator, is allowed:", a.From)
		if n := h.passedThrough[a.From]; n > 0 {
			// Envoy flushes its access log every second: wait for the last call's line.
			h.p("First, the log shows the %s through PassthroughCluster (Envoy writes its access log every second):", narrate.Count(n, "call"))
			h.run(fmt.Sprintf("kubectl -n %s logs deploy/%s -c istio-proxy | grep -c %s", a.From.Namespace, a.From.Name, outcome.PassthroughCluster),
				strconv.Itoa(n), false)
		}
		h.run(lab.SuggestCommand(a.From), "serviceentry.networking.istio.io/", true)
		if !slices.Contains(h.suggested, a.From.Namespace) {
			h.suggested = append(h.suggested, a.From.Namespace)
		}
	case labfile.Refuse:
		file := path.Join(h.dir, a.File)
		h.p("Try to apply `%s`:", file)
		h.code("yaml", a.Text)
		refusal := ""
		if a.Rejection != "" {
			refusal = "denied the request: configuration is invalid: " + a.Rejection
		}
		h.run(a.Command, refusal, true)
		h.p("Istio's validation refuses it (istiod's validating webhook), and nothing is applied. egresslab checks the same " +
			"before it applies anything, and says:")
		h.code("text", a.Refusal)
	}
	return nil
}

// cleanUp ends the page with what undoes it, so that the next lab starts where the
// workshop expects: Istio and the apps stay; what the lab applied goes.
func (h *writer) cleanUp() {
	h.p("## Clean up")
	if len(h.applied) == 0 && len(h.suggested) == 0 {
		h.p("This lab leaves nothing behind but Istio and the apps it deployed, which the next lab uses as they are.")
	} else {
		h.p("Delete what this lab applied; Istio and the apps stay for the next lab:")
		var cmds []string
		for _, ns := range slices.Backward(h.suggested) {
			cmds = append(cmds, fmt.Sprintf("kubectl delete serviceentries -n %s -l %s=%s", ns, suggest.ManagedByLabel, suggest.ManagedBy))
		}
		for _, set := range slices.Backward(h.applied) {
			cmds = append(cmds, "kubectl delete --ignore-not-found "+set.NamespaceFlag()+"-f "+set.Source)
		}
		h.run(strings.Join(cmds, "\n"), "", false)
	}
	h.p("At the end of the workshop, `helm uninstall %s %s -n %s` removes Istio (and its CRDs, with every Istio object), "+
		"and `kubectl delete namespace` each namespace the labs deployed into removes the apps.",
		published.IstiodRelease, published.BaseRelease, published.Namespace)
}

func (h *writer) call(c *labfile.Call) {
	e := c.Expect
	if c.URL.Method != "" {
		h.p("Call `%s` with method %s from %s:", c.URL, c.URL.Method, c.From)
	} else {
		h.p("Call `%s` from %s:", c.URL, c.From)
	}
	if e.Reason == outcome.ReasonPassthrough {
		if h.passedThrough == nil {
			h.passedThrough = map[backend.Workload]int{}
		}
		h.passedThrough[c.From]++
	}
	output, _ := curlPrints(e, c.URL)
	h.run(curlCommand(c), output, false)
	verdict := "**" + string(e.Kind) + "**"
	if e.Reason != "" {
		verdict += " (" + e.Reason + ")"
	}
	h.p("Expected: %s. %s", verdict, curlSays(e, c.URL))
	// The evidence the lab expects, listed as the narration lists a verdict's.
	ev := outcome.Evidence{Listener: e.Listener, RouteConfig: e.RouteConfig, VirtualHost: e.VirtualHost, Cluster: e.Cluster,
		UpstreamSNI: e.UpstreamSNI}
	if g := e.Gateway; g != nil {
		ev.GatewayName, _, _ = dataplane.OutboundService(e.Cluster)
		ev.Gateway = &outcome.Evidence{Listener: g.Listener, RouteConfig: g.RouteConfig, VirtualHost: g.VirtualHost, Cluster: g.Cluster}
	}
	var rows []string
	for _, f := range ev.Fields() {
		// A pipe splits a table's cell even inside a code span, unless escaped.
		rows = append(rows, fmt.Sprintf("| %s | `%s` |", strings.TrimSpace(f[0]), strings.ReplaceAll(f[1], "|", `\|`)))
	}
	if len(rows) > 0 {
		where := "the sidecar's config"
		if ev.Gateway != nil {
			where = "the sidecar's and the gateway's config"
		}
		h.p("The evidence, in %s:\n\n| what the call matches | name |\n| --- | --- |\n%s", where, strings.Join(rows, "\n"))
	}
	ev.Status = e.Status
	v := outcome.Verdict{Kind: e.Kind, Reason: e.Reason, Evidence: ev}
	h.p("%s", lab.Explain(v, c.URL))
	h.code("mermaid", Diagram(e, c.URL))
	logs := fmt.Sprintf("kubectl -n %s logs deploy/%s -c istio-proxy --tail 1", c.From.Namespace, c.From.Name)
	if shows, ok := sidecarLogShows(e); ok {
		h.p("The sidecar's access log says it (its last line is this call's; it can take a moment to appear):")
		h.run(logs, shows, true)
	} else {
		h.p("The sidecar's access log has a line for the call: `%s`.", logs)
	}
	_, port := c.URL.Dialed()
	h.p("`istioctl proxy-config listeners deploy/%s -n %s --port %d` shows the listener.", c.From.Name, c.From.Namespace, port)
	if e.Gateway != nil {
		host, _, _ := dataplane.OutboundService(e.Cluster)
		name, namespace, _ := dataplane.ServiceOf(host)
		h.p("The gateway's own access log names the cluster it chose: `kubectl -n %s logs deploy/%s --tail 1`.", namespace, name)
	}
	if c.Config == labfile.ConfigDiff {
		h.p("To see what changed in the sidecar's config, compare `istioctl proxy-config all deploy/%s -n %s -o yaml` before the change and now "+
			"(egresslab shows it as a diff with `-show-config`).", c.From.Name, c.From.Namespace)
	}
}

// sidecarLogShows is what the calling sidecar's access-log line for a call with this
// expectation holds, in Istio's default format (… %RESPONSE_CODE% %RESPONSE_FLAGS%
// %RESPONSE_CODE_DETAILS% … %UPSTREAM_CLUSTER_RAW% …), by the rule the kind backend
// checks a real call's line with (backend.AccessLogEntry.Mismatch); ok is false when
// the expectation names nothing a log shows (backend.ChecksLog).
func sidecarLogShows(e outcome.Expect) (string, bool) {
	switch {
	case !backend.ChecksLog(e):
		return "", false
	case e.Gateway == nil && e.Reason == outcome.ReasonBlockAll:
		return "502 - direct_response", true
	case e.Gateway == nil && e.Reason == outcome.ReasonNoCluster:
		return "503 NC", true
	case e.Cluster != "":
		return e.Cluster, true
	}
	return "", false
}

// curlSays says what curl prints for a call with this expectation on a real cluster,
// and why.
func curlSays(e outcome.Expect, c backend.Call) string {
	switch {
	case c.TCP() && e.Reason == outcome.ReasonBlackHole:
		return "curl prints nothing and exits with code 56: the connection is reset."
	case c.TCP() && e.Kind == outcome.Allowed:
		return "curl prints the database's answer: the connection left the mesh."
	case e.Reason == outcome.ReasonBlackHole && c.Proxy != nil:
		return "curl gets no response (000) and exits with code 56: the connection to the proxy is reset before it answers the CONNECT."
	case e.Reason == outcome.ReasonBlackHole && c.HTTPS():
		return "curl gets no response (000) and exits with code 35: the connection is reset during the TLS handshake."
	case e.Reason == outcome.ReasonBlackHole:
		return "curl gets no response (000) and exits with code 56: the connection is reset."
	case e.Status != 0:
		return fmt.Sprintf("curl prints %d.", e.Status)
	case e.Kind == outcome.Allowed && e.Reason == outcome.ReasonPassthrough && c.HTTPS():
		return "curl prints the host's own status: the TLS session is the client's, end to end."
	case e.Kind == outcome.Allowed:
		return "curl prints the status of whatever server the call reaches: it leaves the mesh."
	}
	return ""
}

// labOwnHosts are the hosts the lab calls, or calls through, that exist only in the
// labs (site.LabHosts), in the order first called.
func labOwnHosts(l *labfile.Lab) []string {
	var own []string
	for _, s := range l.Steps {
		for _, a := range s.Actions {
			if a.Call == nil {
				continue
			}
			dialed, _ := a.Call.URL.Dialed() // a proxy's host, for a call through one
			for _, h := range []string{dialed, a.Call.URL.Host()} {
				if slices.Contains(site.LabHosts, h) && !slices.Contains(own, h) {
					own = append(own, h)
				}
			}
		}
	}
	return own
}
