package suggest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A log that cannot be read whole is refused with the file, the line, what is wrong
// (the field, where it is one) and the fix: a line skipped silently could be a call
// that no entry then covers, and that breaks when the mode changes.
func TestABadLogIsRefusedWithTheLineAndTheFix(t *testing.T) {
	nginx := `203.0.113.5 - - [25/Nov/2026:09:43:16 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"`
	cases := []struct {
		name string
		log  string
		want []string
	}{
		{"an empty file", "", []string{"x.log: is empty", "fix: capture the sidecar's log", "accessLogFile"}},
		{"blank lines only", "\n  \n\n", []string{"x.log: is empty"}},
		{"another program's log", nginx + "\n" + nginx + "\n", []string{"x.log:1: no line is in Istio's default access-log format, TEXT or JSON",
			`the first reads "203.0.113.5 - - [25/Nov/2026`, "fix: give istio-proxy's log with access logging on in the default format"}},
		{"pilot-agent's lines only: access logging off", agentLine + "\n" + agentJSONLine + "\n",
			[]string{"x.log:1: no line is in Istio's default access-log format", "meshConfig.accessLogFile: /dev/stdout"}},
		{"a TEXT line cut short", textRegistered + "\n" + textHTTPPassthrough[:96] + "\n" + textCatchAll + "\n",
			[]string{"x.log:2: the line is cut short: it has 13 of the 22 fields of Istio's default TEXT format, the last in the place of %REQ(USER-AGENT)%",
				"fix: capture the log again with whole lines"}},
		{"three lines cut short", strings.Join([]string{textRegistered, textTCPAddress[:60], textRegistered, textTCPAddress[:70], textTCPAddress[:80]}, "\n"),
			[]string{"x.log:2: the line is cut short: it has 11 of the 22 fields", "(3 lines like it: also line 4, 5)"}},
		{"a JSON line cut short", jsonRegistered + "\n" + jsonCatchAll[:150] + "\n", []string{"x.log:2: the JSON line is cut short", "fix: capture the log again"}},
		{"a custom TEXT format", textRegistered + ` "extra"` + "\n", []string{"x.log:1: the line has 23 fields, where Istio's default TEXT format has 22",
			"fix: use Istio's default format (no meshConfig.accessLogFormat), or its JSON encoding"}},
		{"a line longer than any Envoy writes", textRegistered + "\n" + strings.Repeat("x", MaxLineBytes+1) + "\n",
			[]string{"x.log:2: the line is longer than 1048576 bytes"}},
		{"a passed-through call with no destination", strings.Replace(textCatchAll, "10.244.0.4:443 10.244.0.8:41002", "- 10.244.0.8:41002", 1),
			[]string{"x.log:1: a call through PassthroughCluster whose %DOWNSTREAM_LOCAL_ADDRESS%, where it was going, is \"-\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewObservations()
			err := o.Read(context.Background(), Source{Name: "x.log"}, strings.NewReader(tc.log))
			var problems Problems
			require.True(t, errors.As(err, &problems), "want Problems, got %v", err)
			for _, want := range tc.want {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// Lines that are not access-log lines at all (pilot-agent's own, interleaved with
// Envoy's in istio-proxy's log) and lines of other listeners are skipped, counted, and
// shown by their first few line numbers; the log is read.
func TestOtherLinesAreSkippedAndShown(t *testing.T) {
	o := NewObservations()
	log := strings.Join([]string{agentLine, textHTTPPassthrough, agentJSONLine, textInbound, textGateway, agentLine, agentLine, agentLine}, "\n")
	require.NoError(t, o.Read(context.Background(), Source{Name: "x.log"}, strings.NewReader(log)))
	assert.Equal(t, Counts{Lines: 8, Text: 3, Passthrough: 1, Inbound: 1, Gateway: 1, NotLog: 5}, o.Counts)
	require.Len(t, o.Skipped, 3)
	notLog := o.Skipped[0]
	assert.Equal(t, 5, notLog.Count)
	assert.Equal(t, []int{1, 3, 6}, []int{notLog.Examples[0].Line, notLog.Examples[1].Line, notLog.Examples[2].Line}, "the first three")
	assert.Contains(t, o.Skipped[1].Reason, "inbound listener")
	assert.Equal(t, 4, o.Skipped[1].Examples[0].Line)
	assert.Contains(t, o.Skipped[2].Reason, "a gateway's line: the call came to the proxy's own address")
}

func TestReadingStopsWhenAskedTo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := NewObservations()
	err := o.Read(ctx, Source{Name: "x.log"}, strings.NewReader(strings.Repeat(textRegistered+"\n", 70_000)))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, o.Counts.Lines, 70_000, "it stopped before the end")
}
