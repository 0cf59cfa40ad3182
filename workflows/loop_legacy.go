package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/store/records"
)

// The prediction loop as it ran before the policy package. Kept unchanged
// so that running loops and the recorded histories testdata/v1..v4 replay;
// new loops never run it.

// runLegacy is the loop of before the policy package: it ticks every bin,
// prepares a lease for the horizon when P(request within the horizon)
// reaches the threshold, and hands a lease to a single request. Histories
// of loops started before the change (GetVersion policy-loop absent) replay
// through it unchanged; they move to run when they continue as new.
func (l *loop) runLegacy(ctx workflow.Context) (LoopResult, error) {
	if !l.Seeded {
		l.seed(ctx)
	}
	now := workflow.Now(ctx)
	if l.NextTick.IsZero() {
		l.NextTick = now.Truncate(l.Bin).Add(l.Bin)
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)

	receive := l.signals(ctx)

	ticks := 0
	for {
		// Wait for the end of the open bin, handling signals meanwhile.
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		fired := false
		s := workflow.NewSelector(ctx)
		// Behind schedule (a worker was down): tick at once. The server
		// fires any timer after at least ~1 s, so at 1-second bins a tick
		// lags its bin's end by up to one bin (LoopStats.LagBuckets).
		wait := max(0, l.NextTick.Sub(workflow.Now(ctx)))
		s.AddFuture(workflow.NewTimer(timerCtx, wait), func(f workflow.Future) {
			fired = true
			if err := f.Get(ctx, nil); err != nil && !temporal.IsCanceledError(err) {
				l.log.Warn("bin timer failed", "error", err)
			}
		})
		receive(s)
		for !fired && l.stop == nil && ctx.Err() == nil {
			s.Select(ctx)
		}
		cancelTimer()
		if l.stop != nil || ctx.Err() != nil {
			return l.shutdown(ctx)
		}
		l.tickLegacy(ctx)
		ticks++

		if ticks >= l.MaxTicksPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			if l.preparing == "" && l.jobs == 0 && workflow.AllHandlersFinished(ctx) {
				// Signals already delivered to this run must not be lost.
				for {
					s := workflow.NewSelector(ctx)
					receive(s)
					if !s.HasPending() {
						break
					}
					s.Select(ctx)
				}
				if l.stop != nil {
					return l.shutdown(ctx)
				}
				l.Runs++
				l.log.Info("continuing as new", "ticks", ticks, "run", l.Runs)
				return LoopResult{}, workflow.NewContinueAsNewError(ctx, LoopWorkflowName, l.LoopInput)
			}
		}
	}
}

// tickLegacy closes the open bin, expires leases, predicts and maybe prepares.
func (l *loop) tickLegacy(ctx workflow.Context) {
	now := workflow.Now(ctx)
	l.recordLag(now.Sub(l.NextTick))
	binStart := l.closeBins(now)
	l.Stats.Ticks++
	l.expireLegacy(ctx, now)
	if l.Policy.Paused {
		l.LastDecision = "paused"
		l.upsertAttrs(ctx)
		l.setDetails(ctx)
		return
	}

	lactx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
		Summary:             "predict",
	})
	var res activities.PredictResult
	next, featureBin := l.Clock.Map(binStart, l.Bin)
	err := workflow.ExecuteLocalActivity(lactx, ActivityPredict, activities.PredictInput{
		App: l.App, Counts: l.Recent, Next: next, Bin: featureBin,
		MemoryMB: l.Profile.MemoryMB, ReadRatio: l.Profile.ReadRatio,
		Threshold: l.Policy.Threshold, Covered: l.covered(now), DryRun: l.Policy.DryRun,
	}).Get(ctx, &res)
	if err != nil {
		l.Stats.PredictErrors++
		msg := "prediction failed: " + err.Error()
		if msg != l.LastError {
			l.log.Warn("prediction failed; the loop keeps running", "error", err)
		}
		l.LastError, l.LastDecision = msg, records.DecisionNoModel
	} else {
		l.Stats.Predictions++
		l.LastProbability, l.LastDecision, l.ModelVersion = res.Probability, res.Decision, res.ModelVersion
		if res.HistoryBins > l.Window {
			// Keep as much history as the model can use (zeros count as idle).
			l.Window = min(res.HistoryBins, 1440)
		}
		if strings.HasPrefix(l.LastError, "prediction failed") {
			l.LastError = ""
		}
		if res.Decision == records.DecisionPrepare && l.preparing == "" {
			l.prepareLegacy(ctx, binStart)
		}
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

// covered: a preparation is in flight, or a live lease lasts beyond the
// next bin (a new one is prepared during the last bin of the old one).
func (l *loop) covered(now time.Time) bool {
	if l.preparing != "" {
		return true
	}
	for _, ls := range l.Leases {
		if ls.Expires.After(now.Add(l.Bin)) {
			return true
		}
	}
	return false
}

// prepareLegacy starts the preparation child workflow; its result is folded in
// when it completes, without blocking the ticks.
func (l *loop) prepareLegacy(ctx workflow.Context, binStart time.Time) {
	profile := l.Profile
	profile.RatePerMin = l.ratePerMin()
	in := PrepareInput{
		App: l.App, Profile: profile, TopN: l.Policy.TopN, TTL: l.Policy.TTL(l.Bin),
		MaxShadowMS: l.Policy.MaxShadowMS, SampleMB: l.Policy.SampleMB, Adjustments: maps.Clone(l.Adjustments),
	}
	summary := fmt.Sprintf("prepare %d host(s) for %s: P=%.3f ≥ %.3f", l.Policy.TopN, l.App, l.LastProbability, l.Policy.Threshold)
	l.startPreparation(ctx, binStart, in, summary, func(gctx workflow.Context, res PrepareResult) {
		l.Leases = append(l.Leases, res.Leases...)
	})
}

// expireLegacy drops leases past their expiry and releases them on their hosts,
// recording the held memory-time as waste.
func (l *loop) expireLegacy(ctx workflow.Context, now time.Time) {
	var keep []activities.Lease
	for _, ls := range l.Leases {
		if ls.Expires.After(now) {
			keep = append(keep, ls)
			continue
		}
		held := ls.Expires.Sub(ls.Reserved).Seconds()
		l.Stats.Expired++
		l.Stats.WastedMBSeconds += ls.MemoryMB * held
		l.release(ctx, ls, records.EventExpired, "lease TTL passed unclaimed", held)
	}
	l.Leases = keep
}

// onObservationLegacy counts an observed request.
func (l *loop) onObservationLegacy(sig ObservationSignal) {
	n := sig.Count
	if n <= 0 {
		n = 1
	}
	if !sig.Claimed {
		l.Pending += n
		l.Stats.Requests += n
		if sig.Warm {
			l.Stats.WarmRequests++
		}
	}
	if sig.Adjustment != nil && sig.Host != "" {
		l.Adjustments[sig.Host] = *sig.Adjustment
	}
}

// claimLegacy hands the best live lease to one request and forgets it,
// atomically: update handlers run one at a time on the workflow's single
// thread.
func (l *loop) claimLegacy(ctx workflow.Context, in ClaimUpdate) (ClaimUpdateResult, error) {
	now := workflow.Now(ctx)
	if in.CountArrival {
		l.Pending++
		l.Stats.Requests++
	}
	best := -1
	for i, ls := range l.Leases {
		if ls.Expires.After(now) && (best < 0 || ls.Score > l.Leases[best].Score) {
			best = i
		}
	}
	if best < 0 {
		l.Stats.Misses++
		return ClaimUpdateResult{Adjustments: maps.Clone(l.Adjustments)}, nil
	}
	ls := l.Leases[best]
	l.Leases = slices.Delete(l.Leases, best, best+1)
	l.Stats.Claims++
	if in.CountArrival {
		l.Stats.WarmRequests++ // handed a lease: warm unless the host lost it
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
	return ClaimUpdateResult{Found: true, Lease: ls, Adjustments: maps.Clone(l.Adjustments)}, nil
}

// closeBins moves the open bin's observations into Recent (and zeros for
// bins the loop missed while no worker ran it) and returns the start of the
// bin now opening: the bin the prediction is made from.
func (l *loop) closeBins(now time.Time) time.Time {
	l.push(l.Pending)
	l.Pending = 0
	l.NextTick = l.NextTick.Add(l.Bin)
	for !l.NextTick.After(now) {
		l.push(0)
		l.Stats.SkippedBins++
		l.NextTick = l.NextTick.Add(l.Bin)
	}
	return l.NextTick.Add(-l.Bin)
}
