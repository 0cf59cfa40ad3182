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

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
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
	defaultWindow         = 1440 // a day of one-minute bins: the demand model's idle-time history
	defaultMaxTicksPerRun = 1000
	// maxSizes is how many recent request sizes a loop keeps for sizing.
	maxSizes = 64
)

// PredictionLoop is the long-running workflow of one application: it asks
// the champion demand model for the chance of a request in the coming bins,
// lets package policy decide whether to prepare, keep or release a warm
// instance, sleeps until the policy could act again (or a request, signal
// or update arrives), hands its warm instances to requests, and continues
// as new carrying its LoopInput.
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
	jobs      int // releases and extensions in flight
	stop      *StopSignal
	attrs     attrState
	draining  bool // continuing as new: start nothing new
	// wakeEarly is set when something arrived that can change the next
	// decision: the loop decides again at the next bin.
	wakeEarly bool
	// kick wakes the sleeping loop from an update handler (nil before run).
	kick    func()
	decided time.Time // bin of the last decision made by a wake
	// prepWanted: the preparation in flight is still what the policy wants
	// (a release or an idle decision since says otherwise).
	prepWanted bool
	keptIn     time.Time // end of the bin in which a cold request's instance was last offered to keep
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
	if err := ValidateBin(l.Bin); err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("loop %s: %v", l.App, err), activities.ErrBadInput, nil)
	}
	switch {
	case l.Policy == (Policy{}):
		l.Policy = DefaultPolicy()
	case l.Policy.legacy():
		// Written for the loop from before the policy package (an old
		// client's start input): its threshold meant something else.
		l.Policy = l.Policy.upgraded()
	}
	// A loop's leases are bounded as far as it may sleep. A loop continued
	// as new keeps going with the policy it was started with: the forecast
	// plans its leases no longer than the agents accept; a change to it is
	// checked.
	if err := l.Policy.validateFor(l.Bin, l.Runs == 0); err != nil {
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
	// Updates take their payloads raw and decode them strictly, like the
	// signals: the validator refuses a malformed one, naming the field.
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdatePolicy,
		func(ctx workflow.Context, raw converter.RawValue) (PolicyUpdateResult, error) {
			in, err := decodePayload[PolicyUpdate](raw)
			if err != nil {
				return PolicyUpdateResult{}, updateRefused(UpdatePolicy, err)
			}
			return l.updatePolicy(ctx, in)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, raw converter.RawValue) error {
			in, err := decodePayload[PolicyUpdate](raw)
			if err != nil {
				return updateRefused(UpdatePolicy, err)
			}
			if err := l.validatePolicy(ctx, in); err != nil {
				return updateRefused(UpdatePolicy, err)
			}
			return nil
		}}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateClaim,
		func(ctx workflow.Context, raw converter.RawValue) (ClaimUpdateResult, error) {
			in, err := decodePayload[ClaimUpdate](raw)
			if err != nil {
				return ClaimUpdateResult{}, updateRefused(UpdateClaim, err)
			}
			return l.claimWarm(ctx, in)
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, raw converter.RawValue) error {
			if _, err := decodePayload[ClaimUpdate](raw); err != nil {
				return updateRefused(UpdateClaim, err)
			}
			return nil
		}})
}

// updateRefused is the error an update is rejected with (validators must
// not change the loop's state, so the rejection itself says why).
func updateRefused(name string, err error) error {
	return fmt.Errorf("%s update refused: %w", name, err)
}

// signals returns the function that adds every signal channel of the loop
// to a selector. Each payload is decoded strictly (see decodeSignal): a
// malformed one is refused and recorded, never left to block the loop.
func (l *loop) signals(ctx workflow.Context) func(workflow.Selector) {
	thresholdCh := workflow.GetSignalChannel(ctx, SignalThreshold)
	policyCh := workflow.GetSignalChannel(ctx, SignalPolicy)
	observationCh := workflow.GetSignalChannel(ctx, SignalObservation)
	stopCh := workflow.GetSignalChannel(ctx, SignalStop)
	wakeCh := workflow.GetSignalChannel(ctx, SignalWake)
	return func(s workflow.Selector) {
		s.AddReceive(thresholdCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[ThresholdSignal](ctx, c); err != nil {
				l.refuse(SignalThreshold, err)
			} else {
				l.onThreshold(ctx, sig)
			}
		})
		s.AddReceive(policyCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[PolicySignal](ctx, c); err != nil {
				l.refuse(SignalPolicy, err)
			} else {
				l.onPolicy(ctx, sig)
			}
		})
		s.AddReceive(observationCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[ObservationSignal](ctx, c); err != nil {
				l.refuse(SignalObservation, err)
			} else {
				l.observe(ctx, sig)
			}
		})
		s.AddReceive(wakeCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[WakeSignal](ctx, c); err != nil {
				l.refuse(SignalWake, err)
			} else {
				l.onWake(ctx, sig)
			}
		})
		s.AddReceive(stopCh, func(c workflow.ReceiveChannel, _ bool) {
			if sig, err := receiveSignal[StopSignal](ctx, c); err != nil {
				l.refuse(SignalStop, err)
			} else {
				l.stop = &sig
			}
		})
	}
}

// refuse records a signal or update refused for its payload.
func (l *loop) refuse(name string, err error) {
	l.Stats.Refusals++
	l.LastError = fmt.Sprintf("%s signal refused: %v", name, err)
	l.log.Warn("signal refused", "signal", name, "error", err)
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
	err := workflow.ExecuteActivity(actx, ActivitySeed, activities.SeedInput{App: l.App, End: end, Bins: l.Window, Bin: l.Bin}).Get(ctx, &res)
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
		l.log.Warn("no stored profile; sizing leases with defaults", "memory_mb", l.Profile.WithDefaults().MemoryMB)
	}
	l.Profile = l.Profile.WithDefaults()
	if len(l.Recent) > l.Window {
		l.Recent = l.Recent[len(l.Recent)-l.Window:]
	}
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
	l.Stats.LagMS += 0.2 * (max(0, ms) - l.Stats.LagMS)
	i, _ := slices.BinarySearch(LagBucketBoundsMS[:], ms)
	l.Stats.LagBuckets[i]++
}

// release gives a lease back in the background; the loop does not wait.
func (l *loop) release(ctx workflow.Context, ls activities.Lease, event, reason string, held float64) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{activities.ErrHostRejected}},
		Summary:             event + " " + ls.LeaseID,
	})
	fut := workflow.ExecuteActivity(actx, ActivityRelease, activities.ReleaseInput{
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
		l.refuse(SignalThreshold, err)
		return
	}
	l.Policy.Threshold = sig.Threshold
	l.wakeEarly = true
	if l.kick != nil {
		l.kick()
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) validate(p Policy) error {
	return p.ValidateFor(l.Bin)
}

func (l *loop) onPolicy(ctx workflow.Context, sig PolicySignal) {
	if sig.Change == (PolicyChange{}) {
		l.refuse(SignalPolicy, errors.New("the change names no field"))
		return
	}
	p := sig.Change.Apply(l.Policy)
	if err := l.validate(p); err != nil {
		l.refuse(SignalPolicy, err)
		return
	}
	l.Policy = p
	l.wakeEarly = true
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}

func (l *loop) validatePolicy(_ workflow.Context, in PolicyUpdate) error {
	if in.Change == (PolicyChange{}) {
		return errors.New("the change names no field")
	}
	return l.validate(in.Change.Apply(l.Policy))
}

func (l *loop) updatePolicy(ctx workflow.Context, in PolicyUpdate) (PolicyUpdateResult, error) {
	prev := l.Policy
	l.Policy = in.Change.Apply(l.Policy)
	if l.kick != nil {
		l.kick()
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
	return PolicyUpdateResult{Previous: prev, Current: l.Policy}, nil
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
		l.release(dctx, ls, records.EventReleased, "loop "+reason, workflow.Now(dctx).Sub(ls.Reserved).Seconds())
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

// setDetails is the Web UI's one-glance view of the loop: its page's
// "User Metadata" tab shows it as Current Details (the UI reads it with
// the __temporal_workflow_metadata query when the tab opens, so a worker
// must be polling the loop's queue). The first paragraph is the summary:
// state, the last probability against the thresholds, the leases and the
// next wake; the counters and the last error follow.
func (l *loop) setDetails(ctx workflow.Context) {
	var b strings.Builder
	th := l.thresholds()
	fmt.Fprintf(&b, "**%s** is %s: last P = %.3f against keep ≥ %.3g and prepare ≥ %.3g (threshold %.3g for a %.0f MB instance) → %s",
		l.App, l.state(), l.LastProbability, th.Keep, th.Prepare, l.Policy.Threshold, l.leaseSizeMB(), orDash(l.LastDecision))
	fmt.Fprintf(&b, "; %d lease(s) live", len(l.Leases))
	for _, ls := range l.Leases {
		fmt.Fprintf(&b, " (%s until %s, score %s)", ls.Host, ls.Expires.UTC().Format("15:04:05"), ls.Parts())
	}
	if l.preparing != "" {
		fmt.Fprintf(&b, ", preparing %s", l.preparing)
	}
	if !l.NextWake.IsZero() {
		fmt.Fprintf(&b, "; next wake %s UTC: %s", l.NextWake.UTC().Format("15:04:05"), orDash(l.WakeReason))
	}
	if l.Router {
		fmt.Fprintf(&b, "; arrivals recorded by the router, woken early %d times", l.Stats.Woken)
	}
	fmt.Fprintf(&b, "; model %s.", orDash(l.ModelVersion))
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
	st := LoopStatus{
		App: l.App, State: l.state(), Bin: l.Bin, Policy: l.Policy, Profile: l.Profile,
		Recent: slices.Clone(l.Recent), Pending: l.Pending, NextTick: l.NextTick,
		LastProbability: l.LastProbability, LastDecision: l.LastDecision, ModelVersion: l.ModelVersion,
		LastError: l.LastError, Leases: slices.Clone(l.Leases), Preparing: l.preparing,
		Adjustments: maps.Clone(l.Adjustments), Stats: l.Stats, Runs: l.Runs,
		Holding: l.Holding, NextWake: l.NextWake, WakeReason: l.WakeReason, Router: l.Router,
		LeaseSizeMB: l.leaseSizeMB(), Thresholds: l.thresholds(),
	}
	return st
}

// thresholds are the application's effective thresholds under the policy,
// for an instance of the lease size, on the model's bin width.
func (l *loop) thresholds() policy.Thresholds {
	_, bin := l.Clock.Map(time.Time{}, l.Bin)
	return l.Policy.Config().For(policy.App{MemoryMB: l.leaseSizeMB()}, bin)
}

// leaseSizeMB sizes the application's instance from its recent requests.
func (l *loop) leaseSizeMB() float64 {
	return l.Policy.Config().LeaseSizeMB(l.Sizes, l.Profile.MemoryMB)
}
