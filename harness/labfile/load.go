package labfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Source is where a lab's files are read from.
type Source struct {
	// FS holds the lab's folder, Dir: its lab file and, beside it, the manifests it
	// applies. FS is rooted at the folder that holds Dir (labs/, or a user's lab's
	// parent: Folder), and a lab may name a file of its folder or of a sibling folder
	// ("../serviceentry/x.yaml"), nothing else (place). That a symbolic link is followed
	// only while it stays inside FS is FS's to enforce (an os.Root's does: Folder).
	FS  fs.FS
	Dir string
	// Shown is FS's root as messages name it: "labs". DirShown, when set, is how they
	// name Dir instead ("my-lab", "." for a lab run from its folder): a file is then
	// named relative to it ("../serviceentry/x.yaml").
	Shown, DirShown string
	// Apps holds the shared apps (labs/apps) that a deploy action names without ".yaml",
	// and AppsShown names that folder.
	Apps      fs.FS
	AppsShown string
	// Client is the workload a call is made from when it says no other; objects that
	// name no namespace go in its namespace.
	Client backend.Workload
}

// Load reads the lab file file (a name in src.FS) and everything it names, and checks
// it all: a lab is either whole and valid, or refused with an Errors that names the
// file, the line, the step and the fix of every problem found.
func Load(src Source, file, name string) (*Lab, error) {
	p := &parser{src: src, sets: map[string]*manifest.Set{}}
	shown := p.shown(path.Join(src.Dir, file))
	data, err := manifest.ReadInput(src.FS, path.Join(src.Dir, file))
	if errors.Is(err, manifest.ErrNotInput) {
		return nil, Errors{{File: shown, Reason: err.Error(), Fix: "give a " + FileName + " file: one YAML mapping with title, summary and steps"}}
	}
	if err != nil {
		return nil, Errors{{File: shown, Reason: "cannot read it: " + unwrapAll(err).Error(),
			Fix: "check the path: a lab is a " + FileName + " file in a folder with the manifests it applies"}}
	}
	p.lab = &Lab{Name: name, File: shown, Dir: p.shown(src.Dir)}
	top, ok := p.document(data, "a lab file", "check indentation and quoting: a lab file is one YAML mapping",
		"remove the `---` line and everything after it (a second lab goes in a folder of its own, as its own "+FileName+")")
	if !ok {
		return nil, p.errs
	}
	if top == nil || top.Kind != yaml.MappingNode {
		p.fail(1, "the file is empty or not a mapping", "start with `title:`, `summary:` and `steps:` (docs/lab-format.md)")
		return nil, p.errs
	}
	p.top(top)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return p.lab, nil
}

// MaxErrors is how many problems of one file are listed; the rest are only counted.
const MaxErrors = 30

// Error is one problem in a lab file: where it is, what is wrong, and how to fix it.
type Error struct {
	File string
	Line int
	// Step is the step's number (from 1) and title, when the problem is in a step.
	Step      int
	StepTitle string
	Reason    string
	Fix       string
	// More, on the last Error of an Errors only, counts the problems found after it and
	// not listed (past MaxErrors).
	More int
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Step > 0 {
		fmt.Fprintf(&b, ": step %d", e.Step)
		if e.StepTitle != "" {
			fmt.Fprintf(&b, " (%q)", e.StepTitle)
		}
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	if e.Fix != "" {
		fmt.Fprintf(&b, "\n  fix: %s", e.Fix)
	}
	return b.String()
}

// Errors is every problem found in one lab file; a file with any is refused whole.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es), len(es)+1)
	for i, e := range es {
		msgs[i] = e.Error()
	}
	if n := len(es); n > 0 && es[n-1].More > 0 {
		msgs = append(msgs, fmt.Sprintf("%s: … and %d more problems, not listed\n  fix: fix the ones above first; so many usually means a file that is not a lab, or keys indented wrongly",
			es[n-1].File, es[n-1].More))
	}
	return strings.Join(msgs, "\n")
}

type parser struct {
	src  Source
	lab  *Lab
	errs Errors
	// Where the parse is, for messages.
	step      int
	stepTitle string
	// What the steps so far have done, to check each action against it.
	mesh    bool
	sets    map[string]*manifest.Set // by the name the lab wrote
	applied map[string]bool
	// unread are the values of actions already refused as unknown: a misspelt `aply:`
	// may have been meant to apply a file a later step deletes, and one error is enough.
	unread   map[string]bool
	deployed []backend.Workload
	before   bool           // a call marked config: before
	ids      map[string]int // the line of each call's id
	// callsFile: the calls are `egresslab check`'s (ParseCalls), not a lab's: check
	// deploys each call's workload itself, and a call may expect nothing (it reports).
	callsFile bool
}

// fail records a problem; past MaxErrors it only counts it, so that a file of a
// hundred thousand problems costs no more than one of thirty.
func (p *parser) fail(line int, reason, fix string) {
	if p.full() {
		p.errs[len(p.errs)-1].More++
		return
	}
	p.errs = append(p.errs, &Error{File: p.lab.File, Line: line, Step: p.step, StepTitle: p.stepTitle, Reason: reason, Fix: fix})
}

// full: MaxErrors problems are listed, and a further one need not be spelt out.
func (p *parser) full() bool { return len(p.errs) >= MaxErrors }

// document decodes data, which must be one YAML document with no aliases, and returns
// its top node (nil for an empty file); false when it cannot be read further (p.errs
// says why). kind names the file ("a lab file"), syntax is the fix of a syntax error,
// second that of a second document (whose first is read still, for its own problems).
func (p *parser) document(data []byte, kind, syntax, second string) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var top *yaml.Node
	for { // yaml.Unmarshal would read the first document only, and ignore the rest
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.fail(lineOf(err), "not valid YAML: "+err.Error(), syntax)
			return nil, false
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" && doc.Content[0].Value == "") {
			continue // a `---` with nothing (or only comments) after it
		}
		if top == nil {
			top = doc.Content[0]
			continue
		}
		p.fail(doc.Line, "a second YAML document begins here (after `---`): "+kind+" is one YAML document, and egresslab would ignore the rest", second)
		break // the first is read still, for its own problems
	}
	if top == nil {
		return nil, true
	}
	ok := true
	// An alias (*name) repeats what an anchor (&name) marks elsewhere: the value a
	// message is about would not be on the line it names, and an alias of an alias
	// multiplies a file's size. A lab file writes every value out.
	stack := []*yaml.Node{top}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			fix := "write out, here too, what the anchor &" + n.Value + " stands for"
			if n.Alias != nil {
				fix = fmt.Sprintf("write out what &%s at line %d stands for, here too", n.Value, n.Alias.Line)
			}
			p.step, p.stepTitle = p.stepAt(top, n.Line)
			p.fail(n.Line, "*"+n.Value+": YAML aliases are not supported in a lab file", fix)
			ok = false
			continue
		}
		for i := len(n.Content) - 1; i >= 0; i-- {
			stack = append(stack, n.Content[i])
		}
	}
	p.step, p.stepTitle = 0, ""
	return top, ok
}

// stepAt is the number and title of the step of top (a lab's top mapping) that holds
// line, for a message about a node found outside the parse of the steps.
func (p *parser) stepAt(top *yaml.Node, line int) (int, string) {
	if p.callsFile || top.Kind != yaml.MappingNode {
		return 0, ""
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "steps" || top.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		steps := top.Content[i+1].Content
		for j := len(steps) - 1; j >= 0; j-- {
			if steps[j].Line <= line {
				title := ""
				for k := 0; steps[j].Kind == yaml.MappingNode && k+1 < len(steps[j].Content); k += 2 {
					if steps[j].Content[k].Value == "title" && steps[j].Content[k+1].Kind == yaml.ScalarNode {
						title = strings.TrimSpace(steps[j].Content[k+1].Value)
					}
				}
				return j + 1, title
			}
		}
	}
	return 0, ""
}

// field is one key of a mapping, with the node of its value.
type field struct {
	key  string
	line int
	val  *yaml.Node
}

// fields lists a mapping's keys, refusing any not in known (with the closest known key
// as the fix) and any repeated.
func (p *parser) fields(n *yaml.Node, what string, known ...string) []field {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, what+" must be a mapping (key: value lines)", "write "+what+" as `"+known[0]+": ...`, one key per line")
		return nil
	}
	var out []field
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(known, k.Value) && p.full():
			p.fail(k.Line, "", "") // counted only
		case !slices.Contains(known, k.Value):
			fix := "the fields of " + what + " are: " + strings.Join(known, ", ")
			if near := closest(k.Value, known); near != "" {
				fix = "did you mean `" + near + "`? " + fix
			}
			p.fail(k.Line, fmt.Sprintf("unknown field %q in %s", k.Value, what), fix)
		case seen[k.Value]:
			p.fail(k.Line, fmt.Sprintf("field %q given twice in %s", k.Value, what), "keep one of them")
		default:
			seen[k.Value] = true
			out = append(out, field{key: k.Value, line: k.Line, val: v})
		}
	}
	return out
}

func (p *parser) text(f field) string {
	if f.val.Kind != yaml.ScalarNode {
		p.fail(f.line, fmt.Sprintf("%s must be text", f.key), "write it on one line after `"+f.key+":`, or as a `>` block")
		return ""
	}
	return strings.TrimSpace(f.val.Value)
}

func (p *parser) top(n *yaml.Node) {
	var steps *yaml.Node
	for _, f := range p.fields(n, "the lab", "title", "summary", "order", "url", "entry", "steps") {
		switch f.key {
		case "title":
			p.lab.Title = p.text(f)
		case "summary":
			p.lab.Summary = p.text(f)
		case "order":
			o, err := strconv.Atoi(p.text(f))
			if err != nil {
				p.fail(f.line, fmt.Sprintf("order %q is not a whole number", f.val.Value), "give the lab's place in the workshop, e.g. `order: 3`")
			}
			p.lab.Order = o
		case "url":
			p.lab.URL = p.text(f)
			if _, err := backend.ParseCall(p.lab.URL); err != nil {
				p.fail(f.line, "url: "+err.Error(), "give the lab's main call as a full URL")
			}
		case "entry":
			p.lab.Entry = p.text(f)
		case "steps":
			steps = f.val
		}
	}
	if p.lab.Title == "" {
		p.fail(n.Line, "the lab has no title", "add `title: ...` (one line: what the lab teaches)")
	}
	if p.lab.Summary == "" {
		p.fail(n.Line, "the lab has no summary", "add `summary: ...` (a sentence or two, shown by `egresslab lab list`)")
	}
	switch {
	case steps != nil && steps.Kind == yaml.MappingNode:
		p.fail(p.keyLine(n, "steps"), "`steps:` must be a list of steps, not a mapping",
			"start each step with `- title:`, e.g.\n      steps:\n      - title: REGISTRY_ONLY, and the client in the mesh\n        do:\n        - mesh: REGISTRY_ONLY")
		return
	case steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) == 0:
		p.fail(n.Line, "the lab has no steps", "add `steps:` with a list of steps, each `- title: ...`")
		return
	}
	p.applied, p.unread = map[string]bool{}, map[string]bool{}
	for i, s := range steps.Content {
		p.step, p.stepTitle = i+1, ""
		p.stepOf(s)
	}
	p.step, p.stepTitle = 0, ""
	p.checkOverrides(n.Line)
	if len(p.errs) == 0 {
		if err := p.lab.CheckNamespaces(nil); err != nil {
			p.fail(0, err.Error(), "") // the manifest's error says the fix
		}
	}
}

func (p *parser) stepOf(n *yaml.Node) {
	st := Step{Line: n.Line}
	var do *yaml.Node
	fs := p.fields(n, "a step", "title", "prose", "do")
	for _, f := range fs { // the title first, so that every message about the step names it
		if f.key == "title" {
			st.Title = p.text(f)
			p.stepTitle = st.Title
		}
	}
	for _, f := range fs {
		switch f.key {
		case "prose":
			st.Prose = p.text(f)
		case "do":
			do = f.val
		}
	}
	if n.Kind == yaml.MappingNode && st.Title == "" {
		p.fail(n.Line, "the step has no title", "add `title: ...`: the step's heading")
	}
	switch {
	case do != nil && do.Kind != yaml.SequenceNode && !(do.Kind == yaml.ScalarNode && do.Tag == "!!null"):
		kind := "a mapping"
		if do.Kind == yaml.ScalarNode {
			kind = "text"
		}
		p.fail(p.keyLine(n, "do"), "`do:` must be a list of actions, not "+kind,
			"start each action with `- `, one a line, e.g.\n      do:\n      - mesh: REGISTRY_ONLY\n      - deploy: client")
	case do == nil || do.Kind != yaml.SequenceNode || len(do.Content) == 0:
		if n.Kind == yaml.MappingNode {
			p.fail(n.Line, "the step does nothing", "add `do:` with a list of actions: "+actionList())
		}
	default:
		for _, a := range do.Content {
			if act, ok := p.action(a); ok {
				st.Actions = append(st.Actions, act)
			}
		}
	}
	p.lab.Steps = append(p.lab.Steps, st)
}

// keyLine is the line of key in mapping n (n's own line when it has none).
func (p *parser) keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func actionNames() []string {
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return names
}

func actionList() string { return strings.Join(actionNames(), ", ") }

var callFields = []string{"from", "address", "proxy", "method", "expect", "config", "propagation", "id"}

func (p *parser) action(n *yaml.Node) (Action, bool) {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, "an action must be a mapping such as `- apply: entry.yaml`", "start the action with one of: "+actionList())
		return Action{}, false
	}
	known := actionNames()
	var kinds []field
	var mods []field
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch {
		case slices.Contains(known, k.Value):
			kinds = append(kinds, field{key: k.Value, line: k.Line, val: n.Content[i+1]})
		case slices.Contains(callFields, k.Value):
			mods = append(mods, field{key: k.Value, line: k.Line, val: n.Content[i+1]})
		case p.full():
			p.fail(k.Line, "", "") // an unknown action, counted only
			p.unread[n.Content[i+1].Value] = true
			return Action{}, false
		default:
			fix := "an action is one of: " + actionList() + "; a call may also have: " + strings.Join(callFields, ", ")
			if near := closest(k.Value, append(known, callFields...)); near != "" {
				fix = "did you mean `" + near + "`? " + fix
			}
			p.fail(k.Line, fmt.Sprintf("unknown action %q", k.Value), fix)
			p.unread[n.Content[i+1].Value] = true
			return Action{}, false
		}
	}
	switch {
	case len(kinds) == 0:
		p.fail(n.Line, "the action names no action", "start it with one of: "+actionList())
		return Action{}, false
	case len(kinds) > 1:
		p.fail(n.Line, fmt.Sprintf("one action holds two: %s and %s", kinds[0].key, kinds[1].key),
			"give each its own list item (`- "+kinds[1].key+": ...`)")
		return Action{}, false
	}
	f := kinds[0]
	a := Action{Line: f.line, Kind: ActionKind(f.key)}
	if a.Kind != MakeCall && len(mods) > 0 {
		p.fail(mods[0].line, fmt.Sprintf("%q belongs to a call, not to %s", mods[0].key, f.key), "move it under the `- call:` it is about")
		return Action{}, false
	}
	value := p.text(f)
	switch a.Kind {
	case Mesh:
		a.Mode = strings.ToUpper(value)
		if !slices.Contains(manifest.Modes, a.Mode) {
			p.fail(f.line, fmt.Sprintf("mesh mode %q is not an outbound traffic policy mode", value), "use one of: "+strings.Join(manifest.Modes, ", "))
		}
		p.mesh = true
	case Deploy, Apply, Delete:
		a.File = value
		p.needMesh(f)
		a.Set = p.manifest(f, a.Kind == Deploy)
		if a.Set == nil {
			return a, false
		}
		switch a.Kind {
		case Deploy:
			var holds []string
			found := false
			for _, o := range a.Set.Objects {
				if o.Kind == "Deployment" {
					p.deployed = append(p.deployed, backend.Workload{Namespace: o.Namespace, Name: o.Name})
					found = true
				}
				holds = append(holds, o.Kind+" "+o.Name)
			}
			if !found {
				if len(holds) > 3 {
					holds = append(holds[:3], fmt.Sprintf("%d more", len(holds)-3))
				}
				p.fail(f.line, fmt.Sprintf("deploy %s: it holds no Deployment (it holds %s), so there is no app whose pods would get a sidecar", a.File, strings.Join(holds, ", ")),
					"`deploy:` is for an app: a file with a Deployment; apply other objects with `- apply: "+a.File+"`")
				return a, false
			}
		case Apply:
			p.applied[a.File] = true
		case Delete:
			if !p.applied[a.File] && !p.unread[a.File] {
				p.fail(f.line, fmt.Sprintf("delete %s: no earlier step applies it", a.File),
					"delete only what an earlier `apply:` applied (the lab deletes what it applied at its end anyway)")
			}
			delete(p.applied, a.File)
		}
	case MakeCall:
		p.needMesh(f)
		a.Call = p.call(f, mods)
	case Suggest:
		p.needMesh(f)
		w, ok := p.workload(f)
		if !ok {
			return a, false
		}
		a.From = w
		if !slices.Contains(p.deployed, w) && len(p.unread) == 0 {
			p.fail(f.line, fmt.Sprintf("suggest reads the access log of %s, which no earlier step deploys", w),
				"deploy it first, and make calls from it for the log to show")
		}
	case Refuse:
		a.File = value
		shown, data, ok := p.read(f, false)
		if !ok {
			return a, false
		}
		a.Text = string(data)
		a.Command = "kubectl apply -n " + p.src.Client.Namespace + " -f " + shown
		if _, err := manifest.Parse(shown, data, p.src.Client.Namespace); err != nil {
			a.Refusal = err.Error()
			var errs manifest.Errors
			if errors.As(err, &errs) && len(errs) == 1 && strings.HasPrefix(errs[0].Reason, manifest.IstioRejects) {
				a.Rejection = strings.TrimPrefix(errs[0].Reason, manifest.IstioRejects)
			}
		} else {
			p.fail(f.line, fmt.Sprintf("refuse %s: Istio's validation accepts it", value),
				"give `refuse:` a manifest Istio refuses (the lesson), or `apply:` it")
		}
	}
	return a, true
}

// workload reads a NAMESPACE/DEPLOYMENT value.
func (p *parser) workload(f field) (backend.Workload, bool) {
	ns, name, ok := strings.Cut(p.text(f), "/")
	if !ok || ns == "" || name == "" {
		p.fail(f.line, fmt.Sprintf("%s %q: name the workload as NAMESPACE/DEPLOYMENT", f.key, f.val.Value), "e.g. `"+f.key+": egresslab/client`")
		return backend.Workload{}, false
	}
	return backend.Workload{Namespace: ns, Name: name}, true
}

func (p *parser) needMesh(f field) {
	if !p.mesh {
		p.fail(f.line, f.key+" before the mesh is installed", "start the lab with a step whose first action is `- mesh: REGISTRY_ONLY` (or another mode)")
		p.mesh = true // once is enough
	}
}

// manifest reads and validates a file the lab names. A deploy may name an app of
// the shared apps folder without ".yaml".
func (p *parser) manifest(f field, deploy bool) *manifest.Set {
	name := f.val.Value
	if set, ok := p.sets[name]; ok {
		return set
	}
	shown, data, ok := p.read(f, deploy)
	if !ok {
		return nil
	}
	set, err := manifest.Parse(shown, data, p.src.Client.Namespace)
	if err != nil {
		// The manifest's own error names the document, the object and its fix.
		p.fail(f.line, fmt.Sprintf("%s %s is refused, so nothing of the lab is applied:\n  %s", f.key, name,
			strings.ReplaceAll(err.Error(), "\n", "\n  ")), "")
		return nil
	}
	p.sets[name] = set
	return set
}

// read reads a file the lab names, and says how messages name it.
func (p *parser) read(f field, deploy bool) (shown string, data []byte, ok bool) {
	name := f.val.Value
	if strings.TrimSpace(name) == "" {
		p.fail(f.line, f.key+" names no file", "name a file beside "+FileName+", e.g. `"+f.key+": entry.yaml`")
		return "", nil, false
	}
	if deploy && !strings.HasSuffix(name, ".yaml") && p.src.Apps != nil {
		return p.readApp(f)
	}
	at, ok := p.place(f)
	if !ok {
		return "", nil, false
	}
	shown = p.shown(at)
	data, err := manifest.ReadInput(p.src.FS, at)
	if err == nil {
		return shown, data, true
	}
	if info, serr := fs.Stat(p.src.FS, at); serr == nil && info.IsDir() {
		fix := "name a YAML file of Kubernetes or Istio objects"
		if names := yamlFiles(p.src.FS, at); len(names) > 0 {
			fix = "name one YAML file in it, e.g. `" + f.key + ": " + path.Join(name, names[0]) + "`; the files there are: " + strings.Join(names, ", ")
		}
		p.fail(f.line, fmt.Sprintf("%s %s: %s is a folder, not a file", f.key, name, shown), fix)
		return "", nil, false
	}
	if errors.Is(err, manifest.ErrNotInput) {
		p.fail(f.line, fmt.Sprintf("%s %s: %v", f.key, name, err), "name a YAML file of Kubernetes or Istio objects")
		return "", nil, false
	}
	if p.unfollowed(f, at, err) {
		return "", nil, false
	}
	if !errors.Is(err, fs.ErrNotExist) {
		p.fail(f.line, fmt.Sprintf("%s %s: cannot read %s: %v", f.key, name, shown, unwrapAll(err)),
			"make it a file egresslab can read (check its permissions), or name another")
		return "", nil, false
	}
	dir := p.shown(path.Dir(at))
	fix := "put " + path.Base(at) + " in " + dir
	if names := yamlFiles(p.src.FS, path.Dir(at)); len(names) > 0 {
		fix += "; the files there are: " + strings.Join(names, ", ")
		if near := closest(path.Base(at), names); near != "" {
			fix = "did you mean " + near + "? " + fix
		}
	}
	if deploy && p.src.Apps != nil {
		fix += " (or deploy an app egresslab has built in by its name, without .yaml: " + strings.Join(appNames(p.src.Apps), ", ") + ")"
	}
	p.fail(f.line, fmt.Sprintf("%s %s: there is no such file in %s", f.key, name, dir), fix)
	return "", nil, false
}

// pathRule is the rule a file's name follows, for the messages of a name that breaks it.
const pathRule = "a lab names a file in its own folder (`entry.yaml`, `more/entry.yaml`) or in a sibling folder (`../other-lab/entry.yaml`)"

// place is where the file a lab names is in p.src.FS, if the rules allow it: a name
// relative to the lab's folder, of a file in it or in a sibling folder of the same
// parent (as the labs of labs/ share ../serviceentry/jsonplaceholder.yaml); never an
// absolute path, nothing above that parent, and no file of the parent itself.
func (p *parser) place(f field) (string, bool) {
	name := f.val.Value
	parent := path.Dir(p.src.Dir)
	if path.IsAbs(name) || strings.HasPrefix(name, `\`) || drive.MatchString(name) {
		p.fail(f.line, fmt.Sprintf("%s %s: an absolute path; a lab names files relative to its folder", f.key, name),
			"copy the file beside "+FileName+" and write `"+f.key+": "+path.Base(strings.ReplaceAll(name, `\`, "/"))+"`; "+pathRule)
		return "", false
	}
	at := path.Join(p.src.Dir, name)
	switch {
	case !fs.ValidPath(at) || (parent != "." && at != parent && !strings.HasPrefix(at, parent+"/")):
		p.fail(f.line, fmt.Sprintf("%s %s: it leads above %s", f.key, name, p.parentName()),
			"copy the file beside "+FileName+" and write `"+f.key+": "+path.Base(name)+"`; "+pathRule)
		return "", false
	case hidden(at):
		// From ~/mylab, ../.kube/config or ../.ssh/id_rsa would be a "sibling folder".
		p.fail(f.line, fmt.Sprintf("%s %s: it names a hidden file or folder (a name starting with a dot)", f.key, name),
			"give the manifest a plain name in the lab's folder or a sibling lab's; "+pathRule)
		return "", false
	case p.src.Dir != "." && (at == parent || path.Dir(at) == parent):
		p.fail(f.line, fmt.Sprintf("%s %s: it names a file of %s itself, not of a lab's folder", f.key, name, p.shown(parent)),
			"move it into a folder beside the lab's (`../shared/"+path.Base(at)+"`) or beside "+FileName+"; "+pathRule)
		return "", false
	}
	return at, true
}

// parentName names, for messages, the folder a lab's files must stay inside: the one
// that holds the lab's folder, or the lab's folder when the Source has no parent.
func (p *parser) parentName() string {
	if p.src.Dir == "." {
		return "the lab's folder (" + p.shown(".") + ")"
	}
	return "the folder that holds the lab's folder (" + p.shown(path.Dir(p.src.Dir)) + ")"
}

// hidden reports whether a path names a hidden file or folder: one whose name starts
// with a dot (.kube, .ssh), which no lab's manifest is.
func hidden(at string) bool {
	for _, part := range strings.Split(at, "/") {
		if strings.HasPrefix(part, ".") && part != "." && part != ".." {
			return true
		}
	}
	return false
}

// drive is the start of an absolute Windows path.
var drive = regexp.MustCompile(`^[A-Za-z]:[/\\]`)

// unfollowed says, when a symbolic link on the way to at is what could not be
// followed (a loop, a link to what does not exist, or out of the parent folder, which
// p.src.FS refuses), why; false when no link is to blame.
func (p *parser) unfollowed(f field, at string, err error) bool {
	parent := path.Dir(p.src.Dir)
	// The link may be at or anywhere above at (`etc/passwd`, etc a link to /etc).
	for dir := at; dir != "." && dir != "/" && dir != parent; dir = path.Dir(dir) {
		target, lerr := fs.ReadLink(p.src.FS, dir)
		if lerr != nil {
			continue // not a link, or an FS without links
		}
		if _, serr := fs.Stat(p.src.FS, dir); serr == nil && dir != at {
			return false // a link to a folder that is there: what is missing is in it
		}
		shown := p.shown(dir)
		to := path.Join(path.Dir(dir), target)
		switch {
		case path.IsAbs(target) || !fs.ValidPath(to) || (parent != "." && !strings.HasPrefix(to, parent+"/")):
			p.fail(f.line, fmt.Sprintf("%s %s: %s is a symbolic link to %s, outside %s", f.key, f.val.Value, shown, target, p.parentName()),
				"copy the file itself beside "+FileName+": symbolic links are followed only while they stay inside "+p.shown(parent)+" ("+pathRule+")")
		case errors.Is(err, syscall.ELOOP):
			p.fail(f.line, fmt.Sprintf("%s %s: %s is a symbolic link that cannot be followed: a loop of links (to %s)", f.key, f.val.Value, shown, target),
				"point the link at a file, or put the file itself there")
		case errors.Is(err, fs.ErrNotExist):
			p.fail(f.line, fmt.Sprintf("%s %s: %s is a symbolic link to %s, which does not exist", f.key, f.val.Value, shown, target),
				"point the link at a file that exists, or put the file itself there")
		default:
			p.fail(f.line, fmt.Sprintf("%s %s: %s is a symbolic link to %s, which cannot be followed: %v", f.key, f.val.Value, shown, target, unwrapAll(err)),
				"point the link at a file inside "+p.shown(parent)+", or put the file itself there")
		}
		return true
	}
	return false
}

// readApp reads an app egresslab has built in (`deploy: client`).
func (p *parser) readApp(f field) (shown string, data []byte, ok bool) {
	name := f.val.Value
	file := name + ".yaml"
	if fs.ValidPath(file) {
		if data, err := manifest.ReadInput(p.src.Apps, file); err == nil {
			return path.Join(p.src.AppsShown, file), data, true
		}
	}
	apps := appNames(p.src.Apps)
	reason := fmt.Sprintf("deploy %s: egresslab has no app called %s; its apps are: %s", name, name, strings.Join(apps, ", "))
	fix := "deploy one of them (`deploy: client`), or a file: a file beside " + FileName + " is deployed by its name with .yaml (`deploy: " + path.Base(file) + "`)"
	if near := closest(name, apps); near != "" {
		fix = "did you mean `deploy: " + near + "`? " + fix
	}
	if at := path.Join(p.src.Dir, file); fs.ValidPath(at) {
		if info, err := fs.Stat(p.src.FS, at); err == nil && !info.IsDir() {
			fix = "write `deploy: " + file + "`: " + file + " is beside " + FileName + ", and a deploy without .yaml names an app egresslab has built in (" + strings.Join(apps, ", ") + ")"
		}
	}
	p.fail(f.line, reason, fix)
	return "", nil, false
}

// appNames lists the apps built in: the files of apps, without .yaml.
func appNames(apps fs.FS) []string {
	var names []string
	for _, n := range yamlFiles(apps, ".") {
		names = append(names, strings.TrimSuffix(n, ".yaml"))
	}
	return names
}

// shown is how messages name at, a path in p.src.FS.
func (p *parser) shown(at string) string {
	if p.src.DirShown == "" {
		return path.Join(p.src.Shown, at)
	}
	dir := p.src.Dir
	rel := at
	if dir != "." {
		switch {
		case at == dir:
			rel = "."
		case strings.HasPrefix(at, dir+"/"):
			rel = at[len(dir)+1:]
		default:
			rel = strings.Repeat("../", strings.Count(dir, "/")+1) + at
		}
	}
	return path.Join(p.src.DirShown, rel)
}

func yamlFiles(fsys fs.FS, dir string) []string {
	var names []string
	entries, _ := fs.ReadDir(fsys, dir)
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") && e.Name() != FileName {
			names = append(names, e.Name())
		}
	}
	return names
}

func (p *parser) call(f field, mods []field) *Call {
	c := &Call{From: p.src.Client}
	var err error
	if c.URL, err = backend.ParseCall(f.val.Value); err != nil {
		p.fail(f.line, err.Error(), "give the full URL the client calls, e.g. `call: http://api.example.com/v1`")
	}
	var expect *field
	for _, m := range mods {
		switch m.key {
		case "id":
			c.ID = p.text(m)
			if p.ids == nil {
				p.ids = map[string]int{}
			}
			if at, ok := p.ids[c.ID]; ok && c.ID != "" && !p.callsFile {
				p.fail(m.line, fmt.Sprintf("id %q is given to two calls (the call at line %d has it too)", c.ID, at),
					"give each call its own id: a Go test finds a call's expectation by its id (labs.Expect)")
			} else if c.ID != "" {
				p.ids[c.ID] = m.line
			}
		case "from":
			w, ok := p.workload(m)
			if !ok {
				continue
			}
			c.From = w
		case "address":
			if c.URL.URL == nil {
				continue // the URL is refused already
			}
			if c.URL, err = c.URL.At(p.text(m)); err != nil {
				p.fail(m.line, err.Error(), "give the IP address the app connects to (the URL's host stays its Host and SNI), e.g. `address: 10.20.30.40`")
			}
		case "proxy":
			if c.URL.URL == nil {
				continue // the URL is refused already
			}
			if c.URL, err = c.URL.Through(p.text(m)); err != nil {
				p.fail(m.line, err.Error(), "give the proxy an https:// call goes through as http://HOST:PORT, e.g. `proxy: http://proxy.corp.example:3128`")
			}
		case "method":
			if c.URL.URL == nil {
				continue // the URL is refused already
			}
			if c.URL, err = c.URL.Using(p.text(m)); err != nil {
				p.fail(m.line, err.Error(), "give the HTTP method of an http:// or https:// call in upper case, e.g. `method: POST`")
			}
		case "expect":
			expect = &m
			c.Expect = p.expect(m.val)
		case "config":
			c.Config = p.text(m)
			switch c.Config {
			case ConfigBefore:
				p.before = true
			case ConfigDiff:
				if !p.before {
					p.fail(m.line, "config: diff with no earlier call marked `config: before`", "mark the call to compare with `config: before`")
				}
			default:
				p.fail(m.line, fmt.Sprintf("config %q", c.Config), "use `config: before` on the call before a change and `config: diff` on the call after it")
			}
		case "propagation":
			c.Propagation, err = strconv.ParseBool(p.text(m))
			if err != nil {
				p.fail(m.line, fmt.Sprintf("propagation %q is not true or false", m.val.Value), "write `propagation: true` to report how long the change took to reach the sidecar")
			}
		}
	}
	if p.callsFile {
		return c
	}
	if expect == nil {
		p.fail(f.line, "the call expects nothing", "add `expect: {verdict: BLOCKED, reason: block_all}` (what Istio's simulator computes: run the lab on sim to see it)")
	}
	if !slices.Contains(p.deployed, c.From) && len(p.unread) == 0 { // a misspelt `deploy:` is error enough
		p.fail(f.line, fmt.Sprintf("the call is made from %s, which no earlier step deploys", c.From),
			"deploy it first (`- deploy: client`), or make the call `from:` a deployed workload")
	}
	return c
}

// Kinds, reasons and evidence fields an expectation may name.
var (
	verdicts = []outcome.Kind{outcome.Allowed, outcome.Blocked, outcome.Unreachable, outcome.InMesh, outcome.Denied}
	reasons  = []string{outcome.ReasonBlockAll, outcome.ReasonBlackHole, outcome.ReasonNoRoute,
		outcome.ReasonRegistered, outcome.ReasonPassthrough, outcome.ReasonDynamicDNS, outcome.ReasonInMesh,
		outcome.ReasonNoCluster, outcome.ReasonRBAC}
)

func (p *parser) expect(n *yaml.Node) outcome.Expect {
	var e outcome.Expect
	var own outcome.Hop // what the sidecar matches
	for _, f := range p.fields(n, "an expectation", "verdict", "reason", "listener", "routeConfig", "virtualHost", "cluster", "sni", "gateway", "status") {
		if f.key == "gateway" {
			e.Gateway = p.hop(f.val)
			continue
		}
		v := p.text(f)
		switch f.key {
		case "verdict":
			e.Kind = outcome.Kind(strings.ToUpper(v))
			if !slices.Contains(verdicts, e.Kind) {
				p.fail(f.line, fmt.Sprintf("verdict %q is not a verdict", v), fmt.Sprintf("use one of: %v", verdicts))
			}
		case "reason":
			e.Reason = v
			if !slices.Contains(reasons, v) {
				fix := "use one of: " + strings.Join(reasons, ", ")
				if near := closest(v, reasons); near != "" {
					fix = "did you mean `" + near + "`? " + fix
				}
				p.fail(f.line, fmt.Sprintf("reason %q is not a reason egresslab reports", v), fix)
			}
		case "listener", "routeConfig", "virtualHost", "cluster":
			setMatched(&own, f.key, v)
		case "sni":
			e.UpstreamSNI = v
		case "status":
			s, err := strconv.Atoi(v)
			if err != nil || s < 100 || s > 599 {
				p.fail(f.line, fmt.Sprintf("status %q is not an HTTP status code", v), "give the code the client sees on a cluster, e.g. `status: 502`")
			}
			e.Status = s
		}
	}
	e.Listener, e.RouteConfig, e.VirtualHost, e.Cluster = own.Listener, own.RouteConfig, own.VirtualHost, own.Cluster
	if n.Kind == yaml.MappingNode && e.Kind == "" {
		p.fail(n.Line, "the expectation has no verdict", fmt.Sprintf("add `verdict:`, one of %v", verdicts))
	}
	return e
}

// hop is what an expectation's `gateway:` says the egress gateway's proxy matches.
func (p *parser) hop(n *yaml.Node) *outcome.Hop {
	h := &outcome.Hop{}
	for _, f := range p.fields(n, "a gateway expectation", "listener", "routeConfig", "virtualHost", "cluster") {
		setMatched(h, f.key, p.text(f))
	}
	return h
}

// setMatched sets the field of h a lab file names by key: what a proxy matched, the
// same four names for the sidecar (at the top of an expectation) and for a gateway.
func setMatched(h *outcome.Hop, key, v string) {
	switch key {
	case "listener":
		h.Listener = v
	case "routeConfig":
		h.RouteConfig = v
	case "virtualHost":
		h.VirtualHost = v
	case "cluster":
		h.Cluster = v
	}
}

// checkOverrides checks that what -url and -entry would replace is in the lab.
func (p *parser) checkOverrides(line int) {
	if e := p.lab.Entry; e != "" {
		if _, ok := p.sets[e]; !ok {
			p.fail(line, fmt.Sprintf("entry %s: no step applies it", e), "name the manifest `-entry` replaces, as an `apply:` names it")
		}
	}
	if u := p.lab.URL; u != "" {
		used := false
		for _, c := range p.lab.Calls() {
			used = used || (c.URL.URL != nil && c.URL.String() == u)
		}
		if !used {
			p.fail(line, fmt.Sprintf("url %s: no call makes it", u), "give as url the URL of the lab's main call, as a `call:` writes it")
		}
	}
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// lineOf reads the line number out of a YAML syntax error.
func lineOf(err error) int {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func unwrapAll(err error) error {
	for errors.Unwrap(err) != nil {
		err = errors.Unwrap(err)
	}
	return err
}

// closest is the known word nearest to w, when it is near enough to be a typo, or the
// one w begins.
func closest(w string, known []string) string {
	best, bestD := "", len(w)/3+2
	for _, k := range known {
		if len(w) >= 3 && strings.HasPrefix(strings.ToLower(k), strings.ToLower(w)) {
			return k
		}
		if d := distance(strings.ToLower(w), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
