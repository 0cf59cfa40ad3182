package demand

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/trace"
)

// Baseline names, as they appear in evaluation tables and registry metrics.
const (
	BaselineLastBin  = "active_last_bin"
	BaselineFraction = "historical_fraction"
	BaselineRecency  = "recency_rate"
)

// EvalOptions picks the held-out range. Every application is scored at every
// prediction point (bin start) t with From <= t < To and t+Horizon <= trace
// end; the label is "at least one request in bins t..t+Horizon-1".
type EvalOptions struct {
	From, To  time.Time // zero To = trace end
	Horizon   int       // bins; zero = the model's spec (or 5 without a model)
	BatchSize int       // model batch size; zero = 256
	Workers   int       // concurrent Predict calls; zero = min(2, GOMAXPROCS)
	// RecentBins is the window of the recency heuristic's tie-break count; zero = 60.
	RecentBins int
	// Progress, when set, is called now and then with the points the model
	// has scored (for activity heartbeats); calls come from one goroutine.
	Progress func(done, total int)
}

// Evaluation is a model's metrics beside the baselines', on the same samples.
type Evaluation struct {
	From, To     time.Time
	Horizon      int
	Apps, Points int
	ModelVersion string                    `json:",omitempty"`
	Model        *models.Metrics           `json:",omitempty"`
	Baselines    map[string]models.Metrics // keyed by Baseline* names
}

// Flat returns the metrics as registry-friendly keys such as
// "model.roc_auc" and "recency_rate.log_loss".
func (e *Evaluation) Flat() map[string]float64 {
	out := map[string]float64{"eval.samples": float64(e.Points), "eval.horizon": float64(e.Horizon)}
	put := func(prefix string, m models.Metrics) {
		out[prefix+".log_loss"] = m.LogLoss
		out[prefix+".brier"] = m.Brier
		out[prefix+".roc_auc"] = m.AUC
		out[prefix+".ece"] = m.ECE
	}
	if e.Model != nil {
		put("model", *e.Model)
		out["eval.positive_rate"] = e.Model.Positive
	}
	for k, m := range e.Baselines {
		put(k, m)
	}
	// An undefined metric (ROC AUC with one class) is left out, not NaN:
	// NaN does not survive JSON.
	maps.DeleteFunc(out, func(_ string, v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) })
	return out
}

// appHistory holds per-application arrays the baselines need in O(1) per point.
type appHistory struct {
	counts     []float64
	activePref []int32 // activePref[i] = active bins among [0, i)
	countPref  []float64
	lastActive []int32 // lastActive[i] = last active bin < i, -1 if none
}

func newAppHistory(a *trace.App) *appHistory {
	n := len(a.Counts)
	h := &appHistory{counts: make([]float64, n), activePref: make([]int32, n+1),
		countPref: make([]float64, n+1), lastActive: make([]int32, n+1)}
	last := int32(-1)
	for i, c := range a.Counts {
		h.counts[i] = float64(c)
		h.activePref[i+1] = h.activePref[i]
		if c > 0 {
			h.activePref[i+1]++
		}
		h.countPref[i+1] = h.countPref[i] + float64(c)
		h.lastActive[i] = last
		if c > 0 {
			last = int32(i)
		}
	}
	h.lastActive[n] = last
	return h
}

func (h *appHistory) label(t, horizon int) bool {
	return h.activePref[t+horizon]-h.activePref[t] > 0
}

// baselineScores returns the three baselines' raw scores at point t. The
// historical fraction is measured over the bins before min(t, histEnd): the
// history a model trained up to histEnd would have had.
func (h *appHistory) baselineScores(t, histEnd, recent int) (last, frac, rec float64) {
	if t > 0 && h.counts[t-1] > 0 {
		last = 1
	}
	if e := min(t, histEnd); e > 0 {
		frac = float64(h.activePref[e]) / float64(e)
	}
	// Recency: fewer bins since the last request ranks higher; among equal
	// recency, more requests in the last `recent` bins ranks higher.
	gap := float64(t + 1) // never active: worse than any observed gap
	if la := h.lastActive[t]; la >= 0 {
		gap = float64(t - 1 - int(la))
	}
	c := h.countPref[t] - h.countPref[max(0, t-recent)]
	rec = -gap + c/(c+1)
	return
}

// calibrator maps a raw baseline score to a probability: the smoothed
// positive rate of its quantile bin on calibration data (earlier points).
// Ranking metrics use the raw score; probability metrics use this map.
type calibrator struct {
	edges []float64 // upper edges of bins, ascending
	prob  []float64
}

func fitCalibrator(score []float64, y []bool, bins int) calibrator {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return score[idx[a]] < score[idx[b]] })
	var c calibrator
	per := max(len(idx)/bins, 1)
	for i := 0; i < len(idx); {
		j := min(i+per, len(idx))
		// Never split equal scores across bins.
		for j < len(idx) && score[idx[j]] == score[idx[j-1]] {
			j++
		}
		var pos float64
		for _, k := range idx[i:j] {
			pos += models.B2F(y[k])
		}
		c.edges = append(c.edges, score[idx[j-1]])
		c.prob = append(c.prob, (pos+0.5)/(float64(j-i)+1))
		i = j
	}
	return c
}

func (c calibrator) apply(s float64) float64 {
	if len(c.edges) == 0 {
		return 0.5
	}
	i := sort.SearchFloat64s(c.edges, s)
	return c.prob[min(i, len(c.prob)-1)]
}

// Evaluate scores model (nil = baselines only) on every application
// at every point of the range, beside the three baselines. Baseline
// probabilities are calibrated on the points before opt.From.
func Evaluate(ctx context.Context, tr *trace.Trace, model Model, opt EvalOptions) (*Evaluation, error) {
	if tr == nil || tr.Bins == 0 || len(tr.Apps) == 0 {
		return nil, fmt.Errorf("evaluate: empty trace")
	}
	if opt.Horizon == 0 {
		opt.Horizon = 5
		if model != nil {
			opt.Horizon = model.Spec().Horizon
		}
	}
	if model != nil && opt.Horizon != model.Spec().Horizon {
		return nil, fmt.Errorf("evaluate: horizon %d differs from the model's %d", opt.Horizon, model.Spec().Horizon)
	}
	if model != nil && model.Spec().Bin() != tr.Bin {
		return nil, fmt.Errorf("evaluate: trace bin %v differs from the model's %v", tr.Bin, model.Spec().Bin())
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 256
	}
	if opt.Workers <= 0 {
		opt.Workers = min(2, runtime.GOMAXPROCS(0))
	}
	if opt.RecentBins <= 0 {
		opt.RecentBins = 60
	}
	from, err := binIndex(tr, opt.From, 0)
	if err != nil {
		return nil, fmt.Errorf("evaluate: from: %w", err)
	}
	to, err := binIndex(tr, opt.To, tr.Bins)
	if err != nil {
		return nil, fmt.Errorf("evaluate: to: %w", err)
	}
	to = min(to, tr.Bins-opt.Horizon+1)
	from = max(from, 1)
	if from >= to {
		return nil, fmt.Errorf("evaluate: no prediction points in bins [%d, %d) with horizon %d over %d bins", from, to, opt.Horizon, tr.Bins)
	}
	ev := &Evaluation{From: tr.BinStart(from), To: tr.BinStart(to), Horizon: opt.Horizon,
		Apps: len(tr.Apps), Baselines: map[string]models.Metrics{}}

	hist := make([]*appHistory, len(tr.Apps))
	for i := range tr.Apps {
		hist[i] = newAppHistory(&tr.Apps[i])
	}
	names := []string{BaselineLastBin, BaselineFraction, BaselineRecency}
	// Calibration points: everything before the evaluation range.
	var calScore [3][]float64
	var calY []bool
	for _, h := range hist {
		for t := 1; t < from && t+opt.Horizon <= from; t++ {
			a, b, c := h.baselineScores(t, from, opt.RecentBins)
			calScore[0] = append(calScore[0], a)
			calScore[1] = append(calScore[1], b)
			calScore[2] = append(calScore[2], c)
			calY = append(calY, h.label(t, opt.Horizon))
		}
	}
	var cals [3]calibrator
	for k := range cals {
		cals[k] = fitCalibrator(calScore[k], calY, 50)
	}

	n := len(hist) * (to - from)
	ev.Points = n
	y := make([]bool, 0, n)
	var raw, prob [3][]float64
	for k := range raw {
		raw[k] = make([]float64, 0, n)
		prob[k] = make([]float64, 0, n)
	}
	for _, h := range hist {
		for t := from; t < to; t++ {
			a, b, c := h.baselineScores(t, from, opt.RecentBins)
			for k, s := range [3]float64{a, b, c} {
				raw[k] = append(raw[k], s)
				prob[k] = append(prob[k], cals[k].apply(s))
			}
			y = append(y, h.label(t, opt.Horizon))
		}
	}
	for k, name := range names {
		m, err := models.Score(prob[k], raw[k], y)
		if err != nil {
			return nil, fmt.Errorf("evaluate %s: %w", name, err)
		}
		ev.Baselines[name] = m
	}
	if model == nil {
		return ev, nil
	}
	ev.ModelVersion = model.Version()
	p, err := predictPoints(ctx, tr, hist, from, to, model, opt)
	if err != nil {
		return nil, fmt.Errorf("evaluate model: %w", err)
	}
	m, err := models.Score(p, nil, y)
	if err != nil {
		return nil, fmt.Errorf("evaluate model: %w", err)
	}
	ev.Model = &m
	return ev, nil
}

// binIndex converts a time to a bin index of tr (def when zero), refusing
// times off the grid's range.
func binIndex(tr *trace.Trace, t time.Time, def int) (int, error) {
	if t.IsZero() {
		return def, nil
	}
	d := t.Sub(tr.Start)
	if d < 0 || d > time.Duration(tr.Bins)*tr.Bin {
		return 0, fmt.Errorf("%s is outside the trace [%s, %s]", t.Format(time.RFC3339), tr.Start.Format(time.RFC3339), tr.BinStart(tr.Bins).Format(time.RFC3339))
	}
	return int(math.Ceil(float64(d) / float64(tr.Bin))), nil
}

// predictPoints runs the model on every (app, t) point, app-major like the
// labels, with opt.Workers goroutines over interleaved batches.
func predictPoints(ctx context.Context, tr *trace.Trace, hist []*appHistory, from, to int, model Model, opt EvalOptions) ([]float64, error) {
	per := to - from
	n := len(hist) * per
	p := make([]float64, n)
	hb := model.Spec().HistoryBins()
	batches := (n + opt.BatchSize - 1) / opt.BatchSize
	errs := make([]error, opt.Workers)
	var done atomic.Int64
	last := time.Now()
	var wg sync.WaitGroup
	for w := range opt.Workers {
		wg.Go(func() {
			in := make([]Input, 0, opt.BatchSize)
			for b := w; b < batches; b += opt.Workers {
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				in = in[:0]
				lo, hi := b*opt.BatchSize, min((b+1)*opt.BatchSize, n)
				for k := lo; k < hi; k++ {
					i, t := k/per, from+k%per
					in = append(in, Input{Counts: hist[i].counts[max(0, t-hb):t], Next: tr.BinStart(t), Bin: tr.Bin})
				}
				out, err := model.Predict(in)
				if err != nil {
					errs[w] = err
					return
				}
				copy(p[lo:hi], out)
				d := done.Add(int64(hi - lo))
				if w == 0 && opt.Progress != nil && time.Since(last) >= 2*time.Second {
					last = time.Now()
					opt.Progress(int(d), n)
				}
			}
		})
	}
	wg.Wait()
	if opt.Progress != nil {
		opt.Progress(int(done.Load()), n)
	}
	return p, errors.Join(errs...)
}
