package lab

import (
	"context"
	"fmt"
	"strings"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/internal/suggest"
)

// SuggestCommand is what a learner types for a `suggest:` action: the workload's
// sidecar's access log, through `egresslab suggest` (which replays every call with the
// entries on Istio's simulator first), into kubectl apply. The narration shows it and
// the handout runs it.
func SuggestCommand(w backend.Workload) string {
	return fmt.Sprintf("kubectl -n %s logs deploy/%s -c istio-proxy | egresslab suggest -f %s=- | kubectl apply -n %s -f -",
		w.Namespace, w.Name, w, w.Namespace)
}

// suggestEntries reads w's sidecar's access log since the lab began, writes the
// ServiceEntries `egresslab suggest` would (internal/suggest), shows them and applies
// them; the lab deletes them at its end, as what it applied.
func (r *Runner) suggestEntries(ctx context.Context, w backend.Workload) error {
	sl, ok := r.b.(backend.SidecarLog)
	if !ok {
		return fmt.Errorf("suggest: backend %s cannot read the access log of %s's sidecar", r.b.Name(), w)
	}
	r.n.Command(SuggestCommand(w))
	log, err := sl.SidecarAccessLog(ctx, w, r.began)
	if err != nil {
		return fmt.Errorf("suggest: read the access log of %s's sidecar: %w", w, err)
	}
	obs := suggest.NewObservations()
	if err := obs.Read(ctx, suggest.Source{Name: "istio-proxy's log", Workload: &w}, strings.NewReader(log)); err != nil {
		return fmt.Errorf("suggest: read the access log of %s's sidecar: %w", w, err)
	}
	sg, err := suggest.Build(obs)
	if err != nil {
		return fmt.Errorf("suggest: %w", err)
	}
	var report strings.Builder
	sg.Report(&report)
	r.n.Block("egresslab suggest", strings.TrimRight(report.String(), "\n"))
	if len(sg.Entries) == 0 || sg.Set == nil {
		return fmt.Errorf("suggest: the access log of %s's sidecar shows no call through PassthroughCluster since the lab began, so there is no entry to apply", w)
	}
	sg.Set.Source = "suggested.yaml"
	return r.apply(ctx, sg.Set)
}
