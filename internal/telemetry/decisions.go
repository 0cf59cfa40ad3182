package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the loops' decision metrics and the arrival watch's.
const (
	MetricDecisionLag = "forewarm_decision_lag_seconds"
	MetricLoopBin     = "forewarm_loop_bin_seconds"
	MetricDecisions   = "forewarm_loop_decisions_total"
	MetricWakes       = "forewarm_loop_wakes_total"
	MetricWatchPlans  = "forewarm_watch_plans"
	MetricWatchChecks = "forewarm_watch_checks_total"
	MetricWatchWakes  = "forewarm_watch_wakes_total"
	MetricLateArrival = "forewarm_arrivals_late_total"
)

// lagBuckets resolve a decision's lag from milliseconds (a loop on time)
// to minutes (a machine that cannot keep up with one-minute bins).
var lagBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600}

// Decisions counts the prediction loops' decisions on this worker.
type Decisions struct {
	lag       prometheus.Histogram
	bin       prometheus.Gauge
	mu        sync.Mutex
	shortest  time.Duration // the shortest bin seen
	decisions *prometheus.CounterVec
	wakes     *prometheus.CounterVec
}

var decisionsOnce sync.Map // *Metrics -> *Decisions

// Decisions returns the decision metrics, registered on first use. A nil
// *Metrics returns nil, which counts nothing.
func (m *Metrics) Decisions() *Decisions {
	if m == nil {
		return nil
	}
	if d, ok := decisionsOnce.Load(m); ok {
		return d.(*Decisions)
	}
	d := &Decisions{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDecisionLag,
			Help: "How late each loop's wake decided, after it was due (the start of its bin and the grace): the SLO is p99 under one bin (" + MetricLoopBin + ").", Buckets: lagBuckets}),
		bin: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLoopBin,
			Help: "The shortest bin (live time) of the loops this worker decided for: the decision-lag SLO's bound (0 before its first decision)."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDecisions,
			Help: "Per-bin decisions of the loops: each wake's own and the bins it slept through (their decisions were known), by how arrivals reach the loops (router: recorded in the store)."}, []string{"arrivals"}),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricWakes,
			Help: "Wakes of the loops (each asks the model and may act), by how arrivals reach them."}, []string{"arrivals"}),
	}
	if actual, loaded := decisionsOnce.LoadOrStore(m, d); loaded {
		return actual.(*Decisions)
	}
	m.Registry.MustRegister(d.lag, d.bin, d.decisions, d.wakes)
	return d
}

// Decided counts one wake of a loop with bins of width bin (live time;
// 0: unknown) that settled bins bins, lag after it was due (negative: not
// measured).
func (d *Decisions) Decided(lag time.Duration, bins int, router bool, bin time.Duration) {
	if d == nil {
		return
	}
	if bin > 0 {
		d.mu.Lock()
		if d.shortest == 0 || bin < d.shortest {
			d.shortest = bin
			d.bin.Set(bin.Seconds())
		}
		d.mu.Unlock()
	}
	mode := "signals"
	if router {
		mode = "router"
	}
	if lag >= 0 {
		d.lag.Observe(lag.Seconds())
	}
	d.decisions.WithLabelValues(mode).Add(float64(bins))
	d.wakes.WithLabelValues(mode).Inc()
}

// WatchStats are the arrival watch's figures, read at each scrape.
type WatchStats struct {
	Plans  func() float64
	Checks func() float64
	Wakes  map[string]func() float64 // by reason
	// Late is the requests the arrival mirror heard of after their bin
	// was frozen (nil: not published).
	Late func() float64
}

// Watch publishes the arrival watch's figures.
func (m *Metrics) Watch(s WatchStats) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricWatchPlans,
			Help: "Plans of sleeping router-mode loops the arrival watch checks."}, s.Plans),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricWatchChecks,
			Help: "Loops the arrival watch checked against the model after an arrival."}, s.Checks))
	if s.Late != nil {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricLateArrival,
			Help: "Requests the arrival mirror heard of after their bin was frozen, counted in the next bin it froze."}, s.Late))
	}
	for reason, f := range s.Wakes {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricWatchWakes,
			Help: "Loops the arrival watch woke, by reason.", ConstLabels: prometheus.Labels{"reason": reason}}, f))
	}
}
