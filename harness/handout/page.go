package handout

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// A handout marks what its by-hand test runs, as istio.io's doc tests do with their
// snippets: a shell block whose info string is RunMark is typed, in order; a text block
// right after it, marked OutputMark or ContainsMark, is what it must print (all of it,
// or a part). Forges show the blocks as plain shell and text.
const (
	RunMark      = "sh run"
	OutputMark   = "text output"
	ContainsMark = "text output contains"
)

// Page is a handout as its by-hand test and its other renderings read it.
type Page struct {
	Title    string
	Sections []Section
}

// Section is the part of a page under one "## " heading (the first holds what comes
// before any): its Markdown, and the commands it marks to run.
type Section struct {
	Title    string
	Markdown string
	Runs     []Run
}

// Run is a block of commands to type, and what they must print.
type Run struct {
	// Line is the block's first line in the page.
	Line     int
	Commands string
	// Output is what the commands print (stdout and stderr, as a terminal shows them),
	// all of it or, when Contains, a part; "" when the page shows none, and then they
	// must exit 0.
	Output   string
	Contains bool
}

// Parse reads a handout's Markdown.
func Parse(r io.Reader) (Page, error) {
	var p Page
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sec := &Section{}
	var body strings.Builder
	flush := func() {
		sec.Markdown = body.String()
		p.Sections = append(p.Sections, *sec)
		body.Reset()
	}
	line := 0
	// lastRun is the run the next output block belongs to, while nothing but blank
	// lines came since it.
	lastRun := -1
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "# ") && p.Title == "":
			p.Title = strings.TrimPrefix(text, "# ")
		case strings.HasPrefix(text, "## "):
			flush()
			sec, lastRun = &Section{Title: strings.TrimPrefix(text, "## ")}, -1
		case strings.HasPrefix(text, "```"):
			info, start := strings.TrimPrefix(text, "```"), line
			var block []string
			closed := false
			body.WriteString(text + "\n")
			for sc.Scan() {
				line++
				body.WriteString(sc.Text() + "\n")
				if sc.Text() == "```" {
					closed = true
					break
				}
				block = append(block, sc.Text())
			}
			if !closed {
				return p, fmt.Errorf("line %d: the block that starts here has no closing ```", start)
			}
			content := strings.Join(block, "\n")
			switch info {
			case RunMark:
				sec.Runs = append(sec.Runs, Run{Line: start, Commands: content})
				lastRun = len(sec.Runs) - 1
				continue
			case OutputMark, ContainsMark:
				if lastRun < 0 || sec.Runs[lastRun].Output != "" {
					return p, fmt.Errorf("line %d: an output block must follow the %q block it belongs to", start, "```"+RunMark)
				}
				sec.Runs[lastRun].Output, sec.Runs[lastRun].Contains = content, info == ContainsMark
			}
			lastRun = -1
			continue
		case strings.TrimSpace(text) == "":
		default:
			lastRun = -1
		}
		body.WriteString(text + "\n")
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	flush()
	return p, nil
}
