// Package workflows is Forewarm's deterministic orchestration: the
// per-application prediction loop, the preparation of host leases, the
// serve-request workflow and the training workflow. Every Temporal name is
// in names.go; every side effect is an activity in package activities.
package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
)

// Activity receivers: workflows name activities through nil pointers of the
// worker's structs (only the method names matter).
var (
	predictor *activities.Predictor
	hosts     *activities.Hosts
	requests  *activities.Requests
	training  *activities.Training
)

const (
	defaultWindow         = 64
	defaultMaxTicksPerRun = 1000
	defaultMemoryMB       = 170 // trace.DefaultMemoryMB: Azure's typical function
)

// PredictionLoop is the long-running workflow of one application: it ticks
// every bin, predicts demand with the champion model, prepares hosts when
// the probability reaches the threshold, hands leases to arriving requests
// and expires the unused ones. It continues as new carrying its LoopInput.
func PredictionLoop(ctx workflow.Context, in LoopInput) (LoopResult, error) {
	l := &loop{LoopInput: in}
	if err := l.setup(ctx); err != nil {
		return LoopResult{App: in.App}, err
	}
	return l.run(ctx)
}

// loop is the workflow's state: the carried LoopInput plus what lives only
// within one run.
type loop struct {
	LoopInput
	log       log.Logger
	preparing string // workflow ID of the preparation in flight ("" when none)
	cancelPre workflow.CancelFunc
	jobs      int // releases in flight
	stop      *StopSignal
	attrs     attrState
}

// attrState is what was last upserted, so search attributes are written
// only when they change (each upsert is a history event).
type attrState struct {
	state, model, host string
	threshold          float64
	set                bool
}

func (l *loop) setup(ctx workflow.Context) error {
	if l.App == "" {
		return temporal.NewNonRetryableApplicationError("loop input has no App", activities.ErrBadInput, nil)
	}
	if l.Bin <= 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("loop %s: bin width %v must be positive", l.App, l.Bin), activities.ErrBadInput, nil)
	}
	if l.Policy == (Policy{}) {
		l.Policy = DefaultPolicy()
	}
	if err := l.Policy.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("loop %s: policy: %v", l.App, err), activities.ErrBadInput, nil)
	}
	if l.Window <= 0 {
		l.Window = defaultWindow
	}
	if l.MaxTicksPerRun <= 0 {
		l.MaxTicksPerRun = defaultMaxTicksPerRun
	}
	if l.Adjustments == nil {
		l.Adjustments = map[string]float64{}
	}
	l.Profile.App = l.App
	l.log = log.With(workflow.GetLogger(ctx), "app", l.App)

	if err := workflow.SetQueryHandler(ctx, QueryState, func(StateQuery) (LoopStatus, error) {
		return l.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePolicy, l.updatePolicy,
		workflow.UpdateHandlerOptions{Validator: l.validatePolicy}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateClaim, l.claim,
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, in ClaimUpdate) error {
			if in.RequestID == "" {
				return errors.New("claim needs a RequestID")
			}
			return nil
		}})
}

func (l *loop) run(ctx workflow.Context) (LoopResult, error) {
	if !l.Seeded {
		l.seed(ctx)
	}
	now := workflow.Now(ctx)
	if l.NextTick.IsZero() {
		l.NextTick = now.Truncate(l.Bin).Add(l.Bin)
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)

	thresholdCh := workflow.GetSignalChannel(ctx, SignalThreshold)
	policyCh := workflow.GetSignalChannel(ctx, SignalPolicy)
	observationCh := workflow.GetSignalChannel(ctx, SignalObservation)
	stopCh := workflow.GetSignalChannel(ctx, SignalStop)
	receive := func(s workflow.Selector) {
		s.AddReceive(thresholdCh, func(c workflow.ReceiveChannel, _ bool) {
			var sig ThresholdSignal
			c.Receive(ctx, &sig)
			l.onThreshold(ctx, sig)
		})
		s.AddReceive(policyCh, func(c workflow.ReceiveChannel, _ bool) {
			var sig PolicySignal
			c.Receive(ctx, &sig)
			l.onPolicy(ctx, sig)
		})
		s.AddReceive(observationCh, func(c workflow.ReceiveChannel, _ bool) {
			var sig ObservationSignal
			c.Receive(ctx, &sig)
			l.onObservation(sig)
		})
		s.AddReceive(stopCh, func(c workflow.ReceiveChannel, _ bool) {
			var sig StopSignal
			c.Receive(ctx, &sig)
			l.stop = &sig
		})
	}

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
		l.tick(ctx)
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

// seed loads the recent activity, the profile and the adjustments once. A
// failure is not fatal: the loop starts from zeros and learns as it goes.
func (l *loop) seed(ctx workflow.Context) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
		Summary:             "load recent activity and profile",
	})
	end := workflow.Now(ctx).Truncate(l.Bin)
	var res activities.SeedResult
	err := workflow.ExecuteActivity(actx, predictor.Seed, activities.SeedInput{App: l.App, End: end, Bins: l.Window, Bin: l.Bin}).Get(ctx, &res)
	if err != nil {
		l.LastError = "seed from stored history failed, starting from zeros: " + err.Error()
		l.log.Warn("seed failed; starting from zeros", "error", err)
	} else {
		l.Recent = res.Counts
		if res.ProfileKnown && l.Profile.MemoryMB == 0 {
			app := l.App
			l.Profile = res.Profile
			l.Profile.App = app
		}
		for _, h := range slices.Sorted(maps.Keys(res.Adjustments)) {
			if _, ok := l.Adjustments[h]; !ok {
				l.Adjustments[h] = res.Adjustments[h]
			}
		}
	}
	l.Seeded = true
	if l.Profile.MemoryMB <= 0 {
		// Unknown application: size leases like a typical one.
		l.Profile.MemoryMB = defaultMemoryMB
		l.log.Warn("no stored profile; sizing leases with defaults", "memory_mb", defaultMemoryMB)
	}
	if l.Profile.DiskMB <= 0 {
		l.Profile.DiskMB = l.Profile.MemoryMB / 4
	}
	if len(l.Recent) > l.Window {
		l.Recent = l.Recent[len(l.Recent)-l.Window:]
	}
}

// tick closes the open bin, expires leases, predicts and maybe prepares.
func (l *loop) tick(ctx workflow.Context) {
	now := workflow.Now(ctx)
	l.recordLag(now.Sub(l.NextTick))
	binStart := l.closeBins(now)
	l.Stats.Ticks++
	l.expire(ctx, now)
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
	err := workflow.ExecuteLocalActivity(lactx, predictor.Predict, activities.PredictInput{
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
		l.LastError, l.LastDecision = msg, activities.DecisionNoModel
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
		if res.Decision == activities.DecisionPrepare && l.preparing == "" {
			l.prepare(ctx, binStart)
		}
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
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

// ratePerMin is the recent request rate the affinity model takes.
func (l *loop) ratePerMin() float64 {
	if len(l.Recent) == 0 {
		return 0
	}
	var sum float64
	for _, c := range l.Recent {
		sum += c
	}
	_, bin := l.Clock.Map(time.Time{}, l.Bin) // the model's bin under a trace clock
	return sum / (float64(len(l.Recent)) * bin.Minutes())
}

func (l *loop) push(v float64) {
	l.Recent = append(l.Recent, v)
	if over := len(l.Recent) - l.Window; over > 0 {
		l.Recent = append(l.Recent[:0:0], l.Recent[over:]...)
	}
}

func (l *loop) recordLag(lag time.Duration) {
	ms := float64(lag) / float64(time.Millisecond)
	l.Stats.MaxLagMS = max(l.Stats.MaxLagMS, ms)
	i, _ := slices.BinarySearch(LagBucketBoundsMS[:], ms)
	l.Stats.LagBuckets[i]++
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

// prepare starts the preparation child workflow; its result is folded in
// when it completes, without blocking the ticks.
func (l *loop) prepare(ctx workflow.Context, binStart time.Time) {
	id := PreparationWorkflowID(l.App, binStart)
	pctx, cancel := workflow.WithCancel(ctx)
	pctx = workflow.WithChildOptions(pctx, workflow.ChildWorkflowOptions{
		WorkflowID:               id,
		WorkflowExecutionTimeout: 10 * time.Minute,
		// On stop or termination of the loop the preparation still runs its
		// cleanup and releases what it reserved.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrApp.ValueSet(l.App)),
		StaticSummary:         fmt.Sprintf("prepare %d host(s) for %s: P=%.3f ≥ %.3f", l.Policy.TopN, l.App, l.LastProbability, l.Policy.Threshold),
	})
	l.preparing, l.cancelPre = id, cancel
	l.Stats.Preparations++
	profile := l.Profile
	profile.RatePerMin = l.ratePerMin()
	in := PrepareInput{
		App: l.App, Profile: profile, TopN: l.Policy.TopN, TTL: l.Policy.TTL(l.Bin),
		MaxShadowMS: l.Policy.MaxShadowMS, SampleMB: l.Policy.SampleMB, Adjustments: maps.Clone(l.Adjustments),
	}
	fut := workflow.ExecuteChildWorkflow(pctx, PreparationWorkflowName, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var res PrepareResult
		err := fut.Get(gctx, &res)
		l.preparing, l.cancelPre = "", nil
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
		l.Leases = append(l.Leases, res.Leases...)
		l.Stats.LeasesPrepared += len(res.Leases)
		l.upsertAttrs(gctx)
		l.setDetails(gctx)
	})
}

// expire drops leases past their expiry and releases them on their hosts,
// recording the held memory-time as waste.
func (l *loop) expire(ctx workflow.Context, now time.Time) {
	var keep []activities.Lease
	for _, ls := range l.Leases {
		if ls.Expires.After(now) {
			keep = append(keep, ls)
			continue
		}
		held := ls.Expires.Sub(ls.Reserved).Seconds()
		l.Stats.Expired++
		l.Stats.WastedMBSeconds += ls.MemoryMB * held
		l.release(ctx, ls, "expired", "lease TTL passed unclaimed", held)
	}
	l.Leases = keep
}

// release gives a lease back in the background; the loop does not wait.
func (l *loop) release(ctx workflow.Context, ls activities.Lease, event, reason string, held float64) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{activities.ErrHostRejected}},
		Summary:             event + " " + ls.LeaseID,
	})
	fut := workflow.ExecuteActivity(actx, hosts.Release, activities.ReleaseInput{
		LeaseID: ls.LeaseID, App: l.App, Host: ls.Host, HostURL: ls.HostURL, Event: event, Reason: reason,
		MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli, HeldSeconds: held,
	})
	l.jobs++
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer func() { l.jobs-- }()
		if err := fut.Get(gctx, nil); err != nil {
			// The host's own TTL frees the resources anyway; say so.
			l.log.Warn("release failed; the host's TTL will free it", "lease", ls.LeaseID, "error", err)
		}
	})
}

func (l *loop) onThreshold(ctx workflow.Context, sig ThresholdSignal) {
	if err := ValidateThreshold(sig.Threshold); err != nil {
		l.LastError = "threshold signal ignored: " + err.Error()
		l.log.Warn("threshold signal ignored", "threshold", sig.Threshold, "error", err)
		return
	}
	l.Policy.Threshold = sig.Threshold
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) onPolicy(ctx workflow.Context, sig PolicySignal) {
	p := sig.Change.Apply(l.Policy)
	if err := p.Validate(); err != nil {
		l.LastError = "policy signal ignored: " + err.Error()
		l.log.Warn("policy signal ignored", "error", err)
		return
	}
	l.Policy = p
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) onObservation(sig ObservationSignal) {
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

func (l *loop) validatePolicy(_ workflow.Context, in PolicyUpdate) error {
	return in.Change.Apply(l.Policy).Validate()
}

func (l *loop) updatePolicy(ctx workflow.Context, in PolicyUpdate) (PolicyUpdateResult, error) {
	prev := l.Policy
	l.Policy = in.Change.Apply(l.Policy)
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
	return PolicyUpdateResult{Previous: prev, Current: l.Policy}, nil
}

// claim hands the best live lease to one request, atomically: update
// handlers run one at a time on the workflow's single thread.
func (l *loop) claim(ctx workflow.Context, in ClaimUpdate) (ClaimUpdateResult, error) {
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

// shutdown cancels the preparation in flight (it releases what it holds),
// waits for it, releases the live leases (including any the preparation
// handed back just before the cancel) and waits for the releases.
func (l *loop) shutdown(ctx workflow.Context) (LoopResult, error) {
	reason := "cancelled"
	if l.stop != nil {
		reason = "stopped: " + l.stop.Reason
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if l.cancelPre != nil {
		l.cancelPre()
	}
	if err := workflow.Await(dctx, func() bool { return l.preparing == "" }); err != nil {
		l.log.Warn("waiting for the preparation", "error", err)
	}
	for _, ls := range l.Leases {
		l.release(dctx, ls, "released", "loop "+reason, workflow.Now(dctx).Sub(ls.Reserved).Seconds())
	}
	l.Leases = nil
	if err := workflow.Await(dctx, func() bool { return l.jobs == 0 && workflow.AllHandlersFinished(dctx) }); err != nil {
		l.log.Warn("waiting for releases", "error", err)
	}
	l.LastDecision = LoopStateStopped
	l.upsertAttrs(dctx)
	l.setDetails(dctx)
	res := LoopResult{App: l.App, Stats: l.Stats, Reason: reason}
	if l.stop == nil {
		return res, ctx.Err()
	}
	return res, nil
}

func (l *loop) state() string {
	switch {
	case l.LastDecision == LoopStateStopped:
		return LoopStateStopped
	case l.Policy.Paused:
		return LoopStatePaused
	case l.Policy.DryRun:
		return LoopStateDryRun
	}
	return LoopStateRunning
}

// upsertAttrs writes the search attributes that changed.
func (l *loop) upsertAttrs(ctx workflow.Context) {
	cur := attrState{state: l.state(), model: l.ModelVersion, threshold: l.Policy.Threshold, set: true}
	if len(l.Leases) > 0 {
		cur.host = l.Leases[0].Host
	}
	if cur == l.attrs {
		return
	}
	var ups []temporal.SearchAttributeUpdate
	if !l.attrs.set {
		ups = append(ups, AttrApp.ValueSet(l.App))
	}
	if !l.attrs.set || cur.state != l.attrs.state {
		ups = append(ups, AttrLoopState.ValueSet(cur.state))
	}
	if !l.attrs.set || cur.threshold != l.attrs.threshold {
		ups = append(ups, AttrThreshold.ValueSet(cur.threshold))
	}
	if cur.model != l.attrs.model && cur.model != "" {
		ups = append(ups, AttrModelVersion.ValueSet(cur.model))
	}
	if cur.host != l.attrs.host {
		if cur.host == "" {
			ups = append(ups, AttrHost.ValueUnset())
		} else {
			ups = append(ups, AttrHost.ValueSet(cur.host))
		}
	}
	l.attrs = cur
	if len(ups) == 0 {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, ups...); err != nil {
		l.log.Warn("upsert search attributes", "error", err)
	}
}

// setDetails is the Web UI's one-glance view of the loop.
func (l *loop) setDetails(ctx workflow.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** — %s, threshold %.2f, horizon %d × %v, top-%d\n\n", l.App, l.state(), l.Policy.Threshold, l.Policy.HorizonBins, l.Bin, l.Policy.TopN)
	fmt.Fprintf(&b, "last P = %.3f (%s), model %s\n\n", l.LastProbability, l.LastDecision, orDash(l.ModelVersion))
	fmt.Fprintf(&b, "leases: %d live", len(l.Leases))
	for _, ls := range l.Leases {
		fmt.Fprintf(&b, "; %s until %s (score %.2f)", ls.Host, ls.Expires.UTC().Format("15:04:05"), ls.Score)
	}
	if l.preparing != "" {
		fmt.Fprintf(&b, "; preparing %s", l.preparing)
	}
	fmt.Fprintf(&b, "\n\nticks %d, preparations %d (%d failed), claims %d, cold %d, expired %d",
		l.Stats.Ticks, l.Stats.Preparations, l.Stats.PreparationsFailed, l.Stats.Claims, l.Stats.Misses, l.Stats.Expired)
	if l.LastError != "" {
		fmt.Fprintf(&b, "\n\nlast error: %s", l.LastError)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (l *loop) status() LoopStatus {
	return LoopStatus{
		App: l.App, State: l.state(), Bin: l.Bin, Policy: l.Policy, Profile: l.Profile,
		Recent: slices.Clone(l.Recent), Pending: l.Pending, NextTick: l.NextTick,
		LastProbability: l.LastProbability, LastDecision: l.LastDecision, ModelVersion: l.ModelVersion,
		LastError: l.LastError, Leases: slices.Clone(l.Leases), Preparing: l.preparing,
		Adjustments: maps.Clone(l.Adjustments), Stats: l.Stats, Runs: l.Runs,
	}
}
