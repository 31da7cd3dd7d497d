// Package narrate prints a lab as a story: numbered steps, each with a heading, a short
// why, the YAML or setting applied, the command an attendee would type on a real
// cluster, the verdict with its evidence, and the time the step took.
//
// It only prints. Whether a call or a step passed is decided by the engine
// (harness/lab), which hands the narrator the verdict, the mismatches and, at the end,
// the failures and skips to show; the narrator keeps no record of them.
package narrate

import (
	"bufio"
	"context"
	"fmt"
	"golang.org/x/term"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/outcome"
)

// Narrator writes a lab's story to a terminal or a log.
type Narrator struct {
	out       io.Writer
	color     bool
	pause     io.Reader   // set in instructor mode: wait for Enter before each step
	lines     chan string // lines read from pause, by one reader goroutine
	start     time.Time
	stepStart time.Time
	step      int // the number of the step being told, for headings and timings
	width     int // the columns text is wrapped to
}

// DefaultWidth is the columns text is wrapped to when the terminal's are not known.
const DefaultWidth = 78

// Option configures a Narrator.
type Option func(*Narrator)

// WithWidth wraps text to width columns (the terminal's: Width), never inside a word.
func WithWidth(width int) Option { return func(n *Narrator) { n.width = max(width, 20) } }

// WithColor turns ANSI colour on or off.
func WithColor(on bool) Option { return func(n *Narrator) { n.color = on } }

// WithPause makes the narrator wait for a line on in before each step, so an
// instructor can talk the room through it.
func WithPause(in io.Reader) Option {
	return func(n *Narrator) { n.pause = in }
}

// New returns a narrator writing to out.
func New(out io.Writer, opts ...Option) *Narrator {
	n := &Narrator{out: out, start: time.Now(), width: DefaultWidth}
	for _, o := range opts {
		o(n)
	}
	return n
}

// ColorFor reports whether output to f should be coloured: only on a terminal, never
// when noColor (the NO_COLOR variable, https://no-color.org) is set, and never on a
// terminal whose TERM (termName) is "dumb", which shows escape codes as text. A
// character device is not enough: /dev/null is one.
func ColorFor(f *os.File, noColor, termName string) bool {
	return noColor == "" && termName != "dumb" && term.IsTerminal(int(f.Fd()))
}

// Width is the columns to wrap output to f to: the terminal's width, else (f is no
// terminal, or nil: output is not a file) the COLUMNS variable (columns) as shells set
// it, else DefaultWidth; at most DefaultWidth, which reads best, and at least 20.
func Width(f *os.File, columns string) int {
	w := DefaultWidth
	if n, err := strconv.Atoi(columns); err == nil && n > 0 {
		w = n
	}
	if f != nil {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			w = cols
		}
	}
	return min(max(w, 20), DefaultWidth)
}

const (
	bold   = "1"
	dim    = "2"
	red    = "31"
	green  = "32"
	yellow = "33"
	cyan   = "36"
)

func (n *Narrator) paint(code, s string) string {
	if !n.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (n *Narrator) printf(format string, args ...any) { fmt.Fprintf(n.out, format, args...) }

// Banner opens the lab: its title and what the backend's verdicts rest on.
func (n *Narrator) Banner(title string, lines ...string) {
	rule := strings.Repeat("=", n.width)
	n.printf("%s\n%s\n", n.paint(bold, rule), n.paint(bold, "  "+title))
	for _, l := range lines {
		n.printf("%s\n", Wrap(l, n.width, "  "))
	}
	n.printf("%s\n", n.paint(bold, rule))
}

// Pause, in instructor mode, waits for Enter before the next step; it returns at once
// with ctx's error when ctx ends first (Ctrl-C at the prompt stops the lab there, with
// nothing run after it). Outside instructor mode it returns nil at once.
func (n *Narrator) Pause(ctx context.Context) error {
	if n.pause == nil {
		return ctx.Err()
	}
	if n.lines == nil {
		// One reader for the whole run: a read cannot be interrupted, so a prompt that is
		// given up on leaves its read to the next prompt rather than to a second reader.
		n.lines = make(chan string)
		go func() {
			r := bufio.NewReader(n.pause)
			for {
				line, err := r.ReadString('\n')
				if err != nil && line == "" {
					close(n.lines)
					return
				}
				n.lines <- line
			}
		}()
	}
	n.printf("\n%s", n.paint(dim, fmt.Sprintf("[press Enter for step %d] ", n.step+1)))
	select {
	case <-ctx.Done():
		n.printf("\n")
		return ctx.Err()
	case <-n.lines: // a line, or the end of the input: go on
		return nil
	}
}

// Step starts the next step.
func (n *Narrator) Step(title, why string) {
	n.endStep()
	n.step++
	n.printf("\n%s\n", n.paint(bold+";"+cyan, fmt.Sprintf("Step %d. %s", n.step, title)))
	if why != "" {
		n.printf("%s\n", Wrap(why, n.width, "  "))
	}
	n.stepStart = time.Now()
}

func (n *Narrator) endStep() {
	if n.step > 0 && !n.stepStart.IsZero() {
		n.printf("%s\n", n.paint(dim, fmt.Sprintf("  (step %d took %s)", n.step, since(n.stepStart))))
		n.stepStart = time.Time{}
	}
}

// Block shows a titled block of text: YAML applied, a setting, a config dump.
func (n *Narrator) Block(title, text string) {
	n.printf("  %s\n", n.paint(dim, title+":"))
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		n.printf("    %s\n", line)
	}
}

// Command shows what an attendee would type on a real cluster.
func (n *Narrator) Command(cmd string) {
	n.printf("  %s %s\n", n.paint(dim, "on a cluster:"), n.paint(yellow, "$ "+cmd))
}

// Say prints a line of the story.
func (n *Narrator) Say(format string, args ...any) {
	n.printf("%s\n", Wrap(fmt.Sprintf(format, args...), n.width, "  "))
}

// Verdict shows a verdict, its evidence, and whether it was the one expected: as
// expected when mismatches, the engine's list of how it differed, is empty.
func (n *Narrator) Verdict(v outcome.Verdict, want outcome.Kind, mismatches []string) {
	ok := len(mismatches) == 0
	mark, code := "✔", green
	if !ok {
		mark, code = "✘", red
	}
	kindCode := green
	if v.Kind != outcome.Allowed {
		kindCode = red
	}
	n.printf("  %s verdict: %s", n.paint(code, mark), n.paint(bold+";"+kindCode, string(v.Kind)))
	if v.Reason != "" {
		n.printf(" (%s)", v.Reason)
	}
	n.printf("  %s\n", n.paint(dim, "expected "+string(want)))
	for _, f := range v.Evidence.Fields() {
		n.printf("      %-30s %s\n", f[0], f[1])
	}
	if !ok {
		for _, m := range mismatches {
			n.printf("    %s %s\n", n.paint(red, "mismatch:"), m)
		}
	}
}

// Skip says that a call was not made on this backend, and why.
func (n *Narrator) Skip(what, why string) {
	n.printf("  %s\n%s\n", n.paint(dim, "– skipped: "+what), Wrap(why, n.width, "    "))
}

// Failed says that a step could not be carried out, and why.
func (n *Narrator) Failed(err error) {
	n.printf("  %s %v\n", n.paint(red, "✘ failed:"), err)
}

// Diff shows how text changed from before to after, as a unified diff.
func (n *Narrator) Diff(title, beforeName, before, afterName, after string) {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: beforeName, ToFile: afterName, Context: 3,
	})
	if err != nil {
		d = err.Error()
	}
	if d == "" {
		d = "(no change)\n"
	}
	n.printf("  %s\n", n.paint(dim, title+":"))
	for _, line := range strings.Split(strings.TrimRight(d, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "+"):
			line = n.paint(green, line)
		case strings.HasPrefix(line, "-"):
			line = n.paint(red, line)
		}
		n.printf("    %s\n", line)
	}
}

// Finish closes the story with a summary and the total time: the engine's failures
// (each step that did not behave as expected), or, when there are none, that every
// step did, with the calls it skipped.
func (n *Narrator) Finish(failures, skipped []string) {
	n.endStep()
	n.printf("\n")
	if len(failures) == 0 {
		n.printf("%s\n", n.paint(bold+";"+green, fmt.Sprintf("All %d steps behaved as expected (%s in all).", n.step, since(n.start))))
		if len(skipped) > 0 {
			n.printf("Skipped on this backend (%d):\n", len(skipped))
			for _, s := range skipped {
				n.printf("  - %s\n", s)
			}
		}
		return
	}
	n.printf("%s\n", n.paint(bold+";"+red, fmt.Sprintf("%d of %d steps did not behave as expected (%s in all):", len(failures), n.step, since(n.start))))
	for _, f := range failures {
		n.printf("  - %s\n", f)
	}
}

func since(t time.Time) string {
	d := time.Since(t)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// Wrap folds s to width, each line starting with indent.
func Wrap(s string, width int, indent string) string {
	var out, line strings.Builder
	for _, word := range strings.Fields(s) {
		if line.Len() > 0 && line.Len()+1+len(word) > width-len(indent) {
			out.WriteString(indent + line.String() + "\n")
			line.Reset()
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	out.WriteString(indent + line.String())
	return out.String()
}

// SidecarSentence says what a backend found of a workload's sidecar, for a learner; an
// error when there is none, since a call from such a pod proves nothing about the mesh.
func SidecarSentence(s backend.SidecarStatus) (string, error) {
	if err := s.Missing(); err != nil {
		return "", err
	}
	return fmt.Sprintf("pod %s runs %s; %s", s.Pod, s.Proxy, s.Rule), nil
}

// Plural is kind for n of them: "entry", "entries"; "call", "calls".
func Plural(kind string, n int) string {
	switch {
	case n == 1:
		return kind
	case strings.HasSuffix(kind, "y") && !strings.HasSuffix(kind, "ey"):
		return strings.TrimSuffix(kind, "y") + "ies"
	}
	return kind + "s"
}

// Count is n and kind: "1 call", "3 calls", "2 ServiceEntries".
func Count(n int, kind string) string {
	return strconv.Itoa(n) + " " + Plural(kind, n)
}
