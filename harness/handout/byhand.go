package handout

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egresslab/egresslab/apps/client/observe"
	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// published is the Istio release, chart repository and curl image the handouts name.
var published = kind.PublishedRelease()

// ChartRepo is the one URL a handout names that a test may replace: Istio's Helm chart
// repository, for which the by-hand test gives a mirror's (a bundle's server offline).
func ChartRepo() string { return published.ChartRepo }

// byHand is a deploy's manifest as a person types it on their own cluster: every
// container that runs egresslab's client (an image egresslab builds and loads into its
// own kind cluster) runs Istio's curl sample image instead, as samples/curl/curl.yaml
// runs it, with the same name in the same workload: the same namespace, service
// account, labels and Services, so that its sidecar gets the same config. changed says
// whether any container was replaced.
func byHand(set *manifest.Set) (text string, changed bool, err error) {
	docs := make([]string, 0, len(set.Objects))
	for _, o := range set.Objects {
		doc := strings.TrimSpace(o.YAML)
		if o.Kind == "Deployment" {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(o.YAML), &n); err != nil {
				return "", false, fmt.Errorf("%s: %w", o.Ref(), err)
			}
			if curlInstead(&n) {
				var b bytes.Buffer
				enc := yaml.NewEncoder(&b)
				enc.SetIndent(2)
				if err := enc.Encode(&n); err != nil {
					return "", false, fmt.Errorf("%s: %w", o.Ref(), err)
				}
				doc, changed = strings.TrimSpace(b.String()), true
			}
		}
		docs = append(docs, doc)
	}
	return strings.Join(docs, "\n---\n") + "\n", changed, nil
}

// curlInstead replaces, in a Deployment's document, each container running egresslab's
// client with the curl sample's, and says whether it found one.
func curlInstead(doc *yaml.Node) bool {
	found := false
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "containers" && n.Content[i+1].Kind == yaml.SequenceNode {
					for _, c := range n.Content[i+1].Content {
						if value(c, "image") == published.ClientImage {
							*c = *curlContainer(value(c, "name"))
							found = true
						}
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(doc)
	return found
}

// curlContainer is the curl sample's container (samples/curl/curl.yaml), named name.
func curlContainer(name string) *yaml.Node {
	var n yaml.Node
	text := fmt.Sprintf("name: %s\n# Istio's curl sample (samples/curl/curl.yaml), in place of egresslab's own client.\nimage: %s\ncommand: [\"/bin/sleep\", \"infinity\"]\nimagePullPolicy: IfNotPresent\n",
		name, published.CurlImage)
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		panic(err) // a constant
	}
	return n.Content[0]
}

// value is a mapping node's scalar value for key, or "".
func value(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// curlCommand is the call as a person types it: curl in the calling workload's client
// container, printing the HTTP status only (000 when no response came back). A call to
// an address is curl's --resolve, which keeps the URL's Host and SNI; a call through a
// proxy is curl's --proxy, which opens a CONNECT tunnel for an https:// URL; a method
// other than GET is curl's -X.
//
// A TCP call is curl's telnet://, which sends what it reads on its standard input: the
// line egresslab's client speaks first (observe.Ping), then prints what comes back.
func curlCommand(c *labfile.Call) string {
	args := []string{"curl", "-s", "-o", "/dev/null", "-w", `'%{http_code}\n'`}
	if c.URL.TCP() {
		args = []string{"curl", "-s"}
	}
	if c.URL.Method != "" {
		args = append(args, "-X "+c.URL.Method)
	}
	if c.URL.Address != "" {
		args = append(args, fmt.Sprintf("--resolve %s:%d:%s", c.URL.Host(), c.URL.Port(), c.URL.Address))
	}
	if c.URL.Proxy != nil {
		args = append(args, "--proxy "+c.URL.Proxy.String()) // as HTTPS_PROXY would
	}
	if c.URL.TCP() {
		args = append(args, "telnet://"+c.URL.HostPort())
		return fmt.Sprintf("kubectl -n %s exec deploy/%s -c %s -- sh -c 'echo %s | %s'", c.From.Namespace, c.From.Name, c.From.Name,
			strings.TrimSpace(observe.Ping), strings.Join(args, " "))
	}
	args = append(args, c.URL.String())
	return fmt.Sprintf("kubectl -n %s exec deploy/%s -c %s -- %s", c.From.Namespace, c.From.Name, c.From.Name, strings.Join(args, " "))
}

// curlPrints is what curlCommand prints for a call with this expectation on a real
// cluster, with kubectl's line for curl's exit code when it is not 0; ok is false when
// the expectation does not say (an allowed call whose status is the far end's).
func curlPrints(e outcome.Expect, c backend.Call) (output string, ok bool) {
	switch {
	case c.TCP() && e.Reason == outcome.ReasonBlackHole:
		return "command terminated with exit code 56", true
	case c.TCP() && e.Kind == outcome.Allowed:
		// The far end of a TCP call is always egresslab's stand-in (site.LabHosts).
		return site.Reply(strconv.Itoa(c.Port()), observe.Ping), true
	case c.TCP():
		return "", false
	case e.Reason == outcome.ReasonBlackHole && c.Proxy != nil:
		// Reset while curl reads the proxy's answer to its CONNECT: a receive error.
		return "000\ncommand terminated with exit code 56", true
	case e.Reason == outcome.ReasonBlackHole && c.HTTPS():
		return "000\ncommand terminated with exit code 35", true
	case e.Reason == outcome.ReasonBlackHole:
		return "000\ncommand terminated with exit code 56", true
	case e.Status != 0:
		return fmt.Sprint(e.Status), true
	}
	return "", false
}
