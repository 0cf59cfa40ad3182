package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LoopCounter counts workflow executions matching a visibility query
// (the Temporal client's CountWorkflow).
type LoopCounter func(ctx context.Context, query string) (int64, error)

// WatchLoops keeps forewarm_loops{state} up to date: every interval it
// counts the running executions of workflowType whose stateAttr is each of
// states, and the rest as "other". Every worker that serves the loops
// publishes the same figures (dashboards take the max). It returns when
// ctx ends.
func (m *Metrics) WatchLoops(ctx context.Context, count LoopCounter, workflowType, stateAttr string, states []string, every time.Duration, log *slog.Logger) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricLoops,
		Help: "Running prediction loops by state (from Temporal visibility)."}, []string{"state"})
	if err := m.Registry.Register(g); err != nil {
		log.Warn("loops gauge", "err", err)
		return
	}
	running := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflowType)
	refresh := func() error {
		cctx, cancel := context.WithTimeout(ctx, every)
		defer cancel()
		total, err := count(cctx, running)
		if err != nil {
			return err
		}
		var known int64
		for _, s := range states {
			n, err := count(cctx, fmt.Sprintf("%s AND %s = '%s'", running, stateAttr, s))
			if err != nil {
				return err
			}
			g.WithLabelValues(s).Set(float64(n))
			known += n
		}
		g.WithLabelValues("other").Set(float64(max(0, total-known)))
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		if err := refresh(); err != nil && !failing {
			log.Warn("cannot count the loops in Temporal visibility; retrying", "err", err, "every", every)
			failing = true
		} else if err == nil {
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
