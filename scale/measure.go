package scale

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/forewarm/forewarm/internal/telemetry"
)

// Histogram is a Prometheus histogram: cumulative counts at upper bounds.
type Histogram struct {
	Bounds []float64 // ascending, the last +Inf
	Counts []float64 // cumulative
}

// Sub is h minus an earlier snapshot of the same histogram.
func (h Histogram) Sub(o Histogram) Histogram {
	out := Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts)}
	if len(o.Counts) == len(h.Counts) {
		for i := range out.Counts {
			out.Counts[i] -= o.Counts[i]
		}
	}
	return out
}

// Total is the number of observations.
func (h Histogram) Total() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// Quantile interpolates linearly within the bucket holding quantile q, as
// Prometheus' histogram_quantile does; in the +Inf bucket it is +Inf.
func (h Histogram) Quantile(q float64) float64 {
	total := h.Total()
	if total == 0 {
		return 0
	}
	rank := q * total
	lo, prev := 0.0, 0.0
	for i, c := range h.Counts {
		if c >= rank {
			hi := h.Bounds[i]
			if math.IsInf(hi, 1) {
				return hi
			}
			if c == prev {
				return hi
			}
			return lo + (hi-lo)*(rank-prev)/(c-prev)
		}
		lo, prev = h.Bounds[i], c
	}
	return math.Inf(1)
}

// Below is the share of observations at or below x (interpolated within
// its bucket; 1 with none).
func (h Histogram) Below(x float64) float64 {
	total := h.Total()
	if total == 0 {
		return 1
	}
	lo, prev := 0.0, 0.0
	for i, c := range h.Counts {
		hi := h.Bounds[i]
		if x < hi {
			if math.IsInf(hi, 1) {
				return prev / total
			}
			return (prev + (c-prev)*(x-lo)/(hi-lo)) / total
		}
		lo, prev = hi, c
	}
	return 1
}

// WorkerMetrics are the worker's figures the benchmark reads.
type WorkerMetrics struct {
	Decisions   float64   // per-bin decisions settled by the loops
	Wakes       float64   // loop wakes
	Lag         Histogram // decision lag, seconds
	WatchChecks float64
	WatchWakes  float64
	RSSBytes    float64
	StackBytes  float64
}

// Scrape reads the worker's /metrics.
func Scrape(ctx context.Context, url string) (WorkerMetrics, error) {
	var m WorkerMetrics
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return m, fmt.Errorf("%s: %w", url, err)
	}
	return fromFamilies(fams), nil
}

// ParseMetrics reads a /metrics page (for tests and saved pages).
func ParseMetrics(text []byte) (WorkerMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return WorkerMetrics{}, err
	}
	return fromFamilies(fams), nil
}

func fromFamilies(fams map[string]*dto.MetricFamily) WorkerMetrics {
	var m WorkerMetrics
	sum := func(name string) float64 {
		var s float64
		if f := fams[name]; f != nil {
			for _, x := range f.Metric {
				switch {
				case x.Counter != nil:
					s += x.Counter.GetValue()
				case x.Gauge != nil:
					s += x.Gauge.GetValue()
				case x.Untyped != nil:
					s += x.Untyped.GetValue()
				}
			}
		}
		return s
	}
	m.Decisions = sum(telemetry.MetricDecisions)
	m.Wakes = sum(telemetry.MetricWakes)
	m.WatchChecks = sum(telemetry.MetricWatchChecks)
	m.WatchWakes = sum(telemetry.MetricWatchWakes)
	m.RSSBytes = sum("process_resident_memory_bytes")
	m.StackBytes = sum("go_memstats_stack_inuse_bytes")
	if f := fams[telemetry.MetricDecisionLag]; f != nil && len(f.Metric) > 0 && f.Metric[0].Histogram != nil {
		h := f.Metric[0].Histogram
		for _, b := range h.Bucket {
			m.Lag.Bounds = append(m.Lag.Bounds, b.GetUpperBound())
			m.Lag.Counts = append(m.Lag.Counts, float64(b.GetCumulativeCount()))
		}
		if n := len(m.Lag.Bounds); n == 0 || !math.IsInf(m.Lag.Bounds[n-1], 1) {
			m.Lag.Bounds = append(m.Lag.Bounds, math.Inf(1))
			m.Lag.Counts = append(m.Lag.Counts, float64(h.GetSampleCount()))
		}
	}
	return m
}

// ProcessCPU is the user and system CPU time process pid has used
// (0: none measured).
func ProcessCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces): utime and stime
	// are the 14th and 15th of the line, in clock ticks of 10 ms.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ProcessRSS is process pid's resident memory in bytes, from VmRSS in
// /proc/<pid>/status (0: none measured).
func ProcessRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) int64 {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// MachineCPU is the CPU time every process of the machine has used (from
// /proc/stat; 0 when unreadable): what the others took is it less the
// benchmark's own.
func MachineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// Result is the benchmark's one line of JSON: the figures the issue asks
// for first, then what explains them.
type Result struct {
	Apps       int     `json:"apps"`
	BinSeconds float64 `json:"bin_seconds"`
	// DecisionsPerSecond is DecisionsCounted per second of the window,
	// scaled from the sampled loops to the fleet (equal to the count when
	// every loop is sampled).
	DecisionsPerSecond float64 `json:"decisions_per_second"`
	// What the sampled loops' status queries say (scale.CountDecisions).
	DecisionsCounted      int      `json:"decisions_counted"`
	DecisionsDue          int      `json:"decisions_due"`
	DecisionsPendingStart int      `json:"decisions_pending_start"`
	DecisionsPendingEnd   int      `json:"decisions_pending_end"`
	DecisionsUnaccounted  int      `json:"decisions_unaccounted"`
	LoopsSampled          int      `json:"loops_sampled"`
	LoopsAdvanced         int      `json:"loops_advanced"`
	LoopsNotAdvanced      int      `json:"loops_not_advanced"` // their IDs are in the log
	LoopsBehind           []string `json:"loops_behind"`
	LoopsUnanswered       []string `json:"loops_unanswered"`
	SteadyState           bool     `json:"steady_state"`
	BoundWakes            int      `json:"bound_wakes"`
	P99DecisionLagBins    float64  `json:"p99_decision_lag_bins"`
	// HistoryEventsPerAppHour is the sampled loops' whole histories (every
	// run) over their ages; WindowHistoryEventsPerAppHour what they added
	// in the window.
	HistoryEventsPerAppHour       float64 `json:"history_events_per_app_hour"`
	WindowHistoryEventsPerAppHour float64 `json:"window_history_events_per_app_hour"`
	HistoryWholeLoops             int     `json:"history_whole_loops"`
	WorkerCPUCores                float64 `json:"worker_cpu_cores"`
	ServerCPUCores                float64 `json:"server_cpu_cores"`
	Mode                          string  `json:"mode"`
	LiveBinSeconds                float64 `json:"live_bin_seconds"`
	WindowBins                    int     `json:"window_bins"`
	OnTimeShare                   float64 `json:"on_time_share"`
	SettledPerSecond              float64 `json:"settled_per_second"`
	WakesPerSecond                float64 `json:"wakes_per_second"`
	WakesPerAppHour               float64 `json:"wakes_per_app_hour"`
	P50DecisionLagSeconds         float64 `json:"p50_decision_lag_seconds"`
	P99DecisionLagSeconds         float64 `json:"p99_decision_lag_seconds"`
	ClickHouseCPUCores            float64 `json:"clickhouse_cpu_cores"`
	BenchCPUCores                 float64 `json:"bench_cpu_cores"` // this process: the router and the measuring
	OtherCPUCores                 float64 `json:"other_cpu_cores"` // the rest of the machine: near 0 on a quiet one
	WorkerStackMB                 float64 `json:"worker_stack_mb"`
	WatchWakesPerSecond           float64 `json:"watch_wakes_per_second"`
	RouterRowsPerSecond           float64 `json:"router_rows_per_second"`
	RouterLateBins                int     `json:"router_late_bins"`
	HistorySample                 int     `json:"history_sample"`
	// HistoryEventsByType splits window_history_events_per_app_hour by event type
	// (TimerFired, MarkerRecorded, ...): where a wake's events come from.
	HistoryEventsByType map[string]float64 `json:"history_events_by_type,omitempty"`
	StartsPerSecond     float64            `json:"starts_per_second"`
	WorkerPeakRSSMB     float64            `json:"worker_rss_mb"`
	// WorkerRSSMBPer1000Loops is the worker's VmRSS at the window's end
	// per 1,000 loops of the fleet; at small N its fixed part (the process,
	// the arrival mirror: WorkerRSSMBBeforeLoops, read once the worker was
	// ready) dominates, so WorkerLoopsRSSMBPer1000 is what the loops added.
	WorkerRSSMBPer1000Loops float64 `json:"worker_rss_mb_per_1000_loops"`
	WorkerRSSMBBeforeLoops  float64 `json:"worker_rss_mb_before_loops"`
	WorkerLoopsRSSMBPer1000 float64 `json:"worker_loops_rss_mb_per_1000"`
	TotalSeconds            float64 `json:"total_seconds,omitempty"`
	// BeyondLagBuckets is set when a lag quantile lies past the lag
	// histogram's last finite bucket: the lag figures are then that
	// bucket's bound, a lower bound (JSON has no infinity).
	BeyondLagBuckets bool `json:"beyond_lag_buckets,omitempty"`
	// Dry says the loops only decided; with Dry false they prepared on host
	// agents, and PreparationsPerSecond counts the window's "validated"
	// preparation events in the store (PreparationEvents: every kind).
	Dry                   bool           `json:"dry"`
	PreparationsPerSecond float64        `json:"preparations_per_second,omitempty"`
	PreparationEvents     map[string]int `json:"preparation_events,omitempty"`
	// Ticking is the same fleet deciding every bin (--compare-ticking), and
	// the ratios its history figures bear to these.
	Ticking                   *Result `json:"ticking,omitempty"`
	TickingHistoryRatio       float64 `json:"ticking_history_ratio,omitempty"`
	TickingWindowHistoryRatio float64 `json:"ticking_window_history_ratio,omitempty"`
}

// CapLag replaces an infinite lag quantile (past the histogram's last
// finite bucket) by that bucket's bound and says so.
func (r *Result) CapLag(h Histogram) {
	last := 0.0
	for _, b := range h.Bounds {
		if !math.IsInf(b, 1) {
			last = b
		}
	}
	for _, q := range []*float64{&r.P99DecisionLagSeconds, &r.P50DecisionLagSeconds} {
		if math.IsInf(*q, 1) {
			*q, r.BeyondLagBuckets = last, true
		}
	}
}
