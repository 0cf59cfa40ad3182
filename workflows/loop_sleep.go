package workflows

// The loop's sleep between wakes: when it decides next, and what moves
// that earlier.

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
)

// run decides at each wake and sleeps in between. At a wake (the start of
// a bin) the loop closes the bins since the last one, asks the model for
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
	l.planFirstWake(ctx)
	l.upsertAttrs(ctx)
	l.setDetails(ctx)

	s := &sleeper{receive: l.signals(ctx), kick: kick, early: l.firstDecisionAhead(ctx)}
	for wakes := 1; ; wakes++ {
		if !l.sleep(ctx, s) {
			return l.shutdown(ctx)
		}
		at := workflow.Now(ctx)
		if !s.early.IsZero() {
			at, s.early = l.BinEnd, time.Time{}
		}
		l.wake(ctx, at)
		if wakes >= l.MaxWakesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return l.continueAsNew(ctx, s.receive, kick)
		}
	}
}

// planFirstWake opens the loop's first bin (zero BinEnd: its first run)
// and plans its first decision.
func (l *loop) planFirstWake(ctx workflow.Context) {
	fresh := l.BinEnd.IsZero()
	if fresh {
		l.BinEnd = workflow.Now(ctx).Truncate(l.Bin).Add(l.Bin)
	}
	switch {
	case fresh && l.Router:
		// Its history is in the store: it decides the bin open as it
		// starts, in this first task (once that bin's grace has passed),
		// rather than a task later.
		l.NextWake, l.WakeReason = l.BinEnd.Add(l.grace()-l.Bin), "first decision"
	case l.NextWake.Before(l.BinEnd):
		l.NextWake, l.WakeReason = l.BinEnd.Add(l.grace()), "first decision"
	}
}

// firstDecisionAhead is when a loop on a trace clock decides its first
// bin (zero: at its wake). Such a loop starts with its history complete up
// to that bin, so it decides it ahead, like a planned preparation, by a
// whole bin (the loops of a replay start together, so their first
// preparations contend for the hosts).
func (l *loop) firstDecisionAhead(ctx workflow.Context) time.Time {
	first := max(l.lead(), l.Bin)
	if l.Clock != nil && !l.Router && l.Stats.Wakes == 0 && l.BinEnd.Sub(workflow.Now(ctx)) > first {
		return l.BinEnd.Add(-first)
	}
	return time.Time{}
}

// sleeper is what the loop's sleep keeps between wakes.
type sleeper struct {
	receive func(workflow.Selector) // adds the signal channels
	kick    workflow.ReceiveChannel // update handlers wake the loop
	early   time.Time               // the first decision, taken ahead of its bin (zero: none)
	timer   workflow.Future
	at      time.Time // when timer fires
	cancel  workflow.CancelFunc
}

// sleep waits until the next decision is due, moving it earlier when
// something arrives that can change it and starting a preparation planned
// ahead when its time comes. It returns false when the loop must stop.
func (l *loop) sleep(ctx workflow.Context, s *sleeper) bool {
	for {
		if l.wakeEarly {
			l.wakeEarly = false
			l.wakeSooner(ctx)
		}
		l.armTimer(ctx, s, l.sleepTarget(s.early))
		fired := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(s.timer, func(f workflow.Future) {
			fired = true
			if err := f.Get(ctx, nil); err != nil && !temporal.IsCanceledError(err) {
				l.log.Warn("wake timer failed", "error", err)
			}
		})
		sel.AddReceive(s.kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		s.receive(sel)
		sel.Select(ctx)
		if l.stop != nil || ctx.Err() != nil {
			if s.cancel != nil {
				s.cancel()
			}
			return false
		}
		if !fired {
			continue
		}
		s.timer, s.cancel = nil, nil
		now := workflow.Now(ctx)
		if !s.early.IsZero() && now.Before(l.NextWake) {
			return true
		}
		if !l.AheadAt.IsZero() && !now.Before(l.AheadAt) && now.Before(l.NextWake) {
			l.prepareAhead(ctx)
			continue
		}
		return true
	}
}

// wakeSooner moves the next decision to the next bin: something arrived
// that can change it.
func (l *loop) wakeSooner(ctx workflow.Context) {
	next := l.BinEnd.Add(l.grace())
	if open := workflow.Now(ctx).Truncate(l.Bin).Add(l.grace()); l.Router && next.Before(open) {
		// Not before the grace of the bin that just ended: its requests
		// may still be on their way to the store.
		next = open
	}
	if next.Before(l.NextWake) {
		l.NextWake, l.WakeReason = next, "a request, signal or update arrived"
	}
}

// sleepTarget is when the sleep ends: the next decision, or earlier a
// preparation planned ahead or a first decision taken ahead.
func (l *loop) sleepTarget(early time.Time) time.Time {
	target := l.NextWake
	if !l.AheadAt.IsZero() && l.AheadAt.Before(target) {
		target = l.AheadAt
	}
	if !early.IsZero() && early.Before(target) {
		target = early
	}
	return target
}

// armTimer sets the wake timer for target, cancelling one set for another
// time (each timer is a history event: an unchanged one is kept).
func (l *loop) armTimer(ctx workflow.Context, s *sleeper, target time.Time) {
	if s.timer != nil && s.at.Equal(target) {
		return
	}
	if s.cancel != nil {
		s.cancel()
	}
	var tctx workflow.Context
	tctx, s.cancel = workflow.WithCancel(ctx)
	// The summary is the timer's metadata in the Web UI (not matched on
	// replay): why the loop sleeps, until when.
	s.timer = workflow.NewTimerWithOptions(tctx, max(0, target.Sub(workflow.Now(ctx))),
		workflow.TimerOptions{Summary: l.timerSummary(target, s.early)})
	s.at = target
}

// timerSummary says what the wake at target is for, from the loop's state:
// the bin it decides and why then, or the preparation planned ahead, and
// what the loop holds meanwhile.
func (l *loop) timerSummary(target, early time.Time) string {
	at := target.UTC().Format("15:04:05")
	held := "nothing held"
	if n := len(l.Leases); n == 1 {
		held = "holds 1 lease"
	} else if n > 1 {
		held = fmt.Sprintf("holds %d leases", n)
	}
	switch {
	case !early.IsZero() && target.Equal(early):
		return fmt.Sprintf("sleep to %s: decide the first bin (%s) ahead; %s", at, l.BinEnd.UTC().Format("15:04:05"), held)
	case !l.AheadAt.IsZero() && target.Equal(l.AheadAt):
		return fmt.Sprintf("sleep to %s: prepare ahead of bin %s; %s", at, l.AheadBin.UTC().Format("15:04:05"), held)
	}
	bin := target.Add(-l.grace()).Truncate(l.Bin).UTC().Format("15:04:05")
	why := l.WakeReason
	if why == "" {
		why = "next decision"
	}
	return fmt.Sprintf("sleep to %s: decide bin %s (%s); %s", at, bin, why, held)
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

// onWake moves the next decision to the bin the signal names, unless that
// bin is decided already (a late or repeated signal).
func (l *loop) onWake(ctx workflow.Context, sig WakeSignal) {
	now := workflow.Now(ctx)
	at := sig.Bin.Truncate(l.Bin)
	if sig.Bin.IsZero() {
		at = now.Truncate(l.Bin).Add(l.Bin)
	}
	if at.Before(l.BinEnd) {
		return
	}
	if target := at.Add(l.grace()); target.Before(l.NextWake) {
		reason := sig.Reason
		if reason == "" {
			reason = "a request arrived"
		}
		l.NextWake, l.WakeReason = target, "woken: "+reason
		l.Stats.Woken++
		l.setDetails(ctx)
	}
}

// maxSleep is this loop's bound on its sleep: Policy.MaxSleepBins less up
// to a quarter of it, by the application, so that loops started together
// (a fleet rolled out at once) do not all wake in the same bin when the
// bound comes round.
func (l *loop) maxSleep() int { return SleepBound(l.Policy, l.App) }

// SleepBound is the bound on the sleep of app's loop under p (see maxSleep).
func SleepBound(p Policy, app string) int {
	n := p.maxSleep()
	h := fnv.New32a()
	h.Write([]byte(app))
	return n - int(h.Sum32()%uint32(n/4+1))
}

// firstSleep bounds the sleep after the first decision by FirstSleepBins.
func (l *loop) firstSleep(bound int) int {
	if l.FirstSleepBins > 0 && l.Runs == 0 && l.Stats.Wakes == 1 {
		return min(bound, l.FirstSleepBins)
	}
	return bound
}

// untilReason is the Web UI's reason for a next wake the policy did not
// ask for.
func untilReason(until string, bins int) string {
	switch until {
	case wire.UntilHold:
		return fmt.Sprintf("extend the lease: it is planned %d bins ahead", bins)
	case wire.UntilBound:
		return fmt.Sprintf("the bound on the sleep (%d bins): a new model reaches the loop by then", bins)
	case wire.UntilWatch:
		return fmt.Sprintf("held while requests keep coming: the arrival watch wakes the loop to let go, %d bins at the latest", bins)
	}
	return "end of the forecast"
}

func (l *loop) recordLag(lag time.Duration) {
	ms := float64(lag) / float64(time.Millisecond)
	l.Stats.MaxLagMS = max(l.Stats.MaxLagMS, ms)
	l.Stats.LagMS += 0.2 * (max(0, ms) - l.Stats.LagMS)
	i, _ := slices.BinarySearch(LagBucketBoundsMS[:], ms)
	l.Stats.LagBuckets[i]++
}
