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
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/dataplane"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
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
		"`bin/egresslab lab %s -backend=kind` on a real cluster. To follow it by hand on your own cluster with Istio, "+
		"type the commands below from the root of the egresslab repository.", l.Name, l.Name)
	for i, s := range l.Steps {
		h.p("## Step %d. %s", i+1, s.Title)
		if s.Prose != "" {
			h.p("%s", s.Prose)
		}
		for _, a := range s.Actions {
			h.action(a)
		}
	}
	_, err = w.Write(b.Bytes())
	return err
}

type writer struct {
	b      *bytes.Buffer
	values manifest.MeshValues
	dir    string // the lab's folder, as commands name it
}

// p writes a paragraph.
func (h *writer) p(format string, args ...any) {
	fmt.Fprintf(h.b, format+"\n\n", args...)
}

func (h *writer) code(lang, text string) {
	h.p("```%s\n%s\n```", lang, strings.TrimRight(text, "\n"))
}

func (h *writer) action(a labfile.Action) {
	switch a.Kind {
	case labfile.Mesh:
		values, err := h.values.WithOutboundMode(a.Mode)
		if err != nil {
			h.p("(mode %s: %v)", a.Mode, err)
			return
		}
		cmd := "helm upgrade --install istiod istio/istiod -n istio-system -f " + h.values.Source
		if a.Mode != h.values.OutboundMode() {
			cmd += " --set meshConfig.outboundTrafficPolicy.mode=" + a.Mode
		}
		h.p("Install Istio (or change its mesh config) with outboundTrafficPolicy mode **%s**: the mesh config of `%s`,", a.Mode, h.values.Source)
		h.code("yaml", values.MeshConfigYAML())
		h.code("sh", cmd+"\nkubectl -n istio-system get configmap istio -o jsonpath='{.data.mesh}' | grep -A1 outboundTrafficPolicy")
	case labfile.Deploy:
		var refs []string
		for _, o := range a.Set.Objects {
			refs = append(refs, o.Ref())
		}
		h.p("Deploy `%s` (%s), and check that each pod runs with its `istio-proxy` sidecar (READY 2/2):", a.Set.Source, strings.Join(refs, ", "))
		cmds := []string{"kubectl apply -f " + a.Set.Source}
		for _, o := range a.Set.Objects {
			if o.Kind == "Deployment" {
				cmds = append(cmds, fmt.Sprintf("kubectl -n %s rollout status deploy/%s && kubectl -n %s get pods", o.Namespace, o.Name, o.Namespace))
			}
		}
		h.code("sh", strings.Join(cmds, "\n"))
	case labfile.Apply:
		h.p("Apply `%s`:", a.Set.Source)
		h.code("yaml", a.Set.YAML())
		h.code("sh", "kubectl apply "+a.Set.NamespaceFlag()+"-f "+a.Set.Source)
	case labfile.Delete:
		h.p("Delete `%s`:", a.Set.Source)
		h.code("sh", "kubectl delete "+a.Set.NamespaceFlag()+"-f "+a.Set.Source)
	case labfile.MakeCall:
		h.call(a.Call)
	case labfile.Refuse:
		file := path.Join(h.dir, a.File)
		h.p("Try to apply `%s`:", file)
		h.code("yaml", a.Text)
		h.code("sh", a.Command)
		h.p("Istio's validation refuses it (istiod's validating webhook on a cluster; egresslab checks the same before it applies anything), and nothing is applied:")
		h.code("text", a.Refusal)
	}
}

func (h *writer) call(c *labfile.Call) {
	e := c.Expect
	h.p("Call `%s` from %s:", c.URL, c.From)
	h.code("sh", c.URL.KubectlCommand(c.From))
	verdict := "**" + string(e.Kind) + "**"
	if e.Reason != "" {
		verdict += " (" + e.Reason + ")"
	}
	h.p("Expected: %s. %s", verdict, CurlSees(e, c.URL))
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
	h.p("See it on the cluster: the sidecar's access log names the cluster (`kubectl -n %s logs deploy/%s -c istio-proxy --tail 1`), "+
		"and `istioctl proxy-config listeners deploy/%s -n %s --port %d` the listener.", c.From.Namespace, c.From.Name, c.From.Name, c.From.Namespace, c.URL.Port())
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

// CurlSees says what curl, from a pod in the mesh, shows for a call with this
// expectation on a real cluster.
func CurlSees(e outcome.Expect, c backend.Call) string {
	code := "`curl -sS -o /dev/null -w '%{http_code}\\n' " + c.String() + "`"
	switch {
	case e.Reason == outcome.ReasonBlackHole && c.HTTPS():
		return "With curl from a pod in the mesh, " + code + " fails with exit code 35: the connection is reset during the TLS handshake."
	case e.Reason == outcome.ReasonBlackHole:
		return "With curl from a pod in the mesh, " + code + " fails with exit code 56: the connection is reset."
	case e.Status != 0:
		return fmt.Sprintf("With curl from a pod in the mesh, %s prints %d.", code, e.Status)
	case e.Kind == outcome.Allowed && e.Reason == outcome.ReasonPassthrough && c.HTTPS():
		return "With curl from a pod in the mesh, " + code + " prints the host's own status: the TLS session is the client's, end to end."
	case e.Kind == outcome.Allowed:
		return "With curl from a pod in the mesh, " + code + " prints the status of whatever server the call reaches: it leaves the mesh."
	}
	return ""
}
