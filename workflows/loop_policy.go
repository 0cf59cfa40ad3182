package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// run is the loop that decides through package policy. At each wake (the
// start of a bin) it closes the bins since the last one, asks the model for
// the chance of a request in each bin ahead along the path where none
// arrives (one batched local activity), and lets the policy decide for the
// bin that begins: prepare, keep (extend in place), release, or nothing.
// The policy also says when it would act next on that path; the loop sleeps
// until then — or until a request, a signal or an update arrives, after
// which it decides again at the next bin. Policy.Ticking decides at every
// bin instead: the decisions are the same, only their cost differs.
func (l *loop) run(ctx workflow.Context) (LoopResult, error) {
	// Update handlers (claims, policy) kick the loop so it can wake earlier.
	kick := workflow.NewBufferedChannel(ctx, 1)
	l.kick = func() {
		l.wakeEarly = true
		kick.SendAsync(true)
	}
	if !l.Seeded {
		l.seed(ctx)
	}
	now := workflow.Now(ctx)
	fresh := l.NextTick.IsZero()
	if fresh {
		l.NextTick = now.Truncate(l.Bin).Add(l.Bin)
	}
	switch {
	case fresh && l.Router:
		// Its history is in the store: it decides the bin open as it
		// starts, in this first task (once that bin's grace has passed),
		// rather than a task later.
		l.NextWake, l.WakeReason = l.NextTick.Add(l.grace()-l.Bin), "first decision"
	case l.NextWake.Before(l.NextTick):
		l.NextWake, l.WakeReason = l.NextTick.Add(l.grace()), "first decision"
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)

	receive := l.signals(ctx)
	var timer workflow.Future
	var timerAt time.Time
	var cancelTimer workflow.CancelFunc
	// A loop on a trace clock starts with its history complete up to its
	// first bin: it decides that bin ahead of it, like a planned preparation,
	// by a whole bin (the loops of a replay start together, so their first
	// preparations contend for the hosts).
	var early time.Time
	if first := max(l.lead(), l.Bin); l.Clock != nil && !l.Router && l.Stats.Wakes == 0 && l.NextTick.Sub(workflow.Now(ctx)) > first {
		early = l.NextTick.Add(-first)
	}
	wakes := 0
	for {
		// Sleep until the next decision, moving it earlier when something
		// arrives that can change it.
		for {
			if l.wakeEarly {
				l.wakeEarly = false
				next := l.NextTick.Add(l.grace())
				if open := workflow.Now(ctx).Truncate(l.Bin).Add(l.grace()); l.Router && next.Before(open) {
					// Not before the grace of the bin that just ended: its
					// requests may still be on their way to the store.
					next = open
				}
				if next.Before(l.NextWake) {
					l.NextWake, l.WakeReason = next, "a request, signal or update arrived"
				}
			}
			target := l.NextWake
			if !l.AheadAt.IsZero() && l.AheadAt.Before(target) {
				target = l.AheadAt
			}
			if !early.IsZero() && early.Before(target) {
				target = early
			}
			if timer == nil || !timerAt.Equal(target) {
				if cancelTimer != nil {
					cancelTimer()
				}
				var tctx workflow.Context
				tctx, cancelTimer = workflow.WithCancel(ctx)
				timer, timerAt = workflow.NewTimer(tctx, max(0, target.Sub(workflow.Now(ctx)))), target
			}
			fired := false
			s := workflow.NewSelector(ctx)
			s.AddFuture(timer, func(f workflow.Future) {
				fired = true
				if err := f.Get(ctx, nil); err != nil && !temporal.IsCanceledError(err) {
					l.log.Warn("wake timer failed", "error", err)
				}
			})
			s.AddReceive(kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
			receive(s)
			s.Select(ctx)
			if l.stop != nil || ctx.Err() != nil {
				if cancelTimer != nil {
					cancelTimer()
				}
				return l.shutdown(ctx)
			}
			if fired {
				timer, cancelTimer = nil, nil
				if !early.IsZero() && workflow.Now(ctx).Before(l.NextWake) {
					break
				}
				if !l.AheadAt.IsZero() && !workflow.Now(ctx).Before(l.AheadAt) && workflow.Now(ctx).Before(l.NextWake) {
					l.prepareAhead(ctx)
					continue
				}
				break
			}
		}
		at := workflow.Now(ctx)
		if !early.IsZero() {
			at, early = l.NextTick, time.Time{}
		}
		l.wake(ctx, at)
		wakes++
		if wakes >= l.MaxTicksPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return l.continueAsNew(ctx, receive, kick)
		}
	}
}

// wake closes the bins that ended by `at` (now, or the start of a loop's
// first bin decided ahead of it), decides for the bin that begins, carries
// the decision out and plans the next wake.
func (l *loop) wake(ctx workflow.Context, at time.Time) {
	now := at
	// A router-mode loop's first decision is of the bin open as it started:
	// late by design, not behind.
	startup := l.Router && l.Stats.Wakes == 0
	if !startup {
		l.recordLag(workflow.Now(ctx).Sub(l.NextWake))
	}
	l.Stats.Ticks++
	l.Stats.Wakes++
	// Bins the loop slept through followed the plan made at the last wake.
	slept := 0
	if !l.decided.IsZero() {
		if slept = int(now.Truncate(l.Bin).Sub(l.decided)/l.Bin) - 1; slept > 0 {
			l.Stats.Decisions[l.plannedAction()] += slept
		}
	}
	if now.Sub(l.NextWake) >= l.Bin {
		// Behind schedule (no worker ran the loop): bins went undecided.
		l.Stats.SkippedBins += int(now.Sub(l.NextWake) / l.Bin)
	}
	l.advance(now)
	l.AheadAt = time.Time{}
	binStart := l.NextTick.Add(-l.Bin)
	held := l.Holding || (len(l.Recent) > 0 && l.Recent[len(l.Recent)-1] > 0)
	l.expire(ctx, now)

	if l.Policy.Paused {
		l.LastDecision = "paused"
		if l.Holding {
			// Paused: hold nothing new, let go of what is held.
			l.releaseAll(ctx, "loop paused")
		}
		l.Holding = false
		l.plan(binStart, l.Policy.LookaheadBins, "paused")
		l.upsertAttrs(ctx)
		l.setDetails(ctx)
		return
	}

	res, err := l.forecast(ctx, binStart, held, slept)
	if err != nil {
		l.Stats.PredictErrors++
		msg := "prediction failed: " + err.Error()
		if msg != l.LastError {
			l.log.Warn("prediction failed; the loop keeps what it holds and tries again next bin", "error", err)
		}
		l.LastError, l.LastDecision = msg, records.DecisionNoModel
		l.Holding = held && len(l.Leases) > 0
		l.plan(binStart, 1, "retry the prediction")
		l.upsertAttrs(ctx)
		l.setDetails(ctx)
		return
	}
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
	next := res.NextChange
	reason := "the policy acts next then"
	if res.Until != activities.UntilChange {
		reason = untilReason(res.Until, next)
	} else {
		reason = l.planAhead(binStart, next, res)
	}
	if l.Policy.Ticking {
		next, reason = 1, "ticking every bin"
		l.AheadAt = time.Time{}
	}
	l.plan(binStart, next, reason)
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

// planAhead looks at the decision the plan makes n bins after binStart:
// when it prepares, the preparation is started ahead of that bin (by the
// lead time), so the instance is ready as the bin begins. It returns the
// reason for the next wake.
func (l *loop) planAhead(binStart time.Time, n int, res activities.ForecastResult) string {
	path := res.Path
	th := l.thresholds()
	prepares := th.Decide(l.Holding, path[n]) == policy.Prepare
	if res.Ahead != nil {
		prepares = res.Ahead.Prepare
	}
	if !prepares || l.Policy.DryRun {
		return fmt.Sprintf("the policy lets go at P=%.3g", path[n])
	}
	hold := l.Policy.Config().Hold(th, false, path[n:])
	if res.Ahead != nil {
		hold = res.Ahead.HoldBins
	}
	l.AheadBin = binStart.Add(time.Duration(n) * l.Bin)
	l.AheadAt = l.AheadBin.Add(-l.lead())
	l.AheadUntil = l.AheadBin.Add(time.Duration(max(1, hold))*l.Bin + l.leaseGrace())
	return fmt.Sprintf("the policy prepares at P=%.3g (started %v ahead)", path[n], l.lead())
}

// lead is how long before a bin a planned preparation starts: the policy's
// PrepareSeconds on the live clock, or a quarter more than this loop's
// preparations have taken plus how late its wakes typically run, at least
// 300 ms (a reservation and a shadow request take that long), at most half
// a bin.
func (l *loop) lead() time.Duration {
	_, modelBin := l.Clock.Map(time.Time{}, l.Bin)
	live := time.Duration(l.Policy.PrepareSeconds * float64(time.Second) * float64(l.Bin) / float64(modelBin))
	measured := time.Duration((1.25*l.Stats.PreparationMS + l.Stats.LagMS) * float64(time.Millisecond))
	return min(l.Bin/2, max(live, measured, 300*time.Millisecond))
}

// prepareAhead starts the preparation the plan made for AheadBin.
func (l *loop) prepareAhead(ctx workflow.Context) {
	bin, until := l.AheadBin, l.AheadUntil
	l.AheadAt = time.Time{}
	if len(l.Leases) > 0 || l.preparing != "" {
		return
	}
	l.prepare(ctx, bin, until)
	l.WakeReason = "prepared ahead of " + bin.UTC().Format("15:04:05")
	l.setDetails(ctx)
}

// plan sets the next wake n bins after binStart (and the grace after).
func (l *loop) plan(binStart time.Time, n int, reason string) {
	l.NextWake, l.WakeReason = binStart.Add(time.Duration(max(1, n))*l.Bin+l.grace()), reason
}

// grace is how long after a bin ends the loop decides the next: requests
// of the bin reported a little late are still counted in it. A fifth of a
// bin, at most 2 s.
func (l *loop) grace() time.Duration {
	return min(l.Bin/5, 2*time.Second)
}

// advance closes every bin that has ended by now: the requests observed in
// it go into Recent. The bins the loop slept through followed its plan.
// However many bins ended (a worker down for days), at most a window of
// them is pushed: the rest would fall out of Recent anyway.
func (l *loop) advance(now time.Time) {
	if l.NextTick.After(now) {
		return
	}
	ended := int64(now.Sub(l.NextTick)/l.Bin) + 1
	l.push(l.Pending)
	l.Pending = 0
	for range min(ended-1, int64(l.Window)) {
		l.push(0)
	}
	l.NextTick = l.NextTick.Add(time.Duration(ended) * l.Bin)
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
func (l *loop) forecast(ctx workflow.Context, binStart time.Time, held bool, slept int) (activities.ForecastResult, error) {
	maxSleep := l.maxSleep()
	bins := max(l.Policy.LookaheadBins, maxSleep)
	if l.Policy.Ticking {
		bins = 1
	}
	lactx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
		Summary:             "forecast",
	})
	next, featureBin := l.Clock.Map(binStart, l.Bin)
	var res activities.ForecastResult
	in := activities.ForecastInput{
		App: l.App, Counts: l.Recent, Next: next, Bin: featureBin, Bins: bins,
		Held: held, Thresholds: l.thresholds(), Lookahead: l.Policy.LookaheadBins, DryRun: l.Policy.DryRun,
		MaxSleep: maxSleep,
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
		in.Router = &activities.RouterInput{Start: binStart, Bin: l.Bin, Window: l.Window, Since: l.ReadThrough}
		if l.Clock != nil {
			// Seeded from a trace: the bins of Recent before the clock's
			// start are that history, which the router never recorded.
			if k := int(binStart.Sub(l.Clock.RealStart) / l.Bin); k >= 0 && k < len(l.Recent) {
				in.Router.Seed, in.Router.SeedEnd = l.Recent[:len(l.Recent)-k], l.Clock.RealStart
			}
		}
	}
	err := workflow.ExecuteLocalActivity(lactx, ActivityForecast, in).Get(ctx, &res)
	if err == nil && len(res.Path) == 0 {
		err = fmt.Errorf("forecast returned no probability")
	}
	return res, err
}

// apply carries a decision out on the hosts. Leases live until the end of
// the hold the policy planned, plus leaseGrace: if the loop is lost the
// hosts free them soon after.
func (l *loop) apply(ctx workflow.Context, binStart time.Time, res activities.ForecastResult) {
	until := binStart.Add(time.Duration(max(1, res.HoldBins))*l.Bin + l.leaseGrace())
	switch res.Action {
	case policy.Prepare, policy.Keep:
		if len(l.Leases) == 0 {
			// Held by an instance that is gone (a request's instance the
			// host could not keep, a failed preparation): prepare one.
			l.prepare(ctx, binStart, until)
			return
		}
		for i := range l.Leases {
			if l.Leases[i].Expires.Before(until) {
				l.extend(ctx, l.Leases[i], until)
			}
		}
	case policy.Release:
		l.releaseAll(ctx, fmt.Sprintf("P=%.3g below the keep threshold %.3g", res.Path[0], l.thresholds().Keep))
	}
}

// leaseGrace is how long a lease outlives the hold the policy planned: a
// bin, and at least 5 s, so a loop that decides late (a busy worker, a
// worker restart) extends its instance before the host lets it go.
func (l *loop) leaseGrace() time.Duration {
	return max(l.Bin, 5*time.Second)
}

// prepare starts a preparation whose leases last until `until`.
func (l *loop) prepare(ctx workflow.Context, binStart, until time.Time) {
	if l.preparing != "" || l.draining {
		return
	}
	l.prepWanted = true
	profile := l.Profile
	profile.RatePerMin = l.ratePerMin()
	profile.MemoryMB = l.leaseSizeMB()
	if l.Profile.MemoryMB > 0 && l.Profile.DiskMB > 0 {
		profile.DiskMB = l.Profile.DiskMB * profile.MemoryMB / l.Profile.MemoryMB
	}
	profile.CPUMilli = l.leaseCPUMilli()
	in := PrepareInput{
		App: l.App, Profile: profile, TopN: l.Policy.TopN, TTL: until.Sub(workflow.Now(ctx)),
		MaxShadowMS: l.Policy.MaxShadowMS, SampleMB: l.Policy.SampleMB, Adjustments: maps.Clone(l.Adjustments),
	}
	th := l.thresholds()
	summary := fmt.Sprintf("prepare %d host(s) for %s: P=%.3f ≥ %.3f (a %.0f MB instance until %s)",
		l.Policy.TopN, l.App, l.LastProbability, th.Prepare, profile.MemoryMB, until.UTC().Format("15:04:05"))
	l.startPreparation(ctx, binStart, in, summary, func(gctx workflow.Context, res PrepareResult) {
		if !l.prepWanted || l.stop != nil {
			// The policy let go while the preparation ran.
			for _, ls := range res.Leases {
				l.release(gctx, ls, records.EventReleased, "the policy let go during the preparation", workflow.Now(gctx).Sub(ls.Reserved).Seconds())
			}
			return
		}
		l.Leases = append(l.Leases, res.Leases...)
	})
}

// startPreparation starts the preparation child workflow for the bin at
// binStart; done receives its leases, without blocking the loop.
func (l *loop) startPreparation(ctx workflow.Context, binStart time.Time, in PrepareInput, summary string, done func(workflow.Context, PrepareResult)) {
	id := PreparationWorkflowID(l.App, binStart)
	pctx, cancel := workflow.WithCancel(ctx)
	pctx = workflow.WithChildOptions(pctx, workflow.ChildWorkflowOptions{
		WorkflowID:               id,
		WorkflowExecutionTimeout: 10 * time.Minute,
		// On stop or termination of the loop the preparation still runs its
		// cleanup and releases what it reserved.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrApp.ValueSet(l.App)),
		StaticSummary:         summary,
	})
	l.preparing, l.cancelPre = id, cancel
	l.Stats.Preparations++
	started := workflow.Now(ctx)
	fut := workflow.ExecuteChildWorkflow(pctx, PreparationWorkflowName, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var res PrepareResult
		err := fut.Get(gctx, &res)
		l.preparing, l.cancelPre = "", nil
		if err == nil && len(res.Leases) > 0 {
			took := float64(workflow.Now(gctx).Sub(started)) / float64(time.Millisecond)
			if l.Stats.PreparationMS == 0 {
				l.Stats.PreparationMS = took
			} else {
				l.Stats.PreparationMS += 0.2 * (took - l.Stats.PreparationMS)
			}
		}
		if err != nil && temporal.IsCanceledError(err) {
			// Cancelled by a stop or a continue-as-new: it released what
			// it held; not a failure.
			l.Stats.PreparationsCancelled++
			return
		}
		if err != nil {
			l.Stats.PreparationsFailed++
			l.LastError = fmt.Sprintf("preparation %s failed: %v", id, err)
			l.log.Warn("preparation failed", "preparation", id, "error", err)
			return
		}
		if len(res.Leases) == 0 {
			l.Stats.PreparationsFailed++
			l.LastError = fmt.Sprintf("preparation %s prepared no host: %s", id, res.Summary())
		}
		done(gctx, res)
		l.Stats.LeasesPrepared += len(res.Leases)
		l.upsertAttrs(gctx)
		l.setDetails(gctx)
	})
}

// extend moves a lease's expiry on its host, in place (no new reservation,
// no shadow request), in the background.
func (l *loop) extend(ctx workflow.Context, ls activities.Lease, until time.Time) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{activities.ErrBadInput, activities.ErrHostRejected}},
		Summary:             "extend " + ls.LeaseID,
	})
	fut := workflow.ExecuteActivity(actx, ActivityExtend, activities.ExtendInput{
		LeaseID: ls.LeaseID, App: l.App, Host: ls.Host, HostURL: ls.HostURL, TTL: until.Sub(workflow.Now(ctx)),
	})
	l.jobs++
	l.Stats.Extends++
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer func() { l.jobs-- }()
		var res activities.ExtendResult
		err := fut.Get(gctx, &res)
		i := slices.IndexFunc(l.Leases, func(x activities.Lease) bool { return x.LeaseID == ls.LeaseID })
		switch {
		case err == nil && res.Extended:
			if i >= 0 {
				l.Leases[i].Expires = until
				if !res.Expires.IsZero() && res.Expires.Before(until) {
					l.Leases[i].Expires = res.Expires
				}
			}
		case err == nil && res.Gone:
			l.Stats.ExtendsFailed++
			if i >= 0 {
				l.Leases = slices.Delete(l.Leases, i, i+1)
			}
			l.LastError = fmt.Sprintf("lease %s is gone from %s; the next decision prepares again if it still holds", ls.LeaseID, ls.Host)
			if l.kick != nil {
				l.kick()
			}
		case err != nil:
			// The host did not answer through the retries: count the lease
			// lost (its TTL frees it there) and decide again next bin.
			l.Stats.ExtendsFailed++
			if i >= 0 {
				l.Leases = slices.Delete(l.Leases, i, i+1)
			}
			l.LastError = fmt.Sprintf("extend %s on %s failed, lease given up: %v", ls.LeaseID, ls.Host, err)
			l.log.Warn("extend failed; giving the lease up", "lease", ls.LeaseID, "error", err)
			if l.kick != nil {
				l.kick()
			}
		default:
			l.Stats.ExtendsFailed++
			l.LastError = fmt.Sprintf("extend %s on %s refused: %s; it keeps its expiry", ls.LeaseID, ls.Host, res.Reason)
			l.log.Warn("extend refused; the lease keeps its expiry", "lease", ls.LeaseID, "reason", res.Reason)
		}
	})
}

// releaseAll lets every lease go and cancels a preparation in flight (it
// releases what it reserved).
func (l *loop) releaseAll(ctx workflow.Context, reason string) {
	l.prepWanted = false
	l.AheadAt = time.Time{}
	if l.cancelPre != nil {
		l.cancelPre()
	}
	now := workflow.Now(ctx)
	for _, ls := range l.Leases {
		l.Stats.Released++
		l.release(ctx, ls, records.EventReleased, reason, now.Sub(ls.Reserved).Seconds())
	}
	l.Leases = nil
}

// expire drops leases past their expiry: their hosts have freed them.
func (l *loop) expire(ctx workflow.Context, now time.Time) {
	l.Leases = slices.DeleteFunc(l.Leases, func(ls activities.Lease) bool {
		if ls.Expires.After(now) {
			return false
		}
		held := ls.Expires.Sub(ls.Reserved).Seconds()
		l.Stats.Expired++
		l.Stats.WastedMBSeconds += ls.MemoryMB * held
		// The host has freed it; the release records the event and is a
		// no-op there.
		l.release(ctx, ls, records.EventExpired, "lease TTL passed", held)
		return true
	})
}

// count records n requests that arrived at `at` (zero: now) and their
// size: in the open bin, or in the closed bin they arrived in when their
// report came late.
func (l *loop) count(ctx workflow.Context, n, sizeMB float64, at time.Time) {
	if l.NextTick.IsZero() {
		// A request before the loop's first bin is open (it is still
		// reading its history): that bin opens now.
		l.NextTick = workflow.Now(ctx).Truncate(l.Bin).Add(l.Bin)
	}
	l.advance(workflow.Now(ctx))
	open := l.NextTick.Add(-l.Bin)
	switch back := int((open.Sub(at) + l.Bin - 1) / l.Bin); {
	case l.Router:
		// The router records the requests: the loop reads them at its wake.
	case !at.IsZero() && at.Before(open) && back <= len(l.Recent):
		l.Recent[len(l.Recent)-back] += n
	default:
		l.Pending += n
	}
	if !l.Router {
		l.Stats.Requests += n
	}
	if sizeMB > 0 {
		l.Sizes = append(l.Sizes, sizeMB)
		if over := len(l.Sizes) - maxSizes; over > 0 {
			l.Sizes = append(l.Sizes[:0:0], l.Sizes[over:]...)
		}
	}
	l.wakeEarly = true
}

// claimWarm hands the best live lease to a request; the lease stays: it is
// a warm instance that serves every request of the application until the
// policy lets it go. Without one, the request goes cold and the host is
// asked to keep its instance as a lease until the next decision.
func (l *loop) claimWarm(ctx workflow.Context, in ClaimUpdate) (ClaimUpdateResult, error) {
	now := workflow.Now(ctx)
	if in.CountArrival {
		l.count(ctx, 1, in.SizeMB, in.ArrivedAt)
		l.kick()
	}
	res := ClaimUpdateResult{Adjustments: maps.Clone(l.Adjustments), Stays: true}
	best := l.bestLease(now, in.SizeMB)
	if best < 0 && l.preparing != "" && !l.draining {
		// Its instance is being prepared: a cold start of its own would
		// take about as long as the rest of the preparation, so the request
		// joins it, waiting at most a typical preparation.
		l.Stats.ClaimsWaited++
		if _, err := workflow.AwaitWithTimeout(ctx, l.claimWait(), func() bool { return l.preparing == "" }); err != nil {
			return res, err
		}
		now2 := workflow.Now(ctx)
		res.WaitedMS = float64(now2.Sub(now)) / float64(time.Millisecond)
		now = now2
		if best = l.bestLease(now, in.SizeMB); best >= 0 {
			l.Stats.ClaimsWaitedWarm++
		}
	}
	if best >= 0 {
		l.Stats.Claims++
		if in.CountArrival {
			l.Stats.WarmRequests++
		}
		res.Found, res.Lease = true, l.Leases[best]
		return res, nil
	}
	l.Stats.Misses++
	// One instance per application: keep this request's only when nothing
	// is held, prepared or already kept in this bin.
	if !l.draining && len(l.Leases) == 0 && l.preparing == "" && !l.keptIn.Equal(l.NextTick) {
		l.keptIn = l.NextTick
		size := max(l.leaseSizeMB(), in.SizeMB)
		disk := 0.0
		if l.Profile.MemoryMB > 0 {
			disk = l.Profile.DiskMB * size / l.Profile.MemoryMB
		}
		res.Keep = &activities.KeepPlan{
			LeaseID:  keptLeaseID(l.App, in.RequestID),
			TTL:      l.NextTick.Sub(now) + l.leaseGrace(),
			MemoryMB: size, DiskMB: disk, CPUMilli: l.leaseCPUMilli(),
		}
	}
	return res, nil
}

// bestLease is the live lease with the best score that holds a request of
// sizeMB (0: unknown), or -1.
func (l *loop) bestLease(now time.Time, sizeMB float64) int {
	best := -1
	for i, ls := range l.Leases {
		if ls.Expires.After(now) && (sizeMB <= ls.MemoryMB || sizeMB == 0) && (best < 0 || ls.Score > l.Leases[best].Score) {
			best = i
		}
	}
	return best
}

// claimWait bounds how long a claim waits for the preparation in flight:
// a typical preparation's time (the lead time before one was measured),
// at most half a bin.
func (l *loop) claimWait() time.Duration {
	d := l.lead()
	if l.Stats.PreparationMS > 0 {
		d = time.Duration(l.Stats.PreparationMS * float64(time.Millisecond))
	}
	return min(d, l.Bin/2)
}

// leaseCPUMilli reserves a core for each request an instance must serve
// at once (policy.LeaseCores over the last hour of bins), or the profile's
// CPU when more.
func (l *loop) leaseCPUMilli() int64 {
	recent := l.Recent[max(0, len(l.Recent)-60):]
	// On a trace clock requests last their trace time scaled like the bins.
	_, modelBin := l.Clock.Map(time.Time{}, l.Bin)
	cores := policy.LeaseCores(append(slices.Clone(recent), l.Pending), l.Profile.DurationMS/1000, modelBin.Seconds())
	return max(l.Profile.CPUMilli, int64(cores)*1000)
}

// keptLeaseID names the lease a cold request's instance becomes:
// <app>.kept.<request>, with only the characters hosts accept.
func keptLeaseID(app, requestID string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '-'
		}, s)
	}
	return clean(app) + ".kept." + clean(requestID)
}

// maxAdjustedHosts bounds the adjustments a loop keeps: one per host it
// has served on, not one per name a signal can carry.
const maxAdjustedHosts = 256

// observe folds in a request's outcome.
func (l *loop) observe(ctx workflow.Context, sig ObservationSignal) {
	n := sig.Count
	if n <= 0 {
		n = 1
	}
	if !sig.Claimed {
		l.count(ctx, n, sig.SizeMB, sig.At)
		if sig.Warm {
			l.Stats.WarmRequests++
		}
	}
	if sig.Adjustment != nil && sig.Host != "" {
		if _, known := l.Adjustments[sig.Host]; known || len(l.Adjustments) < maxAdjustedHosts {
			l.Adjustments[sig.Host] = *sig.Adjustment
		}
	}
	for _, id := range sig.Gone {
		l.Leases = slices.DeleteFunc(l.Leases, func(ls activities.Lease) bool { return ls.LeaseID == id })
	}
	if k := sig.Kept; k != nil && k.LeaseID != "" && !slices.ContainsFunc(l.Leases, func(ls activities.Lease) bool { return ls.LeaseID == k.LeaseID }) {
		l.Stats.Kept++
		if len(l.Leases) > 0 {
			// The application already holds an instance: one is enough.
			l.release(ctx, *k, records.EventReleased, "a second instance of the application", workflow.Now(ctx).Sub(k.Reserved).Seconds())
		} else {
			l.Leases = append(l.Leases, *k)
		}
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

// drainTimeout bounds how long a loop due to continue as new waits for the
// work in flight (a preparation, releases, extensions) before it cancels
// the preparation: a busy application must not keep it from continuing.
func (l *loop) drainTimeout() time.Duration {
	return max(2*l.Bin, 2*time.Second)
}

// continueAsNew stops starting new work, waits a bounded time for what is
// in flight, takes the signals already delivered, and continues as new
// carrying the loop's state.
func (l *loop) continueAsNew(ctx workflow.Context, receive func(workflow.Selector), kick workflow.ReceiveChannel) (LoopResult, error) {
	l.draining = true
	idle := func() bool { return l.preparing == "" && l.jobs == 0 && workflow.AllHandlersFinished(ctx) }
	if ok, _ := workflow.AwaitWithTimeout(ctx, l.drainTimeout(), idle); !ok && l.cancelPre != nil {
		// The cancelled preparation releases what it reserved.
		l.cancelPre()
		l.log.Info("continue-as-new: cancelled the preparation in flight", "preparation", l.preparing)
	}
	if err := workflow.Await(ctx, idle); err != nil {
		return l.shutdown(ctx)
	}
	// Signals already delivered to this run must not be lost.
	for {
		s := workflow.NewSelector(ctx)
		receive(s)
		s.AddReceive(kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		if !s.HasPending() {
			break
		}
		s.Select(ctx)
	}
	if l.stop != nil {
		return l.shutdown(ctx)
	}
	l.Runs++
	l.log.Info("continuing as new", "wakes", l.Stats.Wakes, "run", l.Runs)
	return LoopResult{}, workflow.NewContinueAsNewError(ctx, LoopWorkflowName, l.LoopInput)
}
