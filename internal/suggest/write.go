package suggest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/egresslab/egresslab/harness/narrate"
)

// WriteFile writes data to path whole or not at all: into a new file beside it, renamed
// over path once complete, so that a reader (kubectl apply, a CI job) never sees half
// of it and a failure leaves what was there.
func WriteFile(path string, data []byte) (err error) {
	if err := CheckOutput(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil { // CreateTemp's 0600 would hide it from a CI job's other user
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CheckOutput refuses an output path WriteFile cannot write: in a folder that does not
// exist, or a folder itself. Asked before the logs are read, it saves reading them for
// nothing.
func CheckOutput(path string) error {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("-o %s: the folder %s does not exist: create it, or name a file in a folder that does", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("-o %s: it is a folder: name a file", path)
	}
	return nil
}

// Report writes what was read and what was suggested, for a person: the counts, the
// lines skipped (with the first few), the entries, and every call no entry covers.
func (s *Suggestion) Report(w io.Writer) {
	c := s.Counts
	fmt.Fprintf(w, "Read %s, %s: %s (%d TEXT, %d JSON).\n", narrate.Count(len(s.Sources), "log"), narrate.Count(c.Lines, "line"),
		narrate.Count(c.Text+c.JSON, "access-log line"), c.Text, c.JSON)
	fmt.Fprintf(w, "  %s through PassthroughCluster: these need entries\n", narrate.Count(c.Passthrough, "call"))
	fmt.Fprintf(w, "  %s to registered services (outbound|PORT||HOST): no entry needed\n", narrate.Count(c.Registered, "call"))
	fmt.Fprintf(w, "  %s blocked already (BlackHoleCluster, block_all)\n", narrate.Count(c.Blocked, "call"))
	fmt.Fprintf(w, "  %s with no cluster (Envoy answered itself: NR, NC, …) or another of Envoy's own\n", narrate.Count(c.Other, "line"))
	fmt.Fprintf(w, "  %s not a sidecar's outbound call (%d inbound, %d of a gateway): skipped\n", narrate.Count(c.Inbound+c.Gateway, "line"), c.Inbound, c.Gateway)
	fmt.Fprintf(w, "  %s not in the access-log format (pilot-agent's own, …): skipped\n", narrate.Count(c.NotLog, "line"))
	for _, sk := range s.Skipped {
		examples := make([]string, len(sk.Examples))
		for i, e := range sk.Examples {
			examples[i] = fmt.Sprintf("line %d: %s", e.Line, e.Text)
		}
		fmt.Fprintf(w, "  %s: skipped %s, %s\n    %s\n", sk.File, narrate.Count(sk.Count, "line"), sk.Reason, strings.Join(examples, "\n    "))
	}
	fmt.Fprintf(w, "ServiceEntries suggested: %d\n", len(s.Entries))
	for _, e := range s.Entries {
		ports := make([]string, len(e.Ports))
		for i, p := range e.Ports {
			ports[i] = fmt.Sprintf("%d/%s", p.Number, p.Protocol)
		}
		fmt.Fprintf(w, "  %-40s %-24s resolution %-4s %s\n", e.Name, strings.Join(ports, ","), e.Resolution(), callers(e.Callers))
	}
	if len(s.Uncovered) > 0 {
		fmt.Fprintf(w, "NOT COVERED: %s will be blocked under REGISTRY_ONLY; no entry can be written for them from the logs:\n",
			narrate.Count(len(s.Uncovered), "destination"))
		for _, u := range s.Uncovered {
			fmt.Fprintf(w, "  %s: %s from %s, first at %s.\n    %s\n", u.What, narrate.Count(u.Calls, "call"), callers(u.Callers), u.First, u.Reason)
		}
	}
}
