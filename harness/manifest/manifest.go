// Package manifest reads the YAML the lab applies: it splits a file into documents,
// turns Istio kinds into Istio's own config model and Kubernetes kinds into client-go
// objects, and validates every Istio object with Istio's own validation, so that a bad
// file is refused, whole, before anything is applied.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
)

// Object is one document of a manifest file.
type Object struct {
	// Source and Doc say where it came from: file name and 1-based document number.
	Source string
	Doc    int

	APIVersion string
	Kind       string
	Name       string
	Namespace  string

	// Exactly one of Istio and Kube is set.
	Istio *config.Config
	Kube  runtime.Object

	// YAML is the document as written, for showing to people.
	YAML string
}

// Ref is "ServiceEntry egresslab/jsonplaceholder".
func (o Object) Ref() string {
	if o.Namespace == "" {
		return fmt.Sprintf("%s %s", o.Kind, o.Name)
	}
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// Set is every object of one manifest file, in file order.
type Set struct {
	Source  string
	Objects []Object
}

// YAML is the set as one multi-document stream, as written.
func (s *Set) YAML() string {
	docs := make([]string, 0, len(s.Objects))
	for _, o := range s.Objects {
		docs = append(docs, strings.TrimSpace(o.YAML))
	}
	return strings.Join(docs, "\n---\n") + "\n"
}

// IstioConfigs returns the Istio objects of the set.
func (s *Set) IstioConfigs() []config.Config {
	var out []config.Config
	for _, o := range s.Objects {
		if o.Istio != nil {
			out = append(out, *o.Istio)
		}
	}
	return out
}

// KubeObjects returns the Kubernetes objects of the set.
func (s *Set) KubeObjects() []runtime.Object {
	var out []runtime.Object
	for _, o := range s.Objects {
		if o.Kube != nil {
			out = append(out, o.Kube)
		}
	}
	return out
}

// Error is a manifest the lab refuses: it names the file, the document and object, what
// is wrong, and how to fix it.
type Error struct {
	File   string
	Doc    int
	Object string // "ServiceEntry jsonplaceholder", when the document got that far
	Reason string
	Fix    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Doc > 0 {
		fmt.Fprintf(&b, ", document %d", e.Doc)
	}
	if e.Object != "" {
		fmt.Fprintf(&b, " (%s)", e.Object)
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	if e.Fix != "" {
		fmt.Fprintf(&b, "\n  fix: %s", e.Fix)
	}
	return b.String()
}

// IstioRejects starts the reason of an object Istio's validation refuses; the rest is
// Istio's own message.
const IstioRejects = "Istio rejects it: "

// NamespaceFlag is kubectl's "-n NS " for a set whose objects all go in one namespace
// (the one they were given when the file named none), and "" otherwise, so a command
// shown to a learner applies the file where egresslab applied it.
func (s *Set) NamespaceFlag() string {
	ns := ""
	for _, o := range s.Objects {
		if o.Namespace == "" || (ns != "" && o.Namespace != ns) {
			return ""
		}
		ns = o.Namespace
	}
	if ns == "" {
		return ""
	}
	return "-n " + ns + " "
}

// SystemNamespaces exist on every cluster with Istio installed (sim holds no object for them).
var SystemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease", "istio-system"}

// CheckNamespaces refuses a set with an object in a namespace that neither exists (as
// exists says) nor is created by the set itself, before anything is applied. Every
// backend asks it, so that each refuses the same input with the same words: the API
// server would refuse the object half-way, and sim, which has none, would not at all.
func (s *Set) CheckNamespaces(exists func(namespace string) (bool, error)) error {
	made := map[string]bool{}
	for _, o := range s.Objects {
		if o.Kind == "Namespace" {
			made[o.Name] = true
		}
	}
	var errs Errors
	checked := map[string]bool{}
	for _, o := range s.Objects {
		ns := o.Namespace
		if ns == "" || made[ns] || checked[ns] {
			continue
		}
		ok, err := exists(ns)
		if err != nil {
			return fmt.Errorf("%s: check that namespace %s exists: %w", s.Source, ns, err)
		}
		if !ok {
			errs = append(errs, &Error{File: o.Source, Doc: o.Doc, Object: o.Kind + " " + o.Name,
				Reason: fmt.Sprintf("namespace %q does not exist", ns),
				Fix:    "put the object in a namespace that exists (metadata.namespace), or apply that Namespace first"})
			continue
		}
		checked[ns] = true
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Errors is every problem found in one file; a file with any is refused whole.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// LoadFile loads a manifest a user names.
func LoadFile(path, defaultNamespace string) (*Set, error) {
	data, err := ReadInputFile(path)
	if errors.Is(err, ErrNotInput) {
		return nil, &Error{File: path, Reason: err.Error(), Fix: "give a YAML file of Kubernetes or Istio objects"}
	}
	if err != nil {
		return nil, &Error{File: path, Reason: fmt.Sprintf("cannot read it: %v", errors.Unwrap(err)),
			Fix: "check the path; it is read relative to the directory you ran the command from"}
	}
	return Parse(path, data, defaultNamespace)
}

// Parse reads every document of data (named source in errors). Objects without a
// namespace get defaultNamespace, as `kubectl apply -n NAMESPACE` would give them.
// Either every document is valid and the whole set is returned, or an Errors lists
// every problem and nothing is returned.
func Parse(source string, data []byte, defaultNamespace string) (*Set, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, Errors{{File: source, Reason: "not valid YAML: " + err.Error(),
			Fix: "check indentation and quoting; each object is a YAML mapping, documents are separated by ---"}}
	}
	set := &Set{Source: source}
	var errs Errors
	for i, doc := range docs {
		obj, err := parseDocument(source, i+1, doc, defaultNamespace)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.Objects = append(set.Objects, obj)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(set.Objects) == 0 {
		return nil, Errors{{File: source, Reason: "holds no objects",
			Fix: "the file needs at least one document with apiVersion, kind and metadata.name"}}
	}
	return set, nil
}

// splitDocuments returns the non-empty documents of a YAML stream, as written.
func splitDocuments(data []byte) ([]string, error) {
	reader := kubeyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []string
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe any
		if err := sigsyaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if probe == nil {
			continue // an empty document or one holding only comments
		}
		if _, ok := probe.(map[string]any); !ok {
			return nil, fmt.Errorf("document %d is a %T, not a mapping of fields", len(docs)+1, probe)
		}
		docs = append(docs, string(doc))
	}
}

func parseDocument(source string, n int, doc, defaultNamespace string) (Object, *Error) {
	fail := func(object, reason, fix string) *Error {
		return &Error{File: source, Doc: n, Object: object, Reason: reason, Fix: fix}
	}
	var ik crd.IstioKind
	if err := sigsyaml.Unmarshal([]byte(doc), &ik); err != nil {
		return Object{}, fail("", "cannot read it as a Kubernetes object: "+err.Error(),
			"each document needs apiVersion, kind, metadata and spec in the usual Kubernetes layout")
	}
	obj := Object{Source: source, Doc: n, APIVersion: ik.APIVersion, Kind: ik.Kind,
		Name: ik.Name, Namespace: ik.Namespace, YAML: doc}
	switch {
	case ik.Kind == "" || ik.APIVersion == "":
		return Object{}, fail("", "missing apiVersion or kind",
			"start the document with e.g. `apiVersion: networking.istio.io/v1` and `kind: ServiceEntry`")
	case ik.Name == "":
		return Object{}, fail(ik.Kind, "missing metadata.name", "give the object a name under metadata.name")
	}
	ref := ik.Kind + " " + ik.Name
	// The API server refuses such names; sim, which has none, must refuse them too.
	if msgs := validation.IsDNS1123Subdomain(ik.Name); len(msgs) > 0 {
		return Object{}, fail(ref, fmt.Sprintf("metadata.name %q is not a valid Kubernetes object name: %s", ik.Name, strings.Join(msgs, "; ")),
			"use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, e.g. my-api")
	}
	if ik.Namespace != "" {
		if msgs := validation.IsDNS1123Label(ik.Namespace); len(msgs) > 0 {
			return Object{}, fail(ref, fmt.Sprintf("metadata.namespace %q is not a valid namespace name: %s", ik.Namespace, strings.Join(msgs, "; ")),
				"use lower-case letters, digits and '-', e.g. egresslab")
		}
	}

	gvk := ik.GroupVersionKind()
	if s, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(resource.FromKubernetesGVK(&gvk)); ok {
		if obj.Namespace == "" && !s.IsClusterScoped() {
			obj.Namespace = defaultNamespace
		}
		if err := strictSpec(s, ik.Spec); err != nil {
			return Object{}, fail(ref, "Istio cannot read its spec: "+err.Error(),
				"check the spelling of each field under spec against the "+ik.Kind+" reference")
		}
		cfg, err := crd.ConvertObject(s, &ik, "")
		if err != nil {
			return Object{}, fail(ref, "Istio cannot read its spec: "+err.Error(),
				"check the spelling of each field under spec against the "+ik.Kind+" reference")
		}
		// No creation time: an object gets one when it is applied (by the API server, or
		// by sim), and istiod orders conflicting services by it.
		cfg.Namespace = obj.Namespace
		if _, err := s.ValidateConfig(*cfg); err != nil {
			return Object{}, fail(ref, IstioRejects+err.Error(), fixFor(err.Error()))
		}
		obj.Istio = cfg
		return obj, nil
	}

	kobj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
	if err != nil {
		if runtime.IsNotRegisteredError(err) {
			return Object{}, fail(ref, fmt.Sprintf("unknown kind %q in apiVersion %q", ik.Kind, ik.APIVersion),
				"egresslab applies Istio networking objects (e.g. networking.istio.io/v1 ServiceEntry) and "+
					"Kubernetes built-in kinds; check apiVersion and kind for typos")
		}
		return Object{}, fail(ref, "Kubernetes cannot decode it: "+err.Error(),
			"check the fields against the "+ik.Kind+" reference")
	}
	if m, ok := kobj.(interface{ GetNamespace() string }); ok && m.GetNamespace() == "" && obj.Namespace == "" {
		if setter, ok := kobj.(interface{ SetNamespace(string) }); ok && namespaced(ik.Kind) {
			setter.SetNamespace(defaultNamespace)
			obj.Namespace = defaultNamespace
		}
	}
	obj.Kube = kobj
	return obj, nil
}

// strictSpec reads spec into the kind's proto, refusing unknown fields: Istio's own
// conversion ignores them, so a misspelt field (hots: for hosts:) would vanish silently.
func strictSpec(s resource.Schema, spec json.RawMessage) error {
	msg, ok := s.MustNewInstance().(proto.Message)
	if !ok || len(spec) == 0 {
		return nil
	}
	return protojson.Unmarshal(spec, msg)
}

// namespaced reports whether a built-in kind lives in a namespace; the lab uses few
// cluster-scoped kinds, so a short list is clearer than a discovery client.
func namespaced(kind string) bool {
	switch kind {
	case "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
		"CustomResourceDefinition", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
		return false
	}
	return true
}

// fixFor turns Istio's validation messages into a suggested fix, for the mistakes people make most.
func fixFor(msg string) string {
	switch {
	case strings.Contains(msg, "at least one host"):
		return "list the external host under spec.hosts, e.g. `hosts: [api.example.com]`"
	case strings.Contains(msg, "wildcard") && strings.Contains(strings.ToLower(msg), "dns"):
		return "a wildcard host cannot be resolved by DNS: use `resolution: DYNAMIC_DNS` (the sidecar resolves each call's host) or `resolution: NONE`, or name the host exactly"
	case strings.Contains(msg, "invalid protocol") || strings.Contains(msg, "unsupported protocol"):
		return "use one of Istio's port protocols under spec.ports[].protocol: HTTP, HTTPS, HTTP2, GRPC, TLS, TCP"
	case strings.Contains(msg, "port"):
		return "each entry under spec.ports needs a number, a name and a protocol"
	}
	return "correct the field Istio names; `istioctl validate -f FILE` gives the same verdict on a real cluster"
}

// LoadPaths loads what `kubectl apply -f PATH` would for each path: a file, or a folder's
// .yaml, .yml and .json files in name order (not its subfolders, as kubectl without -R).
// The objects of all of them make one set, Namespaces first, so that an object may go
// in a namespace another file creates, and the set is refused whole when any file is.
func LoadPaths(paths []string, defaultNamespace string) (*Set, error) {
	var files []string
	var errs Errors
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil || !info.IsDir() {
			files = append(files, p) // LoadFile says what is wrong with it
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Reason: fmt.Sprintf("cannot read the folder: %v", errors.Unwrap(err)), Fix: "check its permissions"})
			continue
		}
		before := len(files)
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		if len(files) == before {
			errs = append(errs, &Error{File: p, Reason: "the folder holds no .yaml, .yml or .json file", Fix: "name a folder of manifests, or the files themselves"})
		}
	}
	all := &Set{Source: strings.Join(paths, ", ")}
	for _, f := range files {
		set, err := LoadFile(f, defaultNamespace)
		var fileErrs Errors
		var one *Error
		switch {
		case errors.As(err, &fileErrs):
			errs = append(errs, fileErrs...)
		case errors.As(err, &one):
			errs = append(errs, one)
		case err != nil:
			return nil, err
		default:
			all.Objects = append(all.Objects, set.Objects...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	namespaces := slices.DeleteFunc(slices.Clone(all.Objects), func(o Object) bool { return o.Kind != "Namespace" })
	rest := slices.DeleteFunc(all.Objects, func(o Object) bool { return o.Kind == "Namespace" })
	all.Objects = append(namespaces, rest...)
	return all, nil
}
