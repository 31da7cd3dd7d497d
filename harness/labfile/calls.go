package labfile

import (
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// ParseCalls reads a calls file of `egresslab check -calls FILE`: a mapping whose
// `calls:` lists calls written exactly as a lab step's call actions are (`- call: URL`
// with from, address and expect), so that a call is written one way in a lab and in a
// CI job. Unlike a lab's, a call may expect nothing (check then only reports its
// verdict), and its workload need not be deployed by a step: check deploys it. The
// file is refused whole, naming the line and the fix of every problem.
func ParseCalls(file string, data []byte, client backend.Workload) ([]*Call, error) {
	p := &parser{src: Source{Client: client}, lab: &Lab{File: file}, mesh: true, callsFile: true,
		applied: map[string]bool{}, unread: map[string]bool{}}
	top, ok := p.document(data, "a calls file", "check indentation and quoting: a calls file is one YAML mapping with `calls:`",
		"remove the `---` line and everything after it: list every call under the one `calls:`")
	if !ok {
		return nil, p.errs
	}
	if top == nil || top.Kind != yaml.MappingNode {
		p.fail(1, "the file is empty or not a mapping", "start with `calls:` and list the calls, each `- call: URL` with `expect:`")
		return nil, p.errs
	}
	var list *yaml.Node
	for _, f := range p.fields(top, "a calls file", "calls") {
		list = f.val
	}
	if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		p.fail(top.Line, "the file lists no calls", "add `calls:` with a list of calls, each `- call: URL`")
		return nil, p.errs
	}
	var calls []*Call
	for _, n := range list.Content {
		if other := otherAction(n); other != nil {
			p.fail(other.Line, fmt.Sprintf("a calls file holds calls only, not %s", other.Value),
				"give the objects to apply with -f FILE or -f FOLDER, and the mesh mode with -mode")
			continue
		}
		a, ok := p.action(n)
		switch {
		case !ok:
		case a.Call.Config != "" || a.Call.Propagation:
			p.fail(a.Line, "config and propagation belong to a lab's calls", "remove them: check reports each call's evidence")
		default:
			calls = append(calls, a.Call)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return calls, nil
}

// otherAction is the key of an action other than a call that n holds, if any.
func otherAction(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Value != string(MakeCall) && slices.Contains(Actions, ActionKind(k.Value)) {
			return k
		}
	}
	return nil
}

// ParseExpect reads what `egresslab check -expect` says: a verdict ("blocked"), or an
// expectation written as a lab's `expect:` is, in YAML's flow style
// ("{verdict: ALLOWED, cluster: outbound|443||api.example.com}"), to hold the call's
// evidence too.
func ParseExpect(text string) (outcome.Expect, error) {
	p := &parser{lab: &Lab{File: "-expect"}}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil || len(doc.Content) == 0 {
		return outcome.Expect{}, fmt.Errorf("-expect %q: give a verdict (%s) or an expectation such as '{verdict: ALLOWED, cluster: \"outbound|80||api.example.com\"}'",
			text, verdictList())
	}
	n := doc.Content[0]
	if n.Kind == yaml.ScalarNode {
		// A verdict alone, as a mapping with only `verdict:` would say.
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "verdict"}, n}}
	}
	e := p.expect(n)
	if len(p.errs) > 0 {
		msgs := make([]string, len(p.errs))
		for i, err := range p.errs {
			msgs[i] = err.Reason + " (" + err.Fix + ")"
		}
		return outcome.Expect{}, fmt.Errorf("-expect %q: %s", text, strings.Join(msgs, "; "))
	}
	return e, nil
}

func verdictList() string {
	names := make([]string, len(verdicts))
	for i, v := range verdicts {
		names[i] = strings.ToLower(string(v))
	}
	return strings.Join(names, ", ")
}
