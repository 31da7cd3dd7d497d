// Package cli is the egresslab command line: it parses flags, refuses bad input before
// anything is applied, picks a backend and hands over to a lab or to the check.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egresslab/egresslab/harness/backend"
	_ "github.com/egresslab/egresslab/harness/backend/all" // registers every backend
	"github.com/egresslab/egresslab/harness/backend/sim"
	"github.com/egresslab/egresslab/harness/handout"
	"github.com/egresslab/egresslab/harness/handout/killercoda"
	"github.com/egresslab/egresslab/harness/lab"
	"github.com/egresslab/egresslab/harness/labfile"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/harness/outcome"
	"github.com/egresslab/egresslab/internal/check"
	"github.com/egresslab/egresslab/labs"
	"github.com/egresslab/egresslab/labs/apps"
)

// Exit codes.
const (
	ExitOK         = 0
	ExitUnexpected = 1 // a lab step or a check did not behave as expected
	ExitBadInput   = 2 // bad flags or a bad manifest: nothing was applied
	// ExitInfrastructure: the backend could not be set up or failed under the lab (no
	// Docker, a cluster that did not come up, Istio that did not install). Something may
	// have been created: the message says what, and the backend cleaned up what it made.
	ExitInfrastructure = 3
	ExitInterrupted    = 130
)

// Streams are the command's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
	// Color forces colour on or off; nil decides from the terminal and NO_COLOR.
	Color *bool
	// Env is the process environment (os.Getenv); nil is an empty one. Only here, at
	// the edge, is the environment read; backends get their settings from it.
	Env backend.Env
}

func (s Streams) env() backend.Env {
	if s.Env == nil {
		return backend.NoEnv
	}
	return s.Env
}

const usage = `egresslab: a lab for how an Istio mesh controls traffic that leaves it.

Usage:
  egresslab lab list [-names]          the labs, in workshop order
  egresslab lab NAME [flags]           a narrated lab, e.g. egresslab lab serviceentry (flags: -h)
  egresslab lab -f FILE [flags]        your own lab file (docs/lab-format.md)
  egresslab check [flags] URL          would a call to URL from the client be allowed? (flags: -h)
  egresslab check [flags] -calls FILE  the same for every call of FILE, as a table (docs/check.md)
  egresslab suggest -f LOG [-o OUT]    the ServiceEntries that keep a log's ALLOW_ANY calls working under REGISTRY_ONLY,
                                       proved on the simulator first (docs/suggest.md; flags: -h)
  egresslab clean                      delete what runs kept: the kind cluster the labs reuse, if there is one
  egresslab version                    this binary's version, the Istio library it links, what each backend runs
  egresslab bundle FILE                save Istio's charts and images in FILE for kind runs without the internet
                                       (EGRESSLAB_BUNDLE=FILE; flags: -h)
`

// Run runs the command with args (without the program name) and returns its exit code.
func Run(ctx context.Context, args []string, s Streams) int {
	switch {
	case len(args) >= 2 && args[0] == "lab":
		return runLab(ctx, args[1:], s)
	case len(args) >= 1 && args[0] == "check":
		return runCheck(ctx, args[1:], s)
	case len(args) >= 1 && args[0] == "suggest":
		return runSuggest(ctx, args[1:], s)
	case len(args) == 1 && args[0] == "clean":
		return runClean(ctx, s)
	case len(args) == 1 && args[0] == "version":
		return runVersion(s)
	case len(args) >= 1 && args[0] == "bundle":
		return runBundle(ctx, args[1:], s)
	case len(args) >= 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(s.Out, usage)
		return ExitOK
	}
	fmt.Fprintf(s.Err, "egresslab: %s\n\n%s", whatIsWrong(args), usage)
	return ExitBadInput
}

// whatIsWrong says what is wrong with a command line Run does not take.
func whatIsWrong(args []string) string {
	switch {
	case len(args) == 0:
		return "name a command"
	case args[0] == "lab":
		return "egresslab lab: name a lab (egresslab lab list names them), or give -f FILE"
	case args[0] == "clean" || args[0] == "version":
		return fmt.Sprintf("egresslab %s takes no arguments (got %q)", args[0], args[1:])
	case strings.HasPrefix(args[0], "-"):
		return fmt.Sprintf("%s is not a command: flags go after the command (egresslab lab NAME %s), and egresslab version prints the version", args[0], args[0])
	}
	return fmt.Sprintf("unknown command %q", args[0])
}

// ask opens the backend called name for the question's calls and asks internal/check
// on it (`check`, and `suggest`'s replay): the answers and the backend's name, or "" and
// the exit code when the backend could not be opened (open said why).
func ask(ctx context.Context, name string, s Streams, k backend.Keep, q check.Question) ([]check.Answer, string, int, error) {
	var callsTo []string
	for _, c := range q.Calls {
		callsTo = append(callsTo, c.Call.HostPort())
	}
	b, release, _, code := open(ctx, name, s, k, callsTo...)
	if b == nil {
		return nil, "", code, nil
	}
	defer release()
	answers, err := check.Check(ctx, b, q, backend.DefaultTimeouts().Propagation)
	return answers, b.Name(), code, err
}

// runVersion prints the binary's version, the Istio library it judges calls with, and
// the software each backend runs.
func runVersion(s Streams) int {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(s.Err, "egresslab version: the binary carries no build information")
		return ExitInfrastructure
	}
	version := info.Main.Version
	for _, kv := range info.Settings {
		switch kv.Key {
		case "vcs.revision":
			version += " (commit " + kv.Value + ")"
		case "vcs.modified":
			if kv.Value == "true" {
				version += " with local changes"
			}
		}
	}
	fmt.Fprintf(s.Out, "egresslab %s, built with %s\n", version, info.GoVersion)
	for _, d := range info.Deps {
		switch d.Path {
		case "istio.io/istio":
			fmt.Fprintf(s.Out, "  Istio library (the simulator, and istiod on local): %s\n", d.Version)
		case "k8s.io/client-go":
			fmt.Fprintf(s.Out, "  Kubernetes client: %s\n", d.Version)
		}
	}
	providers := backend.Providers(backend.Settings{Env: s.env(), Progress: io.Discard})
	for _, name := range backend.Names() {
		if v, ok := providers[name].(backend.Versioned); ok {
			for _, line := range v.Versions() {
				fmt.Fprintf(s.Out, "  %s backend: %s\n", name, line)
			}
		}
	}
	return ExitOK
}

func runLab(ctx context.Context, args []string, s Streams) int {
	if len(args) >= 1 && args[0] == "list" {
		return listLabs(ctx, args[1:], s)
	}
	fs := flag.NewFlagSet("egresslab lab", flag.ContinueOnError)
	fs.SetOutput(s.Err)
	fs.Usage = func() {
		fmt.Fprintf(s.Err, "Usage: egresslab lab NAME [flags]   a lab of labs/ (egresslab lab list names them)\n"+
			"       egresslab lab -f FILE [flags]  your own lab file\n\n")
		fs.PrintDefaults()
	}
	file := fs.String("f", "", "run this lab file (a lab.yaml with the manifests it applies beside it) instead of a lab of labs/")
	backendName := fs.String("backend", "auto", "where to run: auto, "+strings.Join(backend.Names(), ", "))
	instructor := fs.Bool("instructor", false, "pause before each step until Enter is pressed (for workshops)")
	entryFile := fs.String("entry", "", "a ServiceEntry file to apply instead of the lab's entry (labs/serviceentry/jsonplaceholder.yaml in the ServiceEntry lab)")
	url := fs.String("url", "", "the call to make instead of the lab's main call (the ServiceEntry lab: "+serviceEntryURL+")")
	showConfig := fs.Bool("show-config", false, "print the sidecar's config for the calls the lab marks, before and after a change, as a diff")
	markdown := fs.Bool("markdown", false, "write the lab's handout (Markdown) to standard output and run nothing")
	killercodaDir := fs.String("killercoda", "", "write the lab as a Killercoda scenario into this new (or empty) folder and run nothing; "+
		"run from the repository's root, whose files the lab's commands name are copied into it (docs/handouts.md)")
	keep := keepFlag(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return exitForFlagError(err)
	}
	var l *labfile.Lab
	switch {
	case *file != "" && len(positional) == 0:
		l, err = labs.LoadFile(*file)
	case *file == "" && len(positional) == 1:
		l, err = labs.Load(positional[0])
	case *file != "":
		return badInput(s, fmt.Errorf("egresslab lab -f %s runs that file: give no lab name besides it (got %q)", *file, positional))
	default:
		return badInput(s, fmt.Errorf("egresslab lab: name one lab (got %d: %q); egresslab lab list names them", len(positional), positional))
	}
	if err != nil {
		return badInput(s, err)
	}
	if *markdown {
		if err := handout.Write(s.Out, l); err != nil {
			fmt.Fprintf(s.Err, "egresslab: write the handout of %s: %v\n", l.File, err)
			return ExitUnexpected
		}
		return ExitOK
	}
	if *killercodaDir != "" {
		written, err := killercoda.Write(*killercodaDir, l)
		if err != nil {
			return badInput(s, err)
		}
		fmt.Fprintf(s.Out, "egresslab: wrote the Killercoda scenario of %s to %s: %d files (index.json; intro, %d steps with a check, finish; "+
			"the repository's files the commands name, as assets).\nPublish it from a Git repository linked to a Killercoda creator profile (docs/handouts.md).\n",
			l.File, *killercodaDir, len(written), len(l.Steps))
		return ExitOK
	}
	opts := lab.Options{URL: *url, ShowConfig: *showConfig}
	if *entryFile != "" {
		if opts.Entry, err = loadEntry(*entryFile); err != nil {
			return badInput(s, err)
		}
	}
	run, _, err := lab.Override(l, opts)
	if err != nil {
		return badInput(s, err)
	}

	b, release, why, code := open(ctx, *backendName, s, keep(), callsTo(run)...)
	if b == nil {
		return code
	}
	defer release()

	var nopts []narrate.Option
	nopts = append(nopts, narrate.WithColor(colorFor(s)), narrate.WithWidth(widthFor(s)))
	if *instructor {
		nopts = append(nopts, narrate.WithPause(s.In))
	}
	n := narrate.New(s.Out, nopts...)
	banner := []string{"Backend: " + b.Name() + " (" + why + ").", b.Describe(),
		"On a real cluster (needs Docker and internet): -backend=kind, or `make e2e` for the scenarios. " +
			"With a real kube-apiserver and istiod as local processes, offline: -backend=local."}
	if note := lab.OverrideNote(l, opts); note != "" {
		banner = append(banner, note)
	}
	n.Banner("egresslab · lab: "+l.Title, banner...)
	res, err := lab.Run(ctx, b, l, n, opts)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(s.Err, "egresslab: interrupted; cleaned up")
		return ExitInterrupted
	case err != nil:
		fmt.Fprintf(s.Err, "egresslab: %v\n", err)
		return ExitInfrastructure
	case len(res.Failures) > 0:
		return ExitUnexpected
	}
	return ExitOK
}

// serviceEntryURL is the ServiceEntry lab's main call, for -url's help.
const serviceEntryURL = "http://jsonplaceholder.typicode.com/todos/1"

// callsTo lists the host:ports a lab calls, for the backend's preflight.
func callsTo(l *labfile.Lab) []string {
	var out []string
	for _, c := range l.Calls() {
		if hp := c.URL.HostPort(); !slices.Contains(out, hp) {
			out = append(out, hp)
		}
	}
	return out
}

// listLabs prints the labs in workshop order, each with its summary and the time it
// takes on sim, measured now by running it there (a second or so for all: an instructor
// plans with a figure that cannot be stale); with -names, only their names, one a line,
// for scripts.
func listLabs(ctx context.Context, args []string, s Streams) int {
	fs := flag.NewFlagSet("egresslab lab list", flag.ContinueOnError)
	fs.SetOutput(s.Err)
	names := fs.Bool("names", false, "print only the labs' names, one a line")
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if fs.NArg() > 0 {
		return badInput(s, fmt.Errorf("egresslab lab list takes no arguments (got %q); egresslab lab NAME runs one", fs.Args()))
	}
	all, err := labs.All()
	if err != nil {
		fmt.Fprintf(s.Err, "egresslab: %v\n", err)
		return ExitBadInput
	}
	if *names {
		for _, l := range all {
			fmt.Fprintln(s.Out, l.Name)
		}
		return ExitOK
	}
	fmt.Fprintf(s.Out, "The labs, in workshop order (egresslab lab NAME runs one; make lab LAB=NAME),\n"+
		"each with the time it takes on sim, run just now:\n\n")
	code := ExitOK
	for i, l := range all {
		took, err := timeOnSim(ctx, l)
		onSim := fmt.Sprintf("%.2fs on sim", took.Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return ExitInterrupted
			}
			onSim, code = "FAILS on sim: egresslab lab "+l.Name+" -backend=sim says why", ExitUnexpected
		}
		fmt.Fprintf(s.Out, "%2d. %-16s %s (%d steps, %s)\n", i+1, l.Name, l.Title, len(l.Steps), onSim)
		fmt.Fprintf(s.Out, "%s\n", narrate.Wrap(l.Summary, widthFor(s), strings.Repeat(" ", 21)))
	}
	return code
}

// timeOnSim runs l on a sim backend of its own, untold, and says how long it took; the
// error is for a lab that did not behave as its file expects.
func timeOnSim(ctx context.Context, l *labfile.Lab) (time.Duration, error) {
	b := sim.New()
	defer b.Close()
	start := time.Now()
	res, err := lab.Run(ctx, b, l, narrate.New(io.Discard), lab.Options{})
	took := time.Since(start)
	if err == nil && len(res.Failures) > 0 {
		err = errors.New(strings.Join(res.Failures, "; "))
	}
	return took, err
}

func runCheck(ctx context.Context, args []string, s Streams) int {
	fs := flag.NewFlagSet("egresslab check", flag.ContinueOnError)
	fs.SetOutput(s.Err)
	fs.Usage = func() {
		fmt.Fprintf(s.Err, "Usage: egresslab check [flags] URL\n"+
			"       egresslab check [flags] -calls FILE\n\n"+
			"Would a call to URL (or each call of FILE) be allowed, under this mesh mode, with these objects applied?\n"+
			"The answer is Istio's own config generator and simulator's; on a cluster backend, what its sidecar does.\n\n")
		fs.PrintDefaults()
	}
	backendName := fs.String("backend", "sim", "where to ask: "+strings.Join(backend.Names(), ", ")+" or auto")
	mode := fs.String("mode", manifest.RegistryOnly, "outboundTrafficPolicy mode: "+strings.Join(manifest.Modes, ", "))
	var paths, entryFiles listFlag
	fs.Var(&paths, "f", "a file or folder of Kubernetes and Istio objects to apply, as kubectl apply -f (repeat for more; objects\n"+
		"that name no namespace go in "+apps.Client.Namespace+", the client's)")
	fs.Var(&entryFiles, "entry", "a file of Istio objects (a ServiceEntry) to apply, after those of -f (repeat for more)")
	from := fs.String("from", apps.Client.String(), "the workload that calls, NAMESPACE/NAME: one the -f objects deploy, or else the\n"+
		"lab's client app deployed as that workload")
	address := fs.String("address", "", "the IP address the call connects to instead of the one DNS gives the URL's host\n"+
		"(as curl --resolve; the Host and SNI stay the URL's)")
	method := fs.String("method", "GET", "the HTTP method of the call, with no body (as curl -X), e.g. POST: an AuthorizationPolicy\n"+
		"may let one method out and not another")
	calls := fs.String("calls", "", "a file of calls to check in one run, each `- call: URL` with from, address and expect\n"+
		"as in a lab file (docs/check.md); printed as a table")
	showConfig := fs.Bool("show-config", false, "also print the sidecar's config that decided the call")
	expect := fs.String("expect", "", "exit 1 unless the call gets this: a verdict (allowed, blocked, unreachable, in_mesh, denied), or an\n"+
		"expectation as a lab writes it, e.g. '{verdict: ALLOWED, cluster: \"outbound|443||api.example.com\"}'")
	output := fs.String("o", "text", "the answer's form: text, or json (the verdict, its evidence, the simulator's verdict)")
	keep := keepFlag(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return exitForFlagError(err)
	}
	q := check.Question{Mode: strings.ToUpper(*mode), WithConfig: *showConfig}
	if !slices.Contains(manifest.Modes, q.Mode) {
		return badInput(s, fmt.Errorf("-mode %q: use one of %s", *mode, strings.Join(manifest.Modes, ", ")))
	}
	if *output != "text" && *output != "json" {
		return badInput(s, fmt.Errorf("-o %q: use text or json", *output))
	}
	if *calls != "" {
		if len(positional) > 0 {
			return badInput(s, fmt.Errorf("give either a URL or -calls %s, not both (got %s)", *calls, strings.Join(positional, " ")))
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, name := range []string{"from", "address", "method", "expect"} {
			if set[name] {
				return badInput(s, fmt.Errorf("-%s is for a URL's call; with -calls, write `%s:` on each call of %s", name, name, *calls))
			}
		}
		if q.Calls, err = loadCalls(*calls); err != nil {
			return badInput(s, err)
		}
	} else {
		if len(positional) != 1 {
			return badInput(s, fmt.Errorf("give one URL to call (got %d: %q), or -calls FILE; egresslab check -h says more", len(positional), positional))
		}
		c, err := urlCall(positional[0], *from, *address, *method, *expect)
		if err != nil {
			return badInput(s, err)
		}
		q.Calls = []check.Call{c}
	}
	if len(paths) > 0 {
		set, err := manifest.LoadPaths(paths, apps.Client.Namespace)
		if err != nil {
			return badInput(s, err)
		}
		q.Objects = append(q.Objects, set)
	}
	for _, f := range entryFiles {
		set, err := loadEntry(f)
		if err != nil {
			return badInput(s, err)
		}
		q.Objects = append(q.Objects, set)
	}

	answers, name, code, err := ask(ctx, *backendName, s, keep(), q)
	if name == "" {
		return code
	}
	var refused manifest.Errors
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(s.Err, "egresslab check: interrupted; cleaned up")
		return ExitInterrupted
	case errors.As(err, &refused):
		return badInput(s, err)
	case err != nil:
		fmt.Fprintf(s.Err, "egresslab check: %v\n", err)
		return ExitInfrastructure
	}
	files := append(slices.Clone(paths), entryFiles...)
	switch {
	case *output == "json":
		err = writeCheckJSON(s.Out, q, files, name, answers, *calls != "")
	case *calls != "":
		err = writeCheckTable(s.Out, q, name, answers)
	default:
		writeCheckText(s.Out, q, name, answers[0])
	}
	if err != nil {
		fmt.Fprintf(s.Err, "egresslab check: %v\n", err)
		return ExitInfrastructure
	}
	code = ExitOK
	for _, a := range answers {
		if a.Unsettled != nil {
			// The last call's verdict is not the answer: the sidecar had not (yet) the
			// config the simulator judges, or the cluster does something else; say both.
			fmt.Fprintf(s.Err, "egresslab check: %s from %s: %v\n", a.Call.Call, a.From, a.Unsettled)
			code = ExitUnexpected
		}
		if len(a.Mismatches) > 0 {
			fmt.Fprintf(s.Err, "egresslab check: %s from %s: expected %s, got %s: %s\n",
				a.Call.Call, a.From, a.Expect.Kind, a.Verdict, strings.Join(a.Mismatches, "; "))
			code = ExitUnexpected
		}
	}
	return code
}

// urlCall is the call check's URL and flags ask about.
func urlCall(url, from, address, method, expect string) (check.Call, error) {
	var c check.Call
	var err error
	if c.Call, err = backend.ParseCall(url); err != nil {
		return c, err
	}
	if method != http.MethodGet {
		if c.Call, err = c.Call.Using(method); err != nil {
			return c, fmt.Errorf("-method: %w", err)
		}
	}
	if address != "" {
		if c.Call, err = c.Call.At(address); err != nil {
			return c, fmt.Errorf("-address: %w", err)
		}
	}
	if c.From, err = parseWorkload(from); err != nil {
		return c, fmt.Errorf("-from: %w", err)
	}
	if expect != "" {
		e, err := labfile.ParseExpect(expect)
		if err != nil {
			return c, err
		}
		c.Expect = &e
	}
	return c, nil
}

// parseWorkload reads NAMESPACE/NAME, each a Kubernetes name.
func parseWorkload(s string) (backend.Workload, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || !dnsLabel.MatchString(ns) || !dnsLabel.MatchString(name) {
		return backend.Workload{}, fmt.Errorf("%q: name the workload as NAMESPACE/NAME, each lower-case letters, digits and '-', e.g. team-b/client", s)
	}
	return backend.Workload{Namespace: ns, Name: name}, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// loadCalls reads a calls file (labfile.ParseCalls).
func loadCalls(file string) ([]check.Call, error) {
	data, err := manifest.ReadInputFile(file)
	if err != nil {
		return nil, fmt.Errorf("-calls %s: %w", file, err)
	}
	parsed, err := labfile.ParseCalls(file, data, apps.Client)
	if err != nil {
		return nil, err
	}
	return check.CallsOf(parsed), nil
}

func writeCheckText(w io.Writer, q check.Question, backendName string, a check.Answer) {
	from := ""
	if a.From != apps.Client {
		from = " from " + a.From.String()
	}
	at := ""
	if a.Call.Call.Address != "" {
		at = " at " + a.Call.Call.Address
	}
	if p := a.Call.Call.Proxy; p != nil {
		at = " through the proxy " + p.Host
	}
	what := a.Call.Call.RequestMethod()
	if a.Call.Call.TCP() {
		what = "TCP connection to" // no request: the client's bytes and the far end's reply
	}
	fmt.Fprintf(w, "%s %s%s%s under %s with %s: %s\n", what, a.Call.Call, at, from, q.Mode, applied(q.Objects), a.Verdict)
	for _, f := range a.Verdict.Evidence.Fields() {
		fmt.Fprintf(w, "  %-30s %s\n", f[0], f[1])
	}
	fmt.Fprintf(w, "  (%s backend)\n", backendName)
	if a.SidecarConfig != "" {
		fmt.Fprintf(w, "\nSidecar config that decided the call:\n%s", a.SidecarConfig)
	}
}

// writeCheckTable writes one line per call, for a CI job's log: what was called, from
// where, the verdict with the cluster (or reason) that decided it, and whether it is
// what the call expects.
func writeCheckTable(w io.Writer, q check.Question, backendName string, answers []check.Answer) error {
	fmt.Fprintf(w, "%d calls under %s with %s (%s backend):\n", len(answers), q.Mode, applied(q.Objects), backendName)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALL\tFROM\tVERDICT\tREASON\tCLUSTER\tRESULT")
	for _, a := range answers {
		call := a.Call.Call.String()
		if a.Call.Call.Address != "" {
			call += " @" + a.Call.Call.Address
		}
		result := "-"
		switch {
		case a.Unsettled != nil:
			result = "UNSETTLED (the backend did not come to the simulator's verdict)"
		case len(a.Mismatches) > 0:
			result = "UNEXPECTED: " + strings.Join(a.Mismatches, "; ")
		case a.Expect != nil:
			result = "ok"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", call, a.From, a.Verdict.Kind, orDash(a.Verdict.Reason), orDash(a.Verdict.Evidence.Cluster), result)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkCall is one call's answer as JSON (-o json), for a CI job to read.
type checkCall struct {
	URL     string `json:"url"`
	Address string `json:"address,omitempty"`
	Method  string `json:"method,omitempty"` // "" for GET
	From    string `json:"from"`
	outcome.Verdict
	// Simulated is what Istio's simulator computes for the same objects; Unsettled,
	// when set, says why the verdict is not that.
	Simulated *outcome.Verdict `json:"simulated,omitempty"`
	Unsettled string           `json:"unsettled,omitempty"`
	// Passed: settled, and what the call expects (true when it expects nothing).
	Passed        bool     `json:"passed"`
	Mismatches    []string `json:"mismatches,omitempty"`
	SidecarConfig string   `json:"sidecarConfig,omitempty"`
}

// checkRun is what a check was asked: the mode, the files applied and the backend.
type checkRun struct {
	Mode    string   `json:"mode"`
	Files   []string `json:"files"`
	Backend string   `json:"backend"`
}

// writeCheckJSON writes the answer as one JSON object: for a URL, the call's answer
// with the run's mode, files and backend; for a calls file, those with "calls", one
// answer per call.
func writeCheckJSON(w io.Writer, q check.Question, files []string, backendName string, answers []check.Answer, many bool) error {
	run := checkRun{Mode: q.Mode, Files: files, Backend: backendName}
	if run.Files == nil {
		run.Files = []string{}
	}
	reports := make([]checkCall, len(answers))
	for i, a := range answers {
		r := checkCall{URL: a.Call.Call.String(), Address: a.Call.Call.Address, Method: a.Call.Call.Method, From: a.From.String(), Verdict: a.Verdict,
			Passed: a.Passed(), Mismatches: a.Mismatches, SidecarConfig: a.SidecarConfig}
		if a.Simulated.Kind != "" {
			r.Simulated = &a.Simulated
		}
		if a.Unsettled != nil {
			r.Unsettled = a.Unsettled.Error()
		}
		reports[i] = r
	}
	var v any = struct {
		checkRun
		Calls []checkCall `json:"calls"`
	}{run, reports}
	if !many {
		v = struct {
			checkRun
			checkCall
		}{run, reports[0]}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write the answer as JSON: %w", err)
	}
	return nil
}

// runBundle writes a workshop bundle through the provider that downloads and pulls
// what it runs (a backend.Bundler: kind).
func runBundle(ctx context.Context, args []string, s Streams) int {
	fs := flag.NewFlagSet("egresslab bundle", flag.ContinueOnError)
	fs.SetOutput(s.Err)
	fs.Usage = func() {
		fmt.Fprintf(s.Err, "Usage: egresslab bundle [flags] FILE\n\n"+
			"Saves what a kind run downloads and pulls (Istio's charts and images at the release it installs) in FILE,\n"+
			"from Istio's chart repository and docker.io, or the mirrors EGRESSLAB_ISTIO_CHARTS and EGRESSLAB_REGISTRY_MIRROR\n"+
			"name. A kind run with EGRESSLAB_BUNDLE=FILE serves them to itself and fetches nothing from the internet.\n\n")
		fs.PrintDefaults()
	}
	var from backend.BundleSource
	fs.StringVar(&from.IstioSource, "istio-source", "", "Istio built from source: its source tree, whose charts are packaged as its release packages them")
	fs.StringVar(&from.DockerArchive, "images", "", "Istio built from source: a docker save of its images, tagged as Istio publishes them")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return exitForFlagError(err)
	}
	if len(positional) != 1 {
		fmt.Fprintf(s.Err, "egresslab bundle: name the one file to write (got %d arguments)\n", len(positional))
		fs.Usage()
		return ExitBadInput
	}
	if fi, err := os.Stat(filepath.Dir(positional[0])); err != nil || !fi.IsDir() {
		return badInput(s, fmt.Errorf("egresslab bundle %s: the folder %s does not exist: create it, or name a file in a folder that does",
			positional[0], filepath.Dir(positional[0])))
	}
	if err := from.Check(); err != nil {
		return badInput(s, err)
	}
	for name, p := range backend.Providers(backend.Settings{Env: s.env(), Progress: s.Err}) {
		bundler, ok := p.(backend.Bundler)
		if !ok {
			continue
		}
		said, err := bundler.WriteBundle(ctx, positional[0], from)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintln(s.Err, "egresslab bundle: interrupted; nothing written")
			return ExitInterrupted
		case err != nil:
			fmt.Fprintf(s.Err, "egresslab bundle: %s: %v\n", name, err)
			return ExitInfrastructure
		}
		fmt.Fprintf(s.Out, "egresslab bundle: %s\n", said)
		return ExitOK
	}
	fmt.Fprintln(s.Err, "egresslab bundle: no backend writes bundles")
	return ExitInfrastructure
}

// runClean removes what backends keep on purpose (the kind cluster the lab and check
// commands keep for the next run), through each provider that is a backend.Cleaner.
func runClean(ctx context.Context, s Streams) int {
	code := ExitOK
	for name, p := range backend.Providers(backend.Settings{Env: s.env(), Progress: s.Err}) {
		c, ok := p.(backend.Cleaner)
		if !ok {
			continue
		}
		said, err := c.Clean(ctx)
		if err != nil {
			fmt.Fprintf(s.Err, "egresslab clean: %s: %v\n", name, err)
			code = ExitUnexpected
			continue
		}
		fmt.Fprintf(s.Out, "egresslab clean: %s: %s\n", name, said)
	}
	return code
}

// loadEntry reads a user's ServiceEntry file and checks that it holds only Istio objects.
func loadEntry(path string) (*manifest.Set, error) {
	set, err := manifest.LoadFile(path, apps.Client.Namespace)
	if err != nil {
		return nil, err
	}
	for _, o := range set.Objects {
		if o.Istio == nil {
			return nil, &manifest.Error{File: path, Doc: o.Doc, Object: o.Kind + " " + o.Name,
				Reason: "is not an Istio object; -entry takes ServiceEntry files",
				Fix:    "pass only Istio networking objects, e.g. kind: ServiceEntry"}
		}
	}
	return set, nil
}

// open picks and opens the backend. On failure b is nil and code is the exit code: an
// unknown backend name is bad input; a backend that cannot start here is an
// infrastructure failure, said as such (on kind, opening creates a cluster and installs
// Istio, so "nothing was applied" would not be true).
func open(ctx context.Context, name string, s Streams, keep backend.Keep, callsTo ...string) (b backend.Backend, release func(), why string, code int) {
	p, why, err := backend.Select(ctx, name, backend.Settings{Env: s.env(), Progress: s.Err, CallsTo: callsTo, Keep: keep})
	if unknown := (*backend.UnknownError)(nil); errors.As(err, &unknown) {
		return nil, nil, "", badInput(s, err)
	}
	if err != nil {
		fmt.Fprintf(s.Err, "egresslab: %v\n", err)
		return nil, nil, "", ExitInfrastructure
	}
	b, release, err = p.Open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(s.Err, "egresslab: interrupted while setting up backend %s; cleaned up\n", p.Name())
			return nil, nil, "", ExitInterrupted
		}
		fmt.Fprintf(s.Err, "egresslab: could not set up backend %s: %v\n", p.Name(), err)
		return nil, nil, "", ExitInfrastructure
	}
	return b, release, why, ExitOK
}

// keepFlag defines -keep on fs. The lab and check commands keep a kind cluster for the
// next run by default (a workshop runs lab after lab on one cluster); -keep=false deletes
// it at the end. The flag, when given, wins over EGRESSLAB_KEEP, which the backend reads.
// The func returns what to hand the backend once fs is parsed.
func keepFlag(fs *flag.FlagSet) func() backend.Keep {
	keep := fs.Bool("keep", true, "keep the kind cluster at the end for the next lab to reuse (cleared of what this run left);\n"+
		"-keep=false deletes it. Wins over EGRESSLAB_KEEP (0 or 1). egresslab clean deletes a kept cluster")
	return func() backend.Keep {
		k := backend.Keep{ByDefault: true}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "keep" {
				k.Flag = keep
			}
		})
		return k
	}
}

// applied names what a list of sets applies, by kind: "1 ServiceEntry", "1 Sidecar
// and 2 ServiceEntries", "no objects".
func applied(sets []*manifest.Set) string {
	count := map[string]int{}
	var kinds []string
	for _, set := range sets {
		for _, o := range set.Objects {
			if count[o.Kind] == 0 {
				kinds = append(kinds, o.Kind)
			}
			count[o.Kind]++
		}
	}
	if len(kinds) == 0 {
		return "no objects"
	}
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", count[k], narrate.Plural(k, count[k]))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func badInput(s Streams, err error) int {
	fmt.Fprintf(s.Err, "egresslab: %v\nNothing was applied.\n", err)
	return ExitBadInput
}

func exitForFlagError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	return ExitBadInput
}

func colorFor(s Streams) bool {
	if s.Color != nil {
		return *s.Color
	}
	if f, ok := s.Out.(*os.File); ok {
		return narrate.ColorFor(f, s.env()("NO_COLOR"), s.env()("TERM"))
	}
	return false
}

// widthFor is the columns to wrap output to: the terminal's, when output is one.
func widthFor(s Streams) int {
	f, _ := s.Out.(*os.File) // nil when output is not a file
	return narrate.Width(f, s.env()("COLUMNS"))
}

// parseInterspersed parses flags that may come before or after the positional
// arguments ("check URL -entry x" as well as "check -entry x URL").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
