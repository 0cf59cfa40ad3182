package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
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
	if in.RequestID == "" || in.App == "" {
		return RequestResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("request: app %q and request ID %q are required", in.App, in.RequestID), wire.ErrBadInput, nil)
	}
	if in.Tolerance <= 0 {
		in.Tolerance = 0.15
	}
	if in.Rate <= 0 {
		in.Rate = 0.5
	}
	s := &serving{ctx: ctx, in: in, log: workflow.GetLogger(ctx)}
	s.quick = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrHostRejected, wire.ErrNoHosts}},
	})
	s.claimLease()
	if !s.claim.Found || !s.serveWarm() {
		if err := s.serveCold(); err != nil {
			return s.res, err
		}
	}
	res := &s.res
	// The time the claim waited for an instance being prepared is the
	// request's too.
	res.Warm, res.SetupMS, res.WorkMS, res.LatencyMS = s.sr.Warm, s.sr.SetupMS, s.sr.WorkMS, s.sr.TotalMS+s.claim.WaitedMS
	upsertHost(ctx, res.Host)
	res.Actual = PerformanceScore(in.WorkMS, s.sr.WorkMS)
	recorded := s.record()
	s.tellLoop()
	if err := recorded.Get(ctx, nil); err != nil {
		return *res, fmt.Errorf("record outcome of %s: %w", in.RequestID, err)
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s on %s: %.1f ms (setup %.1f, work %.1f); expected %.2f, actual %.2f",
		res.Outcome, res.Host, res.LatencyMS, res.SetupMS, res.WorkMS, res.Expected, res.Actual))
	return *res, nil
}

// serving is one request on its way through ServeRequest: the claim, the
// serve and what the loop and the store are told of it.
type serving struct {
	ctx   workflow.Context
	in    RequestInput
	log   log.Logger
	quick workflow.Context // short activities: claim, rank

	claim      wire.ClaimResult
	sr         wire.ServeResult
	res        RequestResult
	adjustment float64                   // the (app, host) adjustment the host was chosen with
	claimed    *records.PreparationEvent // the lease the request used up
	gone       []string                  // leases that failed to serve
	kept       *wire.Lease               // the instance a cold serve left behind
}

// local runs a local activity (claim and serve: two fewer activity round
// trips through the server per request) with opts' timeout, retries and
// summary.
func (s *serving) local(opts workflow.ActivityOptions, fn, arg any) workflow.Future {
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(s.ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: opts.StartToCloseTimeout, RetryPolicy: opts.RetryPolicy, Summary: opts.Summary}), fn, arg)
}

// claimLease asks the loop for a prepared lease; the claim counts the
// arrival. A failed claim serves cold.
func (s *serving) claimLease() {
	in := s.in
	opts := workflow.GetActivityOptions(s.quick)
	opts.Summary = "claim a lease of " + in.App + " for request " + in.RequestID
	claimIn := wire.ClaimInput{App: in.App, RequestID: in.RequestID, CountArrival: true, SizeMB: in.MemoryMB, ArrivedAt: in.ArrivedAt}
	if err := s.local(opts, ActivityClaimLease, claimIn).Get(s.ctx, &s.claim); err != nil {
		s.log.Warn("claim failed; serving cold", "error", err)
	}
}

// serve runs the request on a host: on a lease (leaseID) or cold, leaving
// the instance behind as a lease when keep says so.
func (s *serving) serve(host, url, leaseID string, keep *wire.KeepPlan) (wire.ServeResult, error) {
	in := s.in
	var sr wire.ServeResult
	si := wire.ServeInput{Host: host, HostURL: url, HostServing: wire.HostServing{RequestID: in.RequestID, App: in.App,
		LeaseID: leaseID, MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, ReadRatio: in.ReadRatio, WorkMS: in.WorkMS}}
	si.LeaseStays = s.claim.Stays
	if keep != nil {
		si.KeepID, si.KeepTTL = keep.LeaseID, keep.TTL
		si.KeepMemoryMB, si.KeepDiskMB, si.KeepCPUMilli = keep.MemoryMB, keep.DiskMB, keep.CPUMilli
	}
	err := s.local(workflow.ActivityOptions{
		StartToCloseTimeout: time.Duration(in.WorkMS)*time.Millisecond*4 + 30*time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2,
			NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrHostRejected}},
		Summary: "serve on " + host,
	}, ActivityServe, si).Get(s.ctx, &sr)
	return sr, err
}

// serveWarm serves on the claimed lease; false when that failed (the lease
// is released and the request goes cold).
func (s *serving) serveWarm() bool {
	ctx, ls, res := s.ctx, s.claim.Lease, &s.res
	sr, err := s.serve(ls.Host, ls.HostURL, ls.LeaseID, nil)
	if err != nil {
		s.log.Warn("warm serve failed; releasing the lease and serving cold", "lease", ls.LeaseID, "error", err)
		releaseNow(ctx, ls, records.EventReleased, "warm serve failed: "+rootMessage(err))
		res.Outcome = records.OutcomeColdAfterWarmFail
		s.gone = append(s.gone, ls.LeaseID)
		return false
	}
	s.sr = sr
	res.Host, res.LeaseID, res.Expected, s.adjustment, res.Outcome = ls.Host, ls.LeaseID, ls.Score, ls.Adjusted, records.OutcomeWarm
	if !sr.Warm {
		res.Outcome = coldOutcome(sr.FallbackCode)
		if sr.FallbackCode == api.CodeGone || sr.FallbackCode == api.CodeNotFound {
			s.gone = append(s.gone, ls.LeaseID)
		}
	}
	if !s.claim.Stays {
		s.claimed = &records.PreparationEvent{Time: workflow.Now(ctx), PreparationID: ls.LeaseID, App: s.in.App, Host: ls.Host,
			Event: records.EventClaimed, MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli,
			HeldSeconds: workflow.Now(ctx).Sub(ls.Reserved).Seconds(), Reason: "request " + s.in.RequestID}
	}
	return true
}

// serveCold ranks the hosts and serves on the first of the best three
// that answers, keeping the instance as a lease when the claim asked to.
func (s *serving) serveCold() error {
	in, res := s.in, &s.res
	var ranked wire.RankResult
	profile := wire.AppProfile{App: in.App, MemoryMB: in.MemoryMB, DiskMB: in.DiskMB, ReadRatio: in.ReadRatio, DurationMS: in.WorkMS, VolumeType: in.VolumeType}
	if err := workflow.ExecuteActivity(withSummary(s.quick, "rank hosts to serve "+in.App+" cold"), ActivityRankHosts,
		wire.RankInput{Profile: profile, Adjustments: s.claim.Adjustments}).Get(s.ctx, &ranked); err != nil {
		return fmt.Errorf("no host to serve %s cold: %w", in.RequestID, err)
	}
	var err error
	for _, c := range ranked.Candidates[:min(3, len(ranked.Candidates))] {
		if s.sr, err = s.serve(c.Host, c.URL, "", s.claim.Keep); err == nil {
			res.Host, res.Expected, s.adjustment = c.Host, c.Score, c.Adjustment
			if k := s.claim.Keep; s.sr.Kept && k != nil {
				now := workflow.Now(s.ctx)
				ls := wire.Lease{LeaseID: k.LeaseID, App: in.App, Host: c.Host, HostURL: c.URL,
					MemoryMB: k.MemoryMB, DiskMB: k.DiskMB, CPUMilli: k.CPUMilli, Reserved: now, Expires: now.Add(k.TTL),
					Score: c.Score, Adjusted: c.Adjustment, ModelScore: c.ModelScore, ModelVers: ranked.ModelVersion}
				if !s.sr.KeptExpires.IsZero() && s.sr.KeptExpires.Before(ls.Expires) {
					ls.Expires = s.sr.KeptExpires
				}
				s.kept = &ls
			}
			break
		}
		s.log.Warn("cold serve failed; trying the next host", "host", c.Host, "error", err)
	}
	if err != nil {
		return fmt.Errorf("serve %s cold: every candidate host failed, last: %w", in.RequestID, err)
	}
	if res.Outcome == "" {
		res.Outcome = records.OutcomeCold
	}
	return nil
}

// record starts recording the outcome (and an affinity adjustment when
// performance was off by more than the tolerance) in the store.
func (s *serving) record() workflow.Future {
	ctx, in, res := s.ctx, s.in, &s.res
	at := workflow.Now(ctx)
	if !in.ArrivedAt.IsZero() {
		at = in.ArrivedAt
	}
	rec := wire.RecordRequestInput{
		Request: records.Request{Time: at, RequestID: in.RequestID, App: in.App, VolumeType: in.VolumeType,
			SizeMB: in.MemoryMB, ReadRatio: in.ReadRatio, Host: res.Host, Warm: res.Warm, ExpectedScore: res.Expected,
			SetupMS: res.SetupMS, WorkMS: res.WorkMS, LatencyMS: res.LatencyMS, Outcome: res.Outcome},
		Claimed: s.claimed,
	}
	if next, ok := NextAdjustment(s.adjustment, res.Expected, res.Actual, in.Tolerance, in.Rate); ok {
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
	return workflow.ExecuteActivity(rctx, ActivityRecordRequest, rec)
}

// tellLoop signals the application's loop what it must learn of the
// request. A request the loop already counted signals only an adjustment,
// a kept instance or a lease that is gone.
func (s *serving) tellLoop() {
	in, res := s.in, &s.res
	obs := ObservationSignal{RequestID: in.RequestID, Count: 1, Host: res.Host, Warm: res.Warm, LatencyMS: res.LatencyMS,
		Claimed: s.claim.LoopRunning, SizeMB: in.MemoryMB, Kept: s.kept, Gone: s.gone, At: in.ArrivedAt}
	if res.Adjusted {
		obs.Adjustment = &res.NewAdjustment
	}
	if obs.Claimed && !res.Adjusted && s.kept == nil && len(s.gone) == 0 {
		return
	}
	if err := workflow.SignalExternalWorkflow(s.ctx, LoopWorkflowID(in.App), "", SignalObservation, obs).Get(s.ctx, nil); err != nil {
		// No loop for this application: the outcome is still recorded.
		s.log.Info("no prediction loop to tell", "app", in.App, "error", err)
	}
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
