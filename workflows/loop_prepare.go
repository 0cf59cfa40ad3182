package workflows

// Preparations: planned ahead of the bin they prepare for, started as
// child workflows, their instance sized from recent requests.

import (
	"fmt"
	"maps"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// planAhead looks at the decision the plan makes n bins after binStart:
// when it prepares, the preparation is started ahead of that bin (by the
// lead time), so the instance is ready as the bin begins. It returns the
// reason for the next wake.
func (l *loop) planAhead(binStart time.Time, n int, res wire.ForecastResult) string {
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
// 300 ms (a reservation and a shadow request take that long), at most a
// bin. (Preparations that take a large part of a bin are those of a fleet
// starting together — timers firing at the same minute on a few cores — or
// of a trace replayed faster than it ran; started only half a bin ahead they
// came late.)
func (l *loop) lead() time.Duration {
	_, modelBin := l.Clock.Map(time.Time{}, l.Bin)
	live := time.Duration(l.Policy.PrepareSeconds * float64(time.Second) * float64(l.Bin) / float64(modelBin))
	measured := time.Duration((1.25*l.Stats.PreparationMS + l.Stats.LagMS) * float64(time.Millisecond))
	return min(l.Bin, max(live, measured, 300*time.Millisecond))
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
