package resident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/policy"
)

// Champion gives the demand model the loops forecast with.
type Champion interface {
	Champion(ctx context.Context) (activities.DemandModel, error)
}

// Arrivals is the watch's mirror, for the Forecast activity
// (activities.PlanWatch); nil when it has none.
func (w *Watch) Arrivals() activities.Arrivals {
	if w.Mirror == nil {
		return nil // not a nil *Mirror in an interface: the activity checks for nil
	}
	return w.Mirror
}

// Waker wakes a loop: it decides the bin that starts at bin (signal
// workflows.SignalWake; the worker adapts its Temporal client).
type Waker interface {
	Wake(ctx context.Context, workflowID string, bin time.Time, reason string) error
}

// ErrLoopGone is what a Waker returns when the loop no longer runs.
var ErrLoopGone = errors.New("loop not running")

// Reasons a Watch wakes a loop, as the loop shows them.
const (
	WakeColdArrival  = "a request found no warm instance"
	WakeBelowKeep    = "a request changed the forecast: below the keep threshold"
	WakeModelChanged = "a request arrived and the model changed"
	WakeUnplanned    = "a request arrived and this worker had no plan of the loop (it restarted)"
	WakeRelease      = "its planned release came with no request since"
)

// Watch wakes router-mode loops whose plan an arrival may have changed.
// Between two wakes a loop decides nothing: its plan assumed no request
// would arrive. When the bins since its wake saw requests, the plan can be
// wrong from the next bin on, and a loop deciding every bin would see it:
//
//   - a loop holding nothing: a request found no warm instance, and the
//     application now holds the instance that served it (keep or release
//     at the next bin, never nothing): wake it;
//   - a loop holding an instance: it keeps it at the next bin only while
//     the model, given the requests, still gives P ≥ its keep threshold.
//     The Watch asks the model (one batch for every such loop) and wakes
//     the loops below it, every bin until they wake;
//   - a loop holding an instance past its planned release (ReleaseAt: a
//     request was likely to come first): when none came, the release
//     stands, and the Watch wakes the loop for it.
//
// So the loops decide exactly what they would deciding every bin, and wake
// only when a decision changes. Check runs once per bin, after the bin's
// reports are in (Grace); the Forecast activity registers every plan.
type Watch struct {
	Mirror    *Mirror
	Predictor Champion // the champion model the loops use (activities.Predictor)
	Waker     Waker
	Log       *slog.Logger
	// Parallel bounds the wake signals in flight (default 16).
	Parallel int
	// LoopOf, when set, names an application's loop (its workflow ID).
	// Plans live in the worker's memory: a worker that starts (a rolling
	// restart) knows none until each loop wakes and registers again, up to
	// its sleep bound later. For Amnesia after its first check, the watch
	// so wakes, once, the loop of every application with arrivals whose
	// loop has not registered a plan with it since it started: the loop
	// decides again and registers. (A loop started after the worker
	// registers at its first decision, and is never woken so.)
	LoopOf  func(app string) string
	Amnesia time.Duration

	mu    sync.Mutex
	plans map[string]*watched

	checkMu sync.Mutex      // one Check at a time
	checked time.Time       // the last boundary checked (zero before the first)
	began   time.Time       // the first boundary checked
	told    map[string]bool // loops registered or woken for want of a plan since the start; nil once Amnesia is over
	forgot  bool            // Amnesia is over

	checks, wakes, cold, below, model, unplanned, release, failed atomic.Int64
}

type watched struct {
	activities.Plan
	woken bool // a wake was sent for this plan
}

// WatchStats are a Watch's counters since it started.
type WatchStats struct {
	Plans       int   // plans watched now
	Checks      int64 // loops checked against the model
	Wakes       int64 // loops woken
	Cold        int64 // of which: a request found no warm instance
	BelowKeep   int64 // of which: the model fell below the keep threshold
	ModelChange int64 // of which: the plan was made by another model
	Unplanned   int64 // of which: no plan yet since the worker started
	Release     int64 // of which: a planned release with no request since
	Failed      int64 // wake signals that failed
}

// Stats returns the counters.
func (w *Watch) Stats() WatchStats {
	w.mu.Lock()
	n := len(w.plans)
	w.mu.Unlock()
	return WatchStats{Plans: n, Checks: w.checks.Load(), Wakes: w.wakes.Load(), Cold: w.cold.Load(),
		BelowKeep: w.below.Load(), ModelChange: w.model.Load(), Unplanned: w.unplanned.Load(), Release: w.release.Load(),
		Failed: w.failed.Load()}
}

// Register records a loop's plan, replacing its previous one.
func (w *Watch) Register(p activities.Plan) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.plans == nil {
		w.plans = map[string]*watched{}
	}
	w.plans[p.WorkflowID] = &watched{Plan: p}
	if !w.forgot && w.LoopOf != nil {
		if w.told == nil {
			w.told = map[string]bool{}
		}
		w.told[p.WorkflowID] = true
	}
}

// Check freezes the bins before through (a bin boundary, Grace after it at
// the earliest) and wakes every loop whose plan the arrivals in them may
// have changed, boundary by boundary, from the last boundary it checked to
// the end of the frozen bins. The watch keeps its own mark of the
// boundaries it checked: a loop's forecast freezes bins on the same mirror,
// often before the watch (a loop due at a boundary wakes at its grace, as
// the watch does), and those bins are checked all the same. A failed
// freeze still checks the bins frozen before it.
func (w *Watch) Check(ctx context.Context, through time.Time) error {
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	var errs []error
	if err := w.Mirror.Freeze(ctx, through); err != nil {
		errs = append(errs, err)
	}
	frozen := w.Mirror.Frozen()
	if frozen.IsZero() {
		return errors.Join(errs...)
	}
	bin := w.Mirror.Bin
	from := w.checked
	if from.IsZero() {
		// The first check: the boundary asked for (the plans registered
		// since the worker started came after the bins before it).
		from = through.Add(-bin)
		if frozen.Before(through) {
			from = frozen.Add(-bin)
		}
	}
	// Never further back than the mirror holds.
	if oldest := frozen.Add(-time.Duration(w.Mirror.span()) * bin); from.Before(oldest) {
		from = oldest
	}
	if w.began.IsZero() {
		w.began = from.Add(bin)
	}
	for f := from.Add(bin); !f.After(frozen); f = f.Add(bin) {
		errs = append(errs, w.check(ctx, f))
		w.checked = f
	}
	return errors.Join(errs...)
}

// due is one loop to wake at a boundary.
type due struct {
	p      *watched
	reason string
}

// check looks at the plans still asleep at boundary f (the start of the
// bin to decide).
func (w *Watch) check(ctx context.Context, f time.Time) error {
	w.mu.Lock()
	var asleep []*watched
	for _, p := range w.plans {
		if p.NextWake.Before(f) {
			delete(w.plans, p.WorkflowID) // its loop woke, or is late: it registers again
			continue
		}
		if !p.woken && p.NextWake.After(f) && f.After(p.Wake) && p.Bin == w.Mirror.Bin {
			asleep = append(asleep, p)
		}
	}
	w.mu.Unlock()

	var wake []due
	var errs []error
	var ask []*watched
	var qs []activities.DemandQuery
	var model activities.DemandModel
	for _, p := range asleep {
		if !w.Mirror.Active(p.App, p.Wake, f) {
			// Nothing arrived: the plan stands, and with it a release
			// the loop left to the watch.
			if p.Holding && !p.ReleaseAt.IsZero() && !f.Before(p.ReleaseAt) {
				wake = append(wake, due{p, WakeRelease})
			}
			continue
		}
		if !p.Holding {
			wake = append(wake, due{p, WakeColdArrival})
			continue
		}
		if model == nil {
			m, err := w.Predictor.Champion(ctx)
			if err != nil {
				// No model to check with: wake them all, the loops decide.
				wake = append(wake, due{p, WakeModelChanged})
				continue
			}
			model = m
		}
		if p.Model != model.Version() {
			wake = append(wake, due{p, WakeModelChanged})
			continue
		}
		counts, err := w.Mirror.Window(p.App, f, p.Window)
		if err != nil {
			errs = append(errs, err) // checked again at the next boundary
			continue
		}
		bins := int(f.Sub(p.Wake) / p.Bin)
		qs = append(qs, activities.DemandQuery{Counts: counts, Next: p.Next.Add(time.Duration(bins) * p.ModelBin), Bin: p.ModelBin})
		ask = append(ask, p)
	}
	if len(qs) > 0 {
		w.checks.Add(int64(len(qs)))
		for lo := 0; lo < len(qs); lo += 512 {
			hi := min(lo+512, len(qs))
			probs, err := model.Predict(qs[lo:hi])
			if err == nil && len(probs) != hi-lo {
				err = fmt.Errorf("%d outputs for %d inputs", len(probs), hi-lo)
			}
			if err != nil {
				// The holding loops not checked are checked again at the
				// next boundary (their plans are not marked); the loops a
				// request found cold need no model and are woken now.
				errs = append(errs, fmt.Errorf("arrival watch: model %s: %w", model.Version(), err))
				break
			}
			for k, pr := range probs {
				p := ask[lo+k]
				// A hair above the threshold also wakes: a batch of another
				// size may round the last bit the other way, and a wake
				// too many decides what the loop would anyway.
				if !p.keeps(qs[lo+k].Counts, pr, model.HistoryBins()) {
					wake = append(wake, due{p, WakeBelowKeep})
				}
			}
		}
	}
	wake = append(wake, w.unplannedAt(f)...)
	errs = append(errs, w.wake(ctx, f, wake))
	return errors.Join(errs...)
}

// unplannedAt is, within Amnesia of the first boundary checked, the loops
// of the applications with arrivals in the bin before f that have not
// registered a plan with the watch since it started, nor been woken so.
// A wake too many decides what the loop would anyway; one too few leaves
// it asleep to its bound.
func (w *Watch) unplannedAt(f time.Time) []due {
	if w.LoopOf == nil {
		return nil
	}
	if !f.Before(w.began.Add(w.Amnesia)) {
		w.mu.Lock()
		w.told, w.forgot = nil, true // every loop has woken and registered since
		w.mu.Unlock()
		return nil
	}
	apps := w.Mirror.ActiveApps(f.Add(-w.Mirror.Bin), f)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []due
	for _, app := range apps {
		id := w.LoopOf(app)
		if w.told[id] {
			continue
		}
		out = append(out, due{&watched{Plan: activities.Plan{WorkflowID: id, App: app}}, WakeUnplanned})
	}
	return out
}

// keeps says whether a holding loop, given the counts up to now and the
// chance of a request in this bin, would keep its instance. Like the
// Forecast activity, it reads the application's activity over the model's
// window (window bins; 0: all the counts).
func (p *watched) keeps(counts []float64, pr float64, window int) bool {
	if p.Policy == nil {
		return pr >= p.Keep*(1+1e-9)+1e-12
	}
	// Only a clear keep stands: a batch of another size may round the
	// last bit the other way, and a wake too many decides what the loop
	// would anyway.
	clear := (pr - 1e-12) / (1 + 1e-9)
	if window > 0 && len(counts) > window {
		counts = counts[len(counts)-window:]
	}
	s := policy.Situation{App: policy.App{MemoryMB: p.MemoryMB}, Held: true, Activity: policy.ActivityOf(counts), Path: []float64{clear}}
	return p.Policy.Decide(s, p.ModelBin, 1).Action.Holds()
}

// wake signals the loops, Parallel at a time (1: one after the other, on
// the caller's goroutine).
func (w *Watch) wake(ctx context.Context, f time.Time, wake []due) error {
	par := w.Parallel
	if par <= 0 {
		par = 16
	}
	var mu sync.Mutex
	var firstErr error
	one := func(d due) {
		err := w.Waker.Wake(ctx, d.p.WorkflowID, f, d.reason)
		w.mu.Lock()
		defer w.mu.Unlock()
		if d.reason == WakeUnplanned && !w.forgot && (err == nil || errors.Is(err, ErrLoopGone)) {
			if w.told == nil {
				w.told = map[string]bool{}
			}
			w.told[d.p.WorkflowID] = true
		}
		switch {
		case errors.Is(err, ErrLoopGone):
			if w.plans[d.p.WorkflowID] == d.p {
				delete(w.plans, d.p.WorkflowID)
			}
		case err != nil:
			// Not marked: the next check wakes it (late beats never).
			w.failed.Add(1)
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("arrival watch: wake %s: %w", d.p.WorkflowID, err)
			}
			mu.Unlock()
		default:
			d.p.woken = true
			w.wakes.Add(1)
			switch d.reason {
			case WakeColdArrival:
				w.cold.Add(1)
			case WakeBelowKeep:
				w.below.Add(1)
			case WakeUnplanned:
				w.unplanned.Add(1)
			case WakeRelease:
				w.release.Add(1)
			default:
				w.model.Add(1)
			}
		}
	}
	if par == 1 {
		for _, d := range wake {
			one(d)
		}
		return firstErr
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, d := range wake {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			one(d)
		})
	}
	wg.Wait()
	return firstErr
}

// Run checks once per bin, Grace after each boundary, until ctx ends.
// Errors are logged; the next bin checks again.
func (w *Watch) Run(ctx context.Context) {
	bin := w.Mirror.Bin
	for {
		next := time.Now().Add(-Grace(bin)).Truncate(bin).Add(bin)
		t := time.NewTimer(time.Until(next.Add(Grace(bin))))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := w.Check(ctx, next); err != nil && ctx.Err() == nil {
			w.logger().Warn("arrival watch", "boundary", next.UTC(), "err", err)
		}
	}
}

func (w *Watch) logger() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.Default()
}
