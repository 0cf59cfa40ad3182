// Package workflows is Forewarm's deterministic orchestration: the
// per-application prediction loop, the preparation of host leases, the
// serve-request workflow and the training workflow. Every Temporal name is
// in names.go; every side effect is an activity in package activities,
// which workflow code reaches only through the pure package
// activities/wire (register.go declares the activities' signatures).
package workflows

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
)

const (
	defaultWindow         = 1440 // a day of one-minute bins: the demand model's idle-time history
	defaultMaxWakesPerRun = 1000
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

// setup checks and completes the input, then registers the handlers.
func (l *loop) setup(ctx workflow.Context) error {
	if l.App == "" {
		return temporal.NewNonRetryableApplicationError("loop input has no App", wire.ErrBadInput, nil)
	}
	if err := ValidateBin(l.Bin); err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("loop %s: %v", l.App, err), wire.ErrBadInput, nil)
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
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("loop %s: policy: %v", l.App, err), wire.ErrBadInput, nil)
	}
	if l.Window <= 0 {
		l.Window = defaultWindow
	}
	if l.MaxWakesPerRun <= 0 {
		l.MaxWakesPerRun = defaultMaxWakesPerRun
	}
	if l.Adjustments == nil {
		l.Adjustments = map[string]float64{}
	}
	l.Profile.App = l.App
	l.log = log.With(workflow.GetLogger(ctx), "app", l.App)
	return l.handlers(ctx)
}

// seed loads the recent activity, the profile and the adjustments once. A
// failure is not fatal: the loop starts from zeros and learns as it goes.
func (l *loop) seed(ctx workflow.Context) {
	end := workflow.Now(ctx).Truncate(l.Bin)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
		Summary: fmt.Sprintf("load %s's last %d bins of %s before %s, its profile and adjustments",
			l.App, l.Window, l.Bin, end.UTC().Format("15:04:05")),
	})
	var res wire.SeedResult
	err := workflow.ExecuteActivity(actx, ActivitySeed, wire.SeedInput{App: l.App, End: end, Bins: l.Window, Bin: l.Bin}).Get(ctx, &res)
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

func (l *loop) push(v float64) {
	l.Recent = append(l.Recent, v)
	if over := len(l.Recent) - l.Window; over > 0 {
		l.Recent = append(l.Recent[:0:0], l.Recent[over:]...)
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
