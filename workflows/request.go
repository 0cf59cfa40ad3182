package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/models/affinity/score"
	"github.com/forewarm/forewarm/store/records"
)

// RequestInput is one resource request of an application.
type RequestInput struct {
	RequestID  string
	App        string
	MemoryMB   float64
	DiskMB     float64
	ReadRatio  float64
	WorkMS     float64 // the work's nominal duration on a perfect host
	VolumeType string
	// Tolerance is how far actual performance may differ from the expected
	// affinity before the pair's adjustment moves (default 0.15).
	Tolerance float64
	// Rate is the share of the gap the adjustment moves by (default 0.5).
	Rate float64
	// ArrivedAt is when the request reached the platform (a replay or a
	// router sets it); it dates the recorded request. Zero: when served.
	ArrivedAt time.Time
}

// RequestResult is how the request was served and what was learned.
type RequestResult struct {
	Warm          bool
	Host          string
	LeaseID       string
	SetupMS       float64
	WorkMS        float64
	LatencyMS     float64
	Expected      float64 // affinity score the host was chosen with
	Actual        float64 // observed performance, same 0..1 scale
	Adjusted      bool
	NewAdjustment float64
	Outcome       string // warm | cold | cold-lease-lost | cold-after-warm-failure
}

// PerformanceScore is observed performance on the affinity scale: the
// nominal work time over the host's measured work time, in [0, 1]. Setup
// time is left out on purpose: it measures warmth, not the host's fit.
func PerformanceScore(nominalMS, measuredMS float64) float64 {
	if nominalMS <= 0 || measuredMS <= 0 {
		return 1
	}
	return min(1, max(0, nominalMS/measuredMS))
}

// NextAdjustment is score.NextAdjustment: the gateway's learner
// (resident.GatewayLearner) applies the same rule.
func NextAdjustment(old, expected, actual, tolerance, rate float64) (next float64, ok bool) {
	return score.NextAdjustment(old, expected, actual, tolerance, rate)
}

// ServeRequest claims a prepared lease from the application's loop (or goes
// cold), serves the request on the host, records the outcome, tells the
// loop, and adjusts the (app, host) affinity when performance differs from
// what was expected.
func ServeRequest(ctx workflow.Context, in RequestInput) (RequestResult, error) {
	var res RequestResult
	if in.RequestID == "" || in.App == "" {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("request: app %q and request ID %q are required", in.App, in.RequestID), wire.ErrBadInput, nil)
	}
	if in.Tolerance <= 0 {
		in.Tolerance = 0.15
	}
	if in.Rate <= 0 {
		in.Rate = 0.5
	}
	logger := workflow.GetLogger(ctx)
	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrHostRejected, wire.ErrNoHosts}},
	})

	// Claim and serve are local activities (two fewer activity round trips
	// through the server per request); the claim counts the arrival.
	call := func(opts workflow.ActivityOptions, fn any, arg any) workflow.Future {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: opts.StartToCloseTimeout, RetryPolicy: opts.RetryPolicy, Summary: opts.Summary}), fn, arg)
	}
	quickOpts := workflow.GetActivityOptions(quick)

	var claim wire.ClaimResult
	claimOpts := quickOpts
	claimOpts.Summary = "claim a lease of " + in.App + " for request " + in.RequestID
	claimIn := wire.ClaimInput{App: in.App, RequestID: in.RequestID, CountArrival: true, SizeMB: in.MemoryMB, ArrivedAt: in.ArrivedAt}
	if err := call(claimOpts, ActivityClaimLease, claimIn).Get(ctx, &claim); err != nil {
		logger.Warn("claim failed; serving cold", "error", err)
	}

	serve := func(host, url, leaseID string, keep *wire.KeepPlan) (wire.ServeResult, error) {
		var sr wire.ServeResult
		si := wire.ServeInput{Host: host, HostURL: url, HostServing: wire.HostServing{RequestID: in.RequestID, App: in.App,
			LeaseID: leaseID, MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, ReadRatio: in.ReadRatio, WorkMS: in.WorkMS}}
		si.LeaseStays = claim.Stays
		if keep != nil {
			si.KeepID, si.KeepTTL = keep.LeaseID, keep.TTL
			si.KeepMemoryMB, si.KeepDiskMB, si.KeepCPUMilli = keep.MemoryMB, keep.DiskMB, keep.CPUMilli
		}
		err := call(workflow.ActivityOptions{
			StartToCloseTimeout: time.Duration(in.WorkMS)*time.Millisecond*4 + 30*time.Second,
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2,
				NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrHostRejected}},
			Summary: "serve on " + host,
		}, ActivityServe, si).Get(ctx, &sr)
		return sr, err
	}

	var sr wire.ServeResult
	var claimed *records.PreparationEvent
	var gone []string
	var kept *wire.Lease
	served := false
	adjustment := 0.0
	if claim.Found {
		ls := claim.Lease
		var err error
		sr, err = serve(ls.Host, ls.HostURL, ls.LeaseID, nil)
		if err == nil {
			served = true
			res.Host, res.LeaseID, res.Expected, adjustment, res.Outcome = ls.Host, ls.LeaseID, ls.Score, ls.Adjusted, records.OutcomeWarm
			if !sr.Warm {
				res.Outcome = coldOutcome(sr.FallbackCode)
				if sr.FallbackCode == api.CodeGone || sr.FallbackCode == api.CodeNotFound {
					gone = append(gone, ls.LeaseID)
				}
			}
			if !claim.Stays {
				claimed = &records.PreparationEvent{Time: workflow.Now(ctx), PreparationID: ls.LeaseID, App: in.App, Host: ls.Host,
					Event: records.EventClaimed, MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli,
					HeldSeconds: workflow.Now(ctx).Sub(ls.Reserved).Seconds(), Reason: "request " + in.RequestID}
			}
		} else {
			logger.Warn("warm serve failed; releasing the lease and serving cold", "lease", ls.LeaseID, "error", err)
			releaseNow(ctx, ls, records.EventReleased, "warm serve failed: "+rootMessage(err))
			res.Outcome = records.OutcomeColdAfterWarmFail
			gone = append(gone, ls.LeaseID)
		}
	}
	if !served {
		var ranked wire.RankResult
		profile := wire.AppProfile{App: in.App, MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, ReadRatio: in.ReadRatio, DurationMS: in.WorkMS, VolumeType: in.VolumeType}
		if err := workflow.ExecuteActivity(withSummary(quick, "rank hosts to serve "+in.App+" cold"), ActivityRankHosts,
			wire.RankInput{Profile: profile, Adjustments: claim.Adjustments}).Get(ctx, &ranked); err != nil {
			return res, fmt.Errorf("no host to serve %s cold: %w", in.RequestID, err)
		}
		var err error
		for _, c := range ranked.Candidates[:min(3, len(ranked.Candidates))] {
			if sr, err = serve(c.Host, c.URL, "", claim.Keep); err == nil {
				res.Host, res.Expected, adjustment = c.Host, c.Score, c.Adjustment
				if sr.Kept && claim.Keep != nil {
					now := workflow.Now(ctx)
					k := claim.Keep
					ls := wire.Lease{LeaseID: k.LeaseID, App: in.App, Host: c.Host, HostURL: c.URL,
						MemoryMB: k.MemoryMB, DiskMB: k.DiskMB, CPUMilli: k.CPUMilli, Reserved: now, Expires: now.Add(k.TTL),
						Score: c.Score, Adjusted: c.Adjustment, ModelScore: c.ModelScore, ModelVers: ranked.ModelVersion}
					if !sr.KeptExpires.IsZero() && sr.KeptExpires.Before(ls.Expires) {
						ls.Expires = sr.KeptExpires
					}
					kept = &ls
				}
				break
			}
			logger.Warn("cold serve failed; trying the next host", "host", c.Host, "error", err)
		}
		if err != nil {
			return res, fmt.Errorf("serve %s cold: every candidate host failed, last: %w", in.RequestID, err)
		}
		if res.Outcome == "" {
			res.Outcome = records.OutcomeCold
		}
	}
	// The time the claim waited for an instance being prepared is the
	// request's too.
	res.Warm, res.SetupMS, res.WorkMS, res.LatencyMS = sr.Warm, sr.SetupMS, sr.WorkMS, sr.TotalMS+claim.WaitedMS
	upsertHost(ctx, res.Host)
	res.Actual = PerformanceScore(in.WorkMS, sr.WorkMS)

	at := workflow.Now(ctx)
	if !in.ArrivedAt.IsZero() {
		at = in.ArrivedAt
	}
	rec := wire.RecordRequestInput{
		Request: records.Request{Time: at, RequestID: in.RequestID, App: in.App, VolumeType: in.VolumeType,
			SizeMB: in.MemoryMB, ReadRatio: in.ReadRatio, Host: res.Host, Warm: res.Warm, ExpectedScore: res.Expected,
			SetupMS: res.SetupMS, WorkMS: res.WorkMS, LatencyMS: res.LatencyMS, Outcome: res.Outcome},
		Claimed: claimed,
	}
	if next, ok := NextAdjustment(adjustment, res.Expected, res.Actual, in.Tolerance, in.Rate); ok {
		res.Adjusted, res.NewAdjustment = true, next
		rec.Adjustment = &records.Adjustment{Time: workflow.Now(ctx), App: in.App, Host: res.Host,
			Expected: res.Expected, Actual: res.Actual, Delta: res.Actual - res.Expected, NewAdjustment: next,
			Reason: fmt.Sprintf("actual %.3f vs expected %.3f beyond tolerance %.2f", res.Actual, res.Expected, in.Tolerance)}
	}
	// The outcome must reach the store even across a ClickHouse restart.
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumInterval: 30 * time.Second, NonRetryableErrorTypes: []string{wire.ErrBadInput}},
		ScheduleToCloseTimeout: 30 * time.Minute,
		Summary:                "record request " + in.RequestID + ": " + res.Outcome,
	})
	recorded := workflow.ExecuteActivity(rctx, ActivityRecordRequest, rec)

	obs := ObservationSignal{RequestID: in.RequestID, Count: 1, Host: res.Host, Warm: res.Warm, LatencyMS: res.LatencyMS,
		Claimed: claim.LoopRunning, SizeMB: in.MemoryMB, Kept: kept, Gone: gone, At: in.ArrivedAt}
	if res.Adjusted {
		obs.Adjustment = &res.NewAdjustment
	}
	// A request the loop already counted signals only what it must
	// learn: an adjustment, a kept instance, a lease that is gone.
	if !obs.Claimed || res.Adjusted || kept != nil || len(gone) > 0 {
		if err := workflow.SignalExternalWorkflow(ctx, LoopWorkflowID(in.App), "", SignalObservation, obs).Get(ctx, nil); err != nil {
			// No loop for this application: the outcome is still recorded.
			logger.Info("no prediction loop to tell", "app", in.App, "error", err)
		}
	}
	if err := recorded.Get(ctx, nil); err != nil {
		return res, fmt.Errorf("record outcome of %s: %w", in.RequestID, err)
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s on %s: %.1f ms (setup %.1f, work %.1f); expected %.2f, actual %.2f",
		res.Outcome, res.Host, res.LatencyMS, res.SetupMS, res.WorkMS, res.Expected, res.Actual))
	return res, nil
}

// coldOutcome names why a request that claimed a lease ran cold.
func coldOutcome(fallbackCode string) string {
	switch fallbackCode {
	case api.CodeLeaseBusy:
		return records.OutcomeColdLeaseBusy
	case api.CodeLeaseTooSmall:
		return records.OutcomeColdLeaseTooSmall
	}
	// The host no longer held the lease.
	return records.OutcomeColdLeaseLost
}

func withSummary(ctx workflow.Context, s string) workflow.Context {
	o := workflow.GetActivityOptions(ctx)
	o.Summary = s
	return workflow.WithActivityOptions(ctx, o)
}
