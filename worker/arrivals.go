package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/resident"
	"github.com/forewarm/forewarm/workflows"
)

// arrivalReader adapts the store's sparse read to the mirror.
type arrivalReader struct{ st *store.Store }

func (r arrivalReader) Arrivals(ctx context.Context, from, to time.Time, bin time.Duration) (map[string]resident.BinCounts, error) {
	rows, err := r.st.BusyBins(ctx, from, to, bin)
	if err != nil {
		return nil, err
	}
	out := make(map[string]resident.BinCounts, len(rows))
	for app, b := range rows {
		out[app] = resident.BinCounts(b)
	}
	return out, nil
}

// loopWaker wakes a loop with the wake signal.
type loopWaker struct{ c client.Client }

func (w loopWaker) Wake(ctx context.Context, id string, bin time.Time, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := w.c.SignalWorkflow(ctx, id, "", workflows.SignalWake, workflows.WakeSignal{Bin: bin, Reason: reason})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return resident.ErrLoopGone
	}
	return err
}

// startWatch loads the arrival mirror (the bins of the last span, one
// read) before the workers start, so the first wakes of router-mode loops
// do not wait for it, and builds the watch.
func startWatch(s settings, c client.Client, st *store.Store, p *activities.Predictor, logger *slog.Logger) (*resident.Watch, error) {
	m := &resident.Mirror{Reader: arrivalReader{st}, Bin: s.ArrivalsBin, Span: s.ArrivalsSpan, LateBins: s.ArrivalsLate}
	// After a restart the watch knows no loop's plan until the loop wakes,
	// at most a sleep bound later: until then it wakes a loop it has no
	// plan for when its application's requests arrive.
	w := &resident.Watch{Mirror: m, Predictor: p, Waker: loopWaker{c}, Log: logger,
		LoopOf: workflows.LoopWorkflowID, Amnesia: time.Duration(workflows.DefaultMaxSleepBins) * s.ArrivalsBin}
	p.Watch = w
	began := time.Now()
	through := time.Now().Add(-resident.Grace(s.ArrivalsBin)).Truncate(s.ArrivalsBin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := m.Freeze(ctx, through); err != nil {
		return nil, fmt.Errorf("--arrivals-bin %v: load the recorded arrivals: %w", s.ArrivalsBin, err)
	}
	logger.Info("arrival mirror loaded", "bin", s.ArrivalsBin, "bins", s.ArrivalsSpan, "late_bins", m.LateWindow(), "apps", m.Apps(), "took", time.Since(began).Round(time.Millisecond))
	stat := func(f func(resident.WatchStats) int64) func() float64 {
		return func() float64 { return float64(f(w.Stats())) }
	}
	s.metrics.Watch(telemetry.WatchStats{
		Plans:  func() float64 { return float64(w.Stats().Plans) },
		Checks: stat(func(x resident.WatchStats) int64 { return x.Checks }),
		Wakes: map[string]func() float64{
			"cold":         stat(func(x resident.WatchStats) int64 { return x.Cold }),
			"below_keep":   stat(func(x resident.WatchStats) int64 { return x.BelowKeep }),
			"model_change": stat(func(x resident.WatchStats) int64 { return x.ModelChange }),
			"unplanned":    stat(func(x resident.WatchStats) int64 { return x.Unplanned }),
			"release":      stat(func(x resident.WatchStats) int64 { return x.Release }),
		},
		Late: func() float64 { return float64(m.Stats().LateRequests) },
	})
	return w, nil
}
