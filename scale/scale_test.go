package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
)

func smallTrace() *trace.Trace {
	tr := &trace.Trace{Start: trace.AzureStart, Bin: time.Minute, Bins: 10}
	for i, id := range []string{"a", "b", "c"} {
		c := make([]uint32, 10)
		for b := range c {
			c[b] = uint32(10*i + b)
		}
		tr.Apps = append(tr.Apps, trace.App{ID: id, MemoryMB: float64(100 * (i + 1)), Counts: c})
	}
	return tr
}

func TestFleetCyclesTheTraceFromOtherOffsets(t *testing.T) {
	tr := smallTrace()
	f, err := NewFleet(tr, 7, 4)
	require.NoError(t, err)
	require.Len(t, f.Apps, 7)
	require.Equal(t, "scale-000000", f.Apps[0].ID)
	for k, a := range f.Apps {
		require.Equal(t, k%3, a.Src)
		require.Equal(t, tr.Apps[k%3].MemoryMB, a.MemoryMB)
		require.GreaterOrEqual(t, a.Offset, 4)
		require.Less(t, a.Offset, 10)
	}
	require.Equal(t, 4, f.Apps[0].Offset, "first copies start at the first bin")
	require.NotEqual(t, f.Apps[0].Offset, f.Apps[3].Offset, "a second copy is not in step with the first")
	require.Equal(t, uint32(4), f.Count(0, 0))
	require.Equal(t, uint32(0), f.Count(0, 6), "the day repeats: bin 10 is bin 0")
	require.Equal(t, uint32(3), f.Count(0, -1), "history before the start")
	require.Equal(t, uint32(9), f.Count(0, -5), "history wraps to the day before")
	require.Equal(t, tr.BinStart(4), f.TraceStart(0))

	_, err = NewFleet(tr, 0, 4)
	require.ErrorContains(t, err, "need at least one")
	_, err = NewFleet(tr, 3, 10)
	require.ErrorContains(t, err, "outside the trace's 10")
}

type recorder struct {
	mu      sync.Mutex
	rows    []store.Arrival
	at      []time.Time
	batches map[string]bool // router/batch
}

func (r *recorder) record(_ context.Context, b store.ArrivalBatch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[string]bool{}
	}
	if k := b.Router + "/" + b.Batch; b.Router == "" || b.Batch == "" || r.batches[k] {
		return fmt.Errorf("batch %q: no identity, or the name of an earlier batch", k)
	}
	r.batches[b.Router+"/"+b.Batch] = true
	as := b.Rows
	r.rows = append(r.rows, as...)
	for range as {
		r.at = append(r.at, time.Now())
	}
	return nil
}

// The router writes each bin's busy applications once the bin has ended,
// and the history before the start in batches.
func TestRouterReportsEachBinWhenItEnds(t *testing.T) {
	tr := smallTrace()
	tr.Apps[0].Counts[3] = 0 // app a idle in its first history bin below
	f, err := NewFleet(tr, 3, 4)
	require.NoError(t, err)
	rec := &recorder{}
	start := time.Now().Truncate(100 * time.Millisecond).Add(100 * time.Millisecond)
	r := &Router{Fleet: f, Start: start, Bin: 100 * time.Millisecond, Record: rec.record, Batch: 2, Grace: 50 * time.Millisecond}
	n, err := r.History(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "bin -1: b and c; a had none")
	require.Equal(t, []store.Arrival{
		{App: "scale-000001", Bin: start.Add(-100 * time.Millisecond), Requests: 13},
		{App: "scale-000002", Bin: start.Add(-100 * time.Millisecond), Requests: 23},
	}, rec.rows)
	rec.rows, rec.at = nil, nil

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.rows) >= 6
	}, 10*time.Second, 10*time.Millisecond, "bins 0 and 1 of three apps")
	cancel()
	require.NoError(t, <-done)
	rec.rows, rec.at = rec.rows[:6], rec.at[:6]
	for i, row := range rec.rows {
		require.Equal(t, start.Add(time.Duration(i/3)*100*time.Millisecond), row.Bin)
		require.False(t, rec.at[i].Before(row.Bin.Add(100*time.Millisecond)), "reported before its bin ended")
	}
	var reqs uint64
	for _, row := range rec.rows {
		reqs += row.Requests
	}
	require.Equal(t, uint64(4+5+14+15+24+25), reqs)
	require.GreaterOrEqual(t, r.Stats().Rows, int64(6))
}

func TestHistogramQuantileAndShareBelow(t *testing.T) {
	h := Histogram{Bounds: []float64{1, 2, 4, math.Inf(1)}, Counts: []float64{50, 90, 100, 100}}
	require.InDelta(t, 0.5, h.Quantile(0.25), 1e-9)
	require.InDelta(t, 1.5, h.Quantile(0.7), 1e-9)
	require.InDelta(t, 3.8, h.Quantile(0.99), 1e-9)
	require.InDelta(t, 0.95, h.Below(3), 1e-9)
	require.InDelta(t, 1, h.Below(4), 1e-9)
	late := Histogram{Bounds: []float64{1, math.Inf(1)}, Counts: []float64{90, 100}}
	require.True(t, math.IsInf(late.Quantile(0.99), 1), "beyond the last bound: as late as can be")
	require.InDelta(t, 0.9, late.Below(5), 1e-9)
	// A result whose p99 lies past the last bucket still encodes: the
	// bound, flagged as a lower bound.
	r := Result{P99DecisionLagSeconds: late.Quantile(0.99), P50DecisionLagSeconds: late.Quantile(0.5)}
	r.CapLag(late)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(b), `"p99_decision_lag_seconds":1,`)
	require.Contains(t, string(b), `"beyond_lag_buckets":true`)
	require.InDelta(t, late.Quantile(0.5), r.P50DecisionLagSeconds, 1e-9, "a finite quantile is left alone")
	d := h.Sub(Histogram{Bounds: h.Bounds, Counts: []float64{50, 50, 50, 50}})
	require.Equal(t, []float64{0, 40, 50, 50}, d.Counts)
	require.Equal(t, 0.0, Histogram{}.Quantile(0.99))
}

func TestParseMetricsReadsTheWorkersFigures(t *testing.T) {
	m, err := ParseMetrics([]byte(`# HELP forewarm_loop_decisions_total d
# TYPE forewarm_loop_decisions_total counter
forewarm_loop_decisions_total{arrivals="router"} 120
forewarm_loop_decisions_total{arrivals="signals"} 3
# HELP forewarm_loop_wakes_total w
# TYPE forewarm_loop_wakes_total counter
forewarm_loop_wakes_total{arrivals="router"} 12
# HELP forewarm_watch_wakes_total ww
# TYPE forewarm_watch_wakes_total counter
forewarm_watch_wakes_total{reason="cold"} 2
forewarm_watch_wakes_total{reason="below_keep"} 1
# HELP forewarm_decision_lag_seconds l
# TYPE forewarm_decision_lag_seconds histogram
forewarm_decision_lag_seconds_bucket{le="0.1"} 10
forewarm_decision_lag_seconds_bucket{le="1"} 12
forewarm_decision_lag_seconds_bucket{le="+Inf"} 12
forewarm_decision_lag_seconds_sum 1.5
forewarm_decision_lag_seconds_count 12
`))
	require.NoError(t, err)
	require.Equal(t, 123.0, m.Decisions)
	require.Equal(t, 12.0, m.Wakes)
	require.Equal(t, 3.0, m.WatchWakes)
	require.Equal(t, []float64{0.1, 1, math.Inf(1)}, m.Lag.Bounds)
	require.Equal(t, []float64{10, 12, 12}, m.Lag.Counts)
}
