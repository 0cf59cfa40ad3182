package workflows

// A wake: the bins that ended are closed, the forecast decides for the bin
// that begins, and the decision is taken.

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// wake closes the bins that ended by `at` (now, or the start of a loop's
// first bin decided ahead of it), decides for the bin that begins, carries
// the decision out and plans the next wake.
func (l *loop) wake(ctx workflow.Context, at time.Time) {
	binStart, slept := l.closeBins(ctx, at)
	held := l.Holding || (len(l.Recent) > 0 && l.Recent[len(l.Recent)-1] > 0)
	l.expire(ctx, at)
	if l.Policy.Paused {
		l.pause(ctx, binStart)
	} else if res, err := l.forecast(ctx, binStart, held, slept); err != nil {
		l.forecastFailed(binStart, held, err)
	} else {
		l.decide(ctx, binStart, res)
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

// closeBins counts the wake and closes the bins that ended by at; it
// returns the start of the bin that begins and how many bins the loop
// slept through since its last decision.
func (l *loop) closeBins(ctx workflow.Context, at time.Time) (binStart time.Time, slept int) {
	// A router-mode loop's first decision is of the bin open as it started:
	// late by design, not behind.
	if startup := l.Router && l.Stats.Wakes == 0; !startup {
		l.recordLag(workflow.Now(ctx).Sub(l.NextWake))
	}
	l.Stats.Wakes++
	// Bins the loop slept through followed the plan made at the last wake.
	if !l.decided.IsZero() {
		if slept = int(at.Truncate(l.Bin).Sub(l.decided)/l.Bin) - 1; slept > 0 {
			l.Stats.Decisions[l.plannedAction()] += slept
		}
	}
	if at.Sub(l.NextWake) >= l.Bin {
		// Behind schedule (no worker ran the loop): bins went undecided.
		l.Stats.SkippedBins += int(at.Sub(l.NextWake) / l.Bin)
	}
	l.advance(at)
	l.AheadAt = time.Time{}
	return l.BinEnd.Add(-l.Bin), slept
}

// pause holds nothing new and lets go of what is held.
func (l *loop) pause(ctx workflow.Context, binStart time.Time) {
	l.LastDecision = "paused"
	if l.Holding {
		l.releaseAll(ctx, "loop paused")
	}
	l.Holding = false
	l.plan(binStart, l.Policy.LookaheadBins, "paused")
}

// forecastFailed keeps what the loop holds and tries again next bin.
func (l *loop) forecastFailed(binStart time.Time, held bool, err error) {
	l.Stats.PredictErrors++
	msg := "prediction failed: " + err.Error()
	if msg != l.LastError {
		l.log.Warn("prediction failed; the loop keeps what it holds and tries again next bin", "error", err)
	}
	l.LastError, l.LastDecision = msg, records.DecisionNoModel
	l.Holding = held && len(l.Leases) > 0
	l.plan(binStart, 1, "retry the prediction")
}

// decide takes the forecast's decision for the bin at binStart, carries
// it out (unless dry-run) and plans the next wake.
func (l *loop) decide(ctx workflow.Context, binStart time.Time, res wire.ForecastResult) {
	l.Stats.Predictions++
	if l.Router {
		l.read(binStart, res.Counts)
	}
	l.LastProbability, l.ModelVersion = res.Path[0], res.ModelVersion
	if res.HistoryBins > l.Window {
		// Keep as much history as the model can use (zeros count as idle).
		l.Window = min(res.HistoryBins, 1440)
	}
	if strings.HasPrefix(l.LastError, "prediction failed") {
		l.LastError = ""
	}
	l.Stats.Decisions[res.Action]++
	l.LastDecision = res.Action.String()
	l.decided = binStart
	if l.Policy.DryRun {
		l.LastDecision = records.DecisionDryRun + ": " + l.LastDecision
	} else {
		l.apply(ctx, binStart, res)
	}
	l.Holding = res.Action.Holds()
	if !l.Holding {
		l.prepWanted = false
	}
	next, reason := res.NextChange, ""
	if res.Until != wire.UntilChange {
		reason = untilReason(res.Until, next)
	} else {
		reason = l.planAhead(binStart, next, res)
	}
	if l.Policy.Ticking {
		next, reason = 1, "ticking every bin"
		l.AheadAt = time.Time{}
	}
	l.plan(binStart, next, reason)
}

// advance closes every bin that has ended by now: the requests observed in
// it go into Recent. The bins the loop slept through followed its plan.
// However many bins ended (a worker down for days), at most a window of
// them is pushed: the rest would fall out of Recent anyway.
func (l *loop) advance(now time.Time) {
	if l.BinEnd.After(now) {
		return
	}
	ended := int64(now.Sub(l.BinEnd)/l.Bin) + 1
	l.push(l.Pending)
	l.Pending = 0
	for range min(ended-1, int64(l.Window)) {
		l.push(0)
	}
	l.BinEnd = l.BinEnd.Add(time.Duration(ended) * l.Bin)
}

// plannedAction is the decision of every bin the loop sleeps through: it
// keeps what it holds, or holds nothing.
func (l *loop) plannedAction() policy.Action {
	if l.Holding {
		return policy.Keep
	}
	return policy.Idle
}

// forecast asks for the path ahead and the policy's decisions along it;
// slept is how many bins the loop slept through since its last decision.
func (l *loop) forecast(ctx workflow.Context, binStart time.Time, held bool, slept int) (wire.ForecastResult, error) {
	maxSleep := l.maxSleep()
	bins := max(l.Policy.LookaheadBins, maxSleep)
	if l.Policy.Ticking {
		bins = 1
	}
	heldWord := "nothing held"
	if held {
		heldWord = "held"
	}
	lactx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
		// What the model is asked (Web UI metadata, not matched on replay).
		Summary: fmt.Sprintf("forecast %d bins from %s (%s, %d slept through)", bins, binStart.UTC().Format("15:04:05"), heldWord, slept),
	})
	next, featureBin := l.Clock.Map(binStart, l.Bin)
	var res wire.ForecastResult
	in := wire.ForecastInput{
		App: l.App, Counts: l.Recent, Next: next, Bin: featureBin, Bins: bins,
		Held: held, Thresholds: l.thresholds(), Lookahead: l.Policy.LookaheadBins, DryRun: l.Policy.DryRun,
		MaxSleep: l.firstSleep(maxSleep),
	}
	if featureBin != l.Bin {
		in.LeaseBin = l.Bin
	}
	if cfg := l.Policy.Config(); cfg.Objective != "" {
		// Decided in the activity by policy.Config.Decide; the expected-value
		// rule alone (every loop from before) by the thresholds, as it ran.
		in.Policy, in.MemoryMB = &cfg, l.leaseSizeMB()
	}
	if !(l.Router && l.Stats.Wakes == 1) {
		in.Due, in.Decided = l.NextWake, slept+1
	}
	if l.Router {
		// The last bin's requests are in the store: the activity reads them.
		in.Counts, in.Held = nil, l.Holding
		in.Router = &wire.RouterInput{Start: binStart, Bin: l.Bin, Window: l.Window, Since: l.ReadThrough}
		if !l.SeedEnd.IsZero() {
			// Seeded from a trace: the bins of Recent before SeedEnd are
			// that history, which the router never recorded.
			if k := int(binStart.Sub(l.SeedEnd) / l.Bin); k >= 0 && k < len(l.Recent) {
				in.Router.Seed, in.Router.SeedEnd = l.Recent[:len(l.Recent)-k], l.SeedEnd
			}
		}
	}
	err := workflow.ExecuteLocalActivity(lactx, ActivityForecast, in).Get(ctx, &res)
	if err == nil && len(res.Path) == 0 {
		err = fmt.Errorf("forecast returned no probability")
	}
	return res, err
}

// read takes a router-mode loop's counts of the bins since its last read
// (ending with the bin before binStart) into its own history.
func (l *loop) read(binStart time.Time, counts wire.Counts) {
	switch k := len(counts); {
	case k > len(l.Recent):
		l.Recent = append(l.Recent[:0:0], counts[max(0, k-l.Window):]...)
	default:
		copy(l.Recent[len(l.Recent)-k:], counts)
	}
	for _, c := range counts {
		l.Stats.Requests += c
	}
	l.ReadThrough = binStart
}
