package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// Predictor serves the prediction loops: a local activity per tick that runs
// the champion demand model (cached here, reloaded when the registry's
// champion changes) and queues the prediction for a bulk insert.
type Predictor struct {
	Models      ModelRegistry
	History     HistoryReader
	Predictions *batch.Batcher[records.Prediction]
	// CheckEvery bounds how often the registry is asked for the champion's
	// version (default 10 s): not a ClickHouse round trip per tick.
	CheckEvery time.Duration
	Log        *slog.Logger
	// Watch, when set, mirrors the recorded arrivals for router-mode loops
	// and watches their plans (see PlanWatch; the worker's resident.Watch).
	Watch PlanWatch
	// Decisions, when set, counts the loops' decisions and their lag.
	Decisions DecisionMetrics

	mu         sync.RWMutex
	model      DemandModel
	checked    time.Time
	loadErr    error
	loadMu     sync.Mutex  // one inline first load at a time
	refreshing atomic.Bool // a background refresh is running
}

// Forecast asks the champion model, in one batch, for the chance of a
// request in each of the next in.Bins bins given that none arrives before
// it (the loop's history followed by idle bins), and lets package policy
// decide along that path: what to do now, how long a hold lasts, and when
// the next decision falls. Run it as a local activity at every wake.
func (p *Predictor) Forecast(ctx context.Context, in wire.ForecastInput) (wire.ForecastResult, error) {
	if in.App == "" || in.Bin <= 0 || in.Bins < 1 || in.Bins > 1440 || in.Next.IsZero() {
		return wire.ForecastResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("forecast: app %q, bin %v, bins %d (1..1440), next %v: all are required", in.App, in.Bin, in.Bins, in.Next))
	}
	counts, held := in.Counts, in.Held
	var read wire.Counts
	if in.Router != nil {
		var err error
		if counts, read, err = p.routerCounts(ctx, in); err != nil {
			return wire.ForecastResult{}, err
		}
		held = held || len(counts) > 0 && counts[len(counts)-1] > 0
	}
	m, err := p.champion(ctx)
	if err != nil {
		return wire.ForecastResult{}, err
	}
	// One input per bin ahead: the history, then j idle bins.
	ext := make([]float64, len(counts)+in.Bins-1)
	copy(ext, counts)
	qs := make([]DemandQuery, in.Bins)
	for j := range qs {
		qs[j] = DemandQuery{Counts: ext[:len(counts)+j], Next: in.Next.Add(time.Duration(j) * in.Bin), Bin: in.Bin}
	}
	path, err := m.Predict(qs)
	if err != nil {
		err = fmt.Errorf("forecast %s with model %s: %w", in.App, m.Version(), err)
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.NonRetryable() {
			return wire.ForecastResult{}, nonRetryable(app.Type(), err)
		}
		return wire.ForecastResult{}, err
	}
	if len(path) != in.Bins {
		return wire.ForecastResult{}, fmt.Errorf("forecast %s with model %s: %d outputs for %d inputs", in.App, m.Version(), len(path), in.Bins)
	}
	res := wire.ForecastResult{Path: path, ModelVersion: m.Version(), HistoryBins: m.HistoryBins(), Counts: read, Held: held}
	var change int
	if in.Policy != nil {
		change = decide(in, &res, counts, m.HistoryBins())
	} else {
		res.Action = in.Thresholds.Decide(held, path[0])
		if res.Action.Holds() {
			res.HoldBins = policy.Config{LookaheadBins: leaseBins(in)}.Hold(in.Thresholds, held, path)
		}
		change = 1 + policy.NextChange(in.Thresholds, res.Action.Holds(), path[1:])
	}
	res.NextChange, res.Until = nextWake(in, res.Action.Holds(), change, len(path))
	var releaseAt time.Time
	if in.Router != nil && p.Watch != nil {
		if n := watchedHold(in, res); n > res.NextChange {
			releaseAt = in.Router.Start.Add(time.Duration(res.NextChange) * in.Router.Bin)
			res.NextChange, res.HoldBins, res.Until, res.Ahead = n, n, wire.UntilWatch, nil
		}
	}
	if in.MaxSleep > 0 {
		// The loop reads the path at the bin it decides and, when the policy
		// prepares next, over the hold from there: the rest need not weigh
		// on its history.
		keep := 1
		if res.Until == wire.UntilChange {
			keep = min(len(path), res.NextChange+max(1, in.Lookahead))
		}
		res.Path = path[:keep:keep]
	}
	if in.Router != nil && p.Watch != nil {
		p.Watch.Register(Plan{WorkflowID: activity.GetInfo(ctx).WorkflowExecution.ID, App: in.App,
			Wake: in.Router.Start, NextWake: in.Router.Start.Add(time.Duration(res.NextChange) * in.Router.Bin), Bin: in.Router.Bin,
			Holding: res.Action.Holds(), ReleaseAt: releaseAt, Keep: in.Thresholds.Keep, Policy: in.Policy, MemoryMB: in.MemoryMB, Next: in.Next, ModelBin: in.Bin,
			Window: in.Router.Window, Model: res.ModelVersion})
	}
	if p.Decisions != nil {
		lag := time.Duration(-1) // not measured
		if !in.Due.IsZero() {
			lag = max(0, time.Since(in.Due))
		}
		bin := in.Bin
		if in.LeaseBin > 0 {
			bin = in.LeaseBin // the loop's own bins, on a trace clock
		}
		p.Decisions.Decided(lag, max(1, in.Decided), in.Router != nil, bin)
	}
	if p.Predictions != nil {
		decision := res.Action.String()
		if in.DryRun {
			decision = records.DecisionDryRun + ":" + decision
		}
		// The effective threshold the probability was held against.
		th := in.Thresholds.Prepare
		if held {
			th = in.Thresholds.Keep
		}
		p.Predictions.Add(records.Prediction{Time: time.Now().UTC(), App: in.App, Bin: in.Next,
			Probability: path[0], Threshold: th, ModelVersion: res.ModelVersion, Decision: decision})
	}
	return res, nil
}

// leaseBins is how far ahead a held instance's lease is planned: the
// lookahead, or, for a loop that sleeps (MaxSleep > 0), as far as it may
// sleep. A loop that had to wake every lookahead only to extend its lease
// would spend most of a busy application's wakes (and a workflow task, a
// marker and an Extend activity each) on that; the price is the safety
// net's length, the time a lost loop's instance outlives it. Never further
// than a host agent keeps a lease (MaxLeaseBins): a loop the policy check
// let through with a longer sleep (workflows.Policy.ValidateFor refuses
// it) plans what the hosts accept and wakes then to extend it.
func leaseBins(in wire.ForecastInput) int {
	n := max(1, in.Lookahead, in.MaxSleep)
	if fits := wire.MaxLeaseBins(leaseBin(in)); fits >= 1 {
		n = min(n, fits)
	}
	return n
}

// leaseBin is the width of the bins the loop's leases live in.
func leaseBin(in wire.ForecastInput) time.Duration {
	if in.LeaseBin > 0 {
		return in.LeaseBin
	}
	return in.Bin
}

// decide lets policy.Config.Decide make the decision along the path, from
// the application's activity over the model's window (window bins) of
// counts, and plans what happens at the next change. It returns the next
// change.
func decide(in wire.ForecastInput, res *wire.ForecastResult, counts []float64, window int) int {
	if window > 0 && len(counts) > window {
		counts = counts[len(counts)-window:]
	}
	s := policy.Situation{App: policy.App{MemoryMB: in.MemoryMB}, Held: res.Held, Activity: policy.ActivityOf(counts),
		Path: res.Path, Window: counts, WindowBins: window}
	d := in.Policy.Decide(s, in.Bin, leaseBins(in))
	res.Action, res.HoldBins = d.Action, d.HoldBins
	if n := d.NextChange; n < len(res.Path) {
		at := s.After(n)
		at.Held = d.Action.Holds()
		if then := in.Policy.Decide(at, in.Bin, min(max(1, in.Lookahead), leaseBins(in))); then.Action == policy.Prepare {
			res.Ahead = &wire.Ahead{Prepare: true, HoldBins: then.HoldBins}
		} else {
			res.Ahead = &wire.Ahead{}
		}
	}
	return d.NextChange
}

// nextWake is how many bins from now the loop decides next, and why: the
// first change along the path (n, of a path of bins), within the bound on
// the sleep (MaxSleep, or how far the lease of a held instance is planned).
func nextWake(in wire.ForecastInput, holds bool, n, bins int) (int, string) {
	if in.MaxSleep <= 0 {
		if n >= bins {
			return n, wire.UntilEnd
		}
		return n, wire.UntilChange
	}
	switch {
	case holds && n > leaseBins(in):
		return leaseBins(in), wire.UntilHold
	case n > in.MaxSleep:
		return in.MaxSleep, wire.UntilBound
	case n >= bins:
		return n, wire.UntilBound
	}
	return n, wire.UntilChange
}

// watchedHold is how many bins a held router-mode loop sleeps when a
// request is likely (even odds or better, by the model's path) before its
// planned release at res.NextChange: a busy application's release is
// planned a bin or two ahead at every wake and a request nearly always
// comes first, so waking for it would be a workflow task per bin. The
// worker's arrival watch checks the loop at every bin after a request, as
// it does any held loop, and wakes it at the planned release if none came,
// so every bin is decided as before; the loop's own wake, a lookahead
// after the release, is only the safety net for a worker that restarted
// and forgot the plan (the instance is then let go up to a lookahead
// late). 0: the loop wakes for its release itself.
func watchedHold(in wire.ForecastInput, res wire.ForecastResult) int {
	if !res.Action.Holds() || res.Until != wire.UntilChange || in.MaxSleep <= 0 || res.NextChange > len(res.Path) {
		return 0
	}
	none := 1.0 // the chance that no request arrives before the release
	for _, p := range res.Path[:res.NextChange] {
		none *= 1 - p
	}
	if none > 0.5 {
		return 0
	}
	return min(res.NextChange+max(1, in.Lookahead), leaseBins(in), in.MaxSleep)
}

// routerCounts is a router-mode loop's history from the arrival mirror:
// the Window bins before the decided bin, and those of them since the loop
// last read.
func (p *Predictor) routerCounts(ctx context.Context, in wire.ForecastInput) (wire.Counts, wire.Counts, error) {
	r := in.Router
	var mir Arrivals
	if p.Watch != nil {
		mir = p.Watch.Arrivals()
	}
	if mir == nil {
		return nil, nil, nonRetryable(wire.ErrBadInput, fmt.Errorf("forecast %s: a router-mode loop needs a worker that mirrors the recorded arrivals (worker --arrivals-bin)", in.App))
	}
	if r.Bin != mir.BinWidth() || r.Window < 1 || r.Window > wire.MaxCountBins {
		return nil, nil, nonRetryable(wire.ErrBadInput, fmt.Errorf("forecast %s: router-mode loop with %v bins and a window of %d: this worker mirrors %v bins (worker --arrivals-bin)", in.App, r.Bin, r.Window, mir.BinWidth()))
	}
	if len(r.Seed) > 0 {
		if err := mir.Seed(in.App, r.SeedEnd, r.Seed); err != nil {
			return nil, nil, nonRetryable(wire.ErrBadInput, fmt.Errorf("forecast %s: %w", in.App, err))
		}
	}
	if err := mir.Freeze(ctx, r.Start); err != nil {
		return nil, nil, err
	}
	counts, err := mir.Window(in.App, r.Start, r.Window)
	if err != nil {
		return nil, nil, err
	}
	n := r.Window
	if !r.Since.IsZero() {
		n = min(n, max(0, int(r.Start.Sub(r.Since)/r.Bin)))
	}
	return counts, slices.Clone(counts[len(counts)-n:]), nil
}

// Champion is the model the loops forecast with (champion), for the
// worker's watch of router-mode loops.
func (p *Predictor) Champion(ctx context.Context) (DemandModel, error) { return p.champion(ctx) }

// champion returns the cached model. Only the very first load happens
// inline; afterwards the registry is asked in the background at most every
// CheckEvery, so no tick ever waits on ClickHouse. When the registry is
// unreachable or a new champion fails to load, the loaded model keeps
// serving (a ClickHouse restart must not stop the loops).
func (p *Predictor) champion(ctx context.Context) (DemandModel, error) {
	m, err, checked := p.current()
	if m == nil && (err == nil || time.Since(checked) >= p.every()) {
		p.loadMu.Lock()
		defer p.loadMu.Unlock()
		if m, err, checked = p.current(); m == nil && (err == nil || time.Since(checked) >= p.every()) {
			p.refresh(ctx)
			m, err, _ = p.current()
		}
	} else if time.Since(checked) >= p.every() && p.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer p.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p.refresh(ctx)
		}()
	}
	if m == nil {
		return nil, err
	}
	return m, nil
}

func (p *Predictor) every() time.Duration {
	if p.CheckEvery <= 0 {
		return 10 * time.Second
	}
	return p.CheckEvery
}

func (p *Predictor) current() (DemandModel, error, time.Time) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.model, p.loadErr, p.checked
}

// refresh asks the registry for the champion and loads it if it changed.
func (p *Predictor) refresh(ctx context.Context) {
	p.mu.Lock()
	p.checked = time.Now()
	loaded := p.model
	p.mu.Unlock()
	set := func(m DemandModel, err error) {
		p.mu.Lock()
		p.model, p.loadErr = m, err
		p.mu.Unlock()
	}
	version, err := p.Models.ChampionVersion(ctx)
	switch {
	case errors.Is(err, ErrNoChampion):
		set(nil, nonRetryable(wire.ErrNoModel, errors.New("no demand model published yet: run `starter train --wait`")))
		return
	case err != nil && loaded != nil:
		p.logger().Warn("model registry unreachable; keeping the loaded model", "version", loaded.Version(), "err", err)
		return
	case err != nil:
		set(nil, fmt.Errorf("ask the model registry for the champion: %w", err))
		return
	case loaded != nil && loaded.Version() == version:
		return
	}
	m, err := p.Models.LoadDemand(ctx, version)
	switch {
	case err != nil && loaded != nil:
		p.logger().Error("new champion fails to load; keeping the previous model", "version", version, "kept", loaded.Version(), "err", err)
	case err != nil:
		set(nil, nonRetryable(wire.ErrNoModel, fmt.Errorf("load demand model %s: %w", version, err)))
	default:
		p.logger().Info("demand model loaded", "version", version)
		set(m, nil)
		if c, ok := loaded.(io.Closer); ok {
			// Predictions already holding the old model finish within
			// the local activity timeout; then its session is freed.
			time.AfterFunc(time.Minute, func() { _ = c.Close() })
		}
	}
}

func (p *Predictor) logger() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// Seed reads, once per loop, the recent activity, the profile and the
// observed host adjustments of an application. `starter loop start --all`
// seeds every loop from one bulk query instead; this is the single-app path.
func (p *Predictor) Seed(ctx context.Context, in wire.SeedInput) (wire.SeedResult, error) {
	if in.App == "" || in.Bins <= 0 || in.Bin <= 0 {
		return wire.SeedResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("seed: app %q, bins %d, bin %v: all are required", in.App, in.Bins, in.Bin))
	}
	counts, err := p.History.RecentActivity(ctx, []string{in.App}, in.End, in.Bins, in.Bin)
	if err != nil {
		return wire.SeedResult{}, fmt.Errorf("recent activity of %s: %w", in.App, err)
	}
	prof, known, err := p.History.AppProfile(ctx, in.App)
	if err != nil {
		return wire.SeedResult{}, fmt.Errorf("profile of %s: %w", in.App, err)
	}
	adj, err := p.History.Adjustments(ctx, in.App)
	if err != nil {
		return wire.SeedResult{}, fmt.Errorf("affinity adjustments of %s: %w", in.App, err)
	}
	c := counts[in.App]
	if len(c) == 0 {
		c = make([]float64, in.Bins)
	}
	prof.App = in.App
	return wire.SeedResult{Counts: c, Profile: prof, ProfileKnown: known, Adjustments: adj}, nil
}
