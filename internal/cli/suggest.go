package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/manifest"
	"github.com/egresslab/egresslab/harness/narrate"
	"github.com/egresslab/egresslab/internal/suggest"
)

// runSuggest reads sidecars' access logs and writes the ServiceEntries that keep their
// passed-through calls working under REGISTRY_ONLY (internal/suggest), proved first by
// replaying each call on sim through internal/check, as `egresslab check` asks it.
// Nothing is written unless every log was read whole and every replayed call was
// allowed.
func runSuggest(ctx context.Context, args []string, s Streams) int {
	fs := flag.NewFlagSet("egresslab suggest", flag.ContinueOnError)
	fs.SetOutput(s.Err)
	fs.Usage = func() {
		fmt.Fprintf(s.Err, "Usage: egresslab suggest -f FILE [-f NAMESPACE/WORKLOAD=FILE]... [-context CONTEXT -n NAMESPACE]... [-o OUT] [-verify=false]\n\n"+
			"Reads istio-proxy access logs (Istio's default TEXT or JSON format) of a mesh under ALLOW_ANY and writes the\n"+
			"ServiceEntries that keep every call they show through PassthroughCluster working under REGISTRY_ONLY,\n"+
			"after replaying each call with them on Istio's simulator (docs/suggest.md).\n\n")
		fs.PrintDefaults()
	}
	var files listFlag
	fs.Var(&files, "f", "an access log, `FILE`: kubectl logs POD -c istio-proxy > FILE; - reads standard input. NAMESPACE/WORKLOAD=FILE says\n"+
		"which workload's sidecar wrote it: the entries then name their callers, and exportTo their namespaces (repeat for more)")
	var namespaces listFlag
	fs.Var(&namespaces, "n", "read the istio-proxy log of every pod with a sidecar in `NAMESPACE`, from the cluster of -context, each as\n"+
		"the workload of its Deployment (repeat, or separate with commas, for more)")
	kubeContext := fs.String("context", "", "the kubeconfig `CONTEXT` -n reads from (KUBECONFIG or ~/.kube/config, as kubectl); the current one if not given")
	out := fs.String("o", "", "write the entries to `OUT` (whole, or not at all) instead of standard output")
	verify := fs.Bool("verify", true, "replay each call under REGISTRY_ONLY with the entries on Istio's simulator first, and write nothing\n"+
		"unless every one is allowed")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return exitForFlagError(err)
	}
	if len(positional) > 0 {
		return suggestBadInput(s, fmt.Errorf("it takes its logs with -f FILE, not as arguments (got %q)", positional))
	}
	var nss []string
	for _, n := range namespaces {
		for _, ns := range strings.Split(n, ",") {
			if ns = strings.TrimSpace(ns); ns != "" && !slices.Contains(nss, ns) {
				nss = append(nss, ns)
			}
		}
	}
	if *kubeContext != "" && len(nss) == 0 {
		return suggestBadInput(s, fmt.Errorf("-context %s: name the namespaces to read there with -n NAMESPACE", *kubeContext))
	}
	if len(files) == 0 && len(nss) == 0 {
		return suggestBadInput(s, errors.New("name at least one access log with -f FILE (kubectl logs POD -c istio-proxy > FILE), "+
			"or the namespaces to read from a cluster with -n NAMESPACE"))
	}
	if *out != "" {
		if err := suggest.CheckOutput(*out); err != nil {
			return suggestBadInput(s, err)
		}
	}

	obs := suggest.NewObservations()
	var problems []error
	for _, arg := range files {
		src := logSource(arg)
		if err := readLog(ctx, obs, src, s.In); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(s.Err, "egresslab suggest: interrupted; nothing written")
				return ExitInterrupted
			}
			problems = append(problems, err)
		}
	}
	if len(nss) > 0 {
		logs, err := clusterLogs(*kubeContext)
		if err != nil {
			return suggestBadInput(s, err)
		}
		found, err := readClusterLogs(ctx, obs, logs, nss)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintln(s.Err, "egresslab suggest: interrupted; nothing written")
			return ExitInterrupted
		case err != nil:
			fmt.Fprintf(s.Err, "egresslab suggest: %v\nNothing was written.\n", err)
			return ExitInfrastructure
		}
		problems = append(problems, found...)
	}
	if len(problems) > 0 {
		return suggestBadInput(s, errors.Join(problems...))
	}
	sg, err := suggest.Build(obs)
	if err != nil {
		fmt.Fprintf(s.Err, "egresslab suggest: %v\nNothing was written.\n", err)
		return ExitUnexpected
	}
	sg.Report(s.Err)
	if len(sg.Entries) == 0 {
		fmt.Fprintln(s.Err, "egresslab suggest: no entry to write: no call the logs show went out through PassthroughCluster "+
			"to a destination an entry can cover. Nothing was written.")
		return ExitOK
	}

	if *verify {
		if code := replay(ctx, s, sg); code != ExitOK {
			return code
		}
	} else {
		fmt.Fprintln(s.Err, "Not replayed (-verify=false): the entries are Istio-valid, but no call was tried with them.")
	}

	if *out == "" {
		if _, err := s.Out.Write(sg.YAML); err != nil {
			fmt.Fprintf(s.Err, "egresslab suggest: write the entries: %v\n", err)
			return ExitUnexpected
		}
		return ExitOK
	}
	if err := suggest.WriteFile(*out, sg.YAML); err != nil {
		// The input was good; the file could not be written (a full disk, a folder
		// without write access): nothing is half-written, and it is not the input's fault.
		fmt.Fprintf(s.Err, "egresslab suggest: %v\nNothing was written.\n", err)
		return ExitInfrastructure
	}
	fmt.Fprintf(s.Out, "egresslab suggest: wrote %d %s to %s\n", len(sg.Entries), narrate.Plural("ServiceEntry", len(sg.Entries)), *out)
	return ExitOK
}

// logSource reads -f's NAMESPACE/WORKLOAD=FILE, or FILE: a path whose part before '='
// is not a workload's name is a path (./a=b names the file a=b).
func logSource(arg string) suggest.Source {
	if who, path, ok := strings.Cut(arg, "="); ok && path != "" {
		if w, err := parseWorkload(who); err == nil {
			return suggest.Source{Name: path, Workload: &w}
		}
	}
	return suggest.Source{Name: arg}
}

// readLog streams one log into obs: standard input for "-". A regular file or a pipe
// (-f <(kubectl logs …), a named FIFO) is read as it comes, line by line; a device or a
// folder is refused, since /dev/urandom would never end. A FIFO waits for its writer
// (kubectl starting), and Ctrl-C stops that wait, and a read waiting for more, at once.
func readLog(ctx context.Context, obs *suggest.Observations, src suggest.Source, stdin io.Reader) error {
	if src.Name == "-" {
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		src.Name = "standard input"
		return obs.Read(ctx, src, stdin)
	}
	cannot := func(reason, fix string) error { return &suggest.Problem{File: src.Name, Reason: reason, Fix: fix} }
	fi, err := os.Stat(src.Name)
	if err != nil {
		return cannot(fmt.Sprintf("cannot be read: %v", errors.Unwrap(err)),
			"check the path; it is read relative to the directory you ran the command from")
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		return cannot("is a folder, not a log", "name each log file with its own -f")
	case !m.IsRegular() && m&fs.ModeNamedPipe == 0:
		return cannot(fmt.Sprintf("is not a file or a pipe (mode %s): it may never end", m), "save the log to a file first")
	}
	f, err := openInterruptibly(ctx, src.Name)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return cannot(fmt.Sprintf("cannot be read: %v", errors.Unwrap(err)), "check its permissions")
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { _ = f.Close() }) // ends a read that waits on a pipe
	defer stop()
	return obs.Read(ctx, src, f)
}

// openInterruptibly opens a file, returning when ctx is done if the open waits (a FIFO
// opens once a writer does); a file opened after that is closed.
func openInterruptibly(ctx context.Context, name string) (*os.File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.Open(name)
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.f != nil {
				_ = o.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// replay asks internal/check, on sim, whether each observed call is allowed under
// REGISTRY_ONLY with the entries applied, and prints the answers as check's table.
func replay(ctx context.Context, s Streams, sg *suggest.Suggestion) int {
	q := sg.Question()
	answers, name, code, err := ask(ctx, "sim", s, backend.Keep{}, q)
	if name == "" {
		return code
	}
	var refused manifest.Errors
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(s.Err, "egresslab suggest: interrupted; nothing written")
		return ExitInterrupted
	case errors.As(err, &refused):
		fmt.Fprintf(s.Err, "egresslab suggest: Istio's simulator refuses the suggested entries: %v\nNothing was written.\n", err)
		return ExitUnexpected
	case err != nil:
		fmt.Fprintf(s.Err, "egresslab suggest: replay the calls: %v\nNothing was written.\n", err)
		return ExitInfrastructure
	}
	fmt.Fprintln(s.Err, "Replayed under REGISTRY_ONLY with the entries, each call once from each workload that made it:")
	if err := writeCheckTable(s.Err, q, name, answers); err != nil {
		fmt.Fprintf(s.Err, "egresslab suggest: %v\n", err)
		return ExitInfrastructure
	}
	for _, line := range sg.NotReplayed() {
		fmt.Fprintf(s.Err, "Not replayed: %s\n", line)
	}
	code = ExitOK
	for _, a := range answers {
		if a.Passed() {
			continue
		}
		evidence := make([]string, 0, 4)
		for _, f := range a.Verdict.Evidence.Fields() {
			evidence = append(evidence, f[0]+" "+f[1])
		}
		fmt.Fprintf(s.Err, "egresslab suggest: %s from %s: expected ALLOWED with the entries, got %s (%s)\n",
			a.Call.Call, a.From, a.Verdict, strings.Join(evidence, ", "))
		code = ExitUnexpected
	}
	if code != ExitOK {
		fmt.Fprintln(s.Err, "The entries do not keep every call working: nothing was written.")
	}
	return code
}

func suggestBadInput(s Streams, err error) int {
	fmt.Fprintf(s.Err, "egresslab suggest: %v\nNothing was written.\n", err)
	return ExitBadInput
}
