package workflows

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/forewarm/forewarm/activities"
)

// Policy is how one application's loop decides and prepares.
type Policy struct {
	Threshold   float64       // prepare when P >= Threshold
	HorizonBins int           // bins a prediction looks ahead; a lease must cover them
	TopN        int           // hosts to prepare per preparation
	LeaseTTL    time.Duration // 0: HorizonBins bins
	Paused      bool          // no predictions, no preparations; activity still counted
	DryRun      bool          // predict and record, prepare nothing
	MaxShadowMS float64       // a slower shadow request fails the host
	SampleMB    float64       // size of the shadow request's work
}

// DefaultPolicy is what `starter loop start` uses without flags.
func DefaultPolicy() Policy {
	return Policy{Threshold: 0.5, HorizonBins: 5, TopN: 1, MaxShadowMS: 500, SampleMB: 8}
}

// ValidateThreshold refuses what no probability can be compared with.
func ValidateThreshold(v float64) error {
	if math.IsNaN(v) || v < 0 || v > 1 {
		return fmt.Errorf("threshold %v is outside [0, 1]", v)
	}
	return nil
}

// Validate says what is wrong with a policy, all problems at once.
func (p Policy) Validate() error {
	var errs []error
	if err := ValidateThreshold(p.Threshold); err != nil {
		errs = append(errs, err)
	}
	if p.HorizonBins < 1 || p.HorizonBins > 1440 {
		errs = append(errs, fmt.Errorf("horizon %d bins is outside [1, 1440]", p.HorizonBins))
	}
	if p.TopN < 1 || p.TopN > 16 {
		errs = append(errs, fmt.Errorf("top-N %d is outside [1, 16]", p.TopN))
	}
	if p.LeaseTTL < 0 {
		errs = append(errs, fmt.Errorf("lease TTL %v is negative", p.LeaseTTL))
	}
	if math.IsNaN(p.MaxShadowMS) || p.MaxShadowMS < 0 {
		errs = append(errs, fmt.Errorf("max shadow %v ms is negative", p.MaxShadowMS))
	}
	if math.IsNaN(p.SampleMB) || p.SampleMB < 0 {
		errs = append(errs, fmt.Errorf("shadow sample %v MB is negative", p.SampleMB))
	}
	return errors.Join(errs...)
}

// TTL is the lease lifetime for a bin width.
func (p Policy) TTL(bin time.Duration) time.Duration {
	if p.LeaseTTL > 0 {
		return p.LeaseTTL
	}
	return time.Duration(p.HorizonBins) * bin
}

// PolicyChange changes some fields of a policy (nil: unchanged).
type PolicyChange struct {
	Threshold   *float64
	HorizonBins *int
	TopN        *int
	LeaseTTL    *time.Duration
	Paused      *bool
	DryRun      *bool
	MaxShadowMS *float64
	SampleMB    *float64
}

// Apply returns p with the change applied (not validated).
func (c PolicyChange) Apply(p Policy) Policy {
	set(&p.Threshold, c.Threshold)
	set(&p.HorizonBins, c.HorizonBins)
	set(&p.TopN, c.TopN)
	set(&p.LeaseTTL, c.LeaseTTL)
	set(&p.Paused, c.Paused)
	set(&p.DryRun, c.DryRun)
	set(&p.MaxShadowMS, c.MaxShadowMS)
	set(&p.SampleMB, c.SampleMB)
	return p
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// LoopInput starts a prediction loop, and is also everything a loop carries
// across continue-as-new: the loop's whole state is this one struct.
type LoopInput struct {
	App     string
	Bin     time.Duration // 1 s in demos and tests, 1 min in production
	Window  int           // bins of recent activity kept (default 60)
	Policy  Policy
	Profile activities.AppProfile
	// MaxTicksPerRun continues as new after this many ticks even when the
	// server has not suggested it yet (default 1000).
	MaxTicksPerRun int

	// Clock, when set, maps the loop's bins onto another timeline for the
	// model's features: a trace replayed live at a compressed bin width
	// (nil: real time, the production case).
	Clock *TraceClock

	// Carried state (zero on the first start).
	Seeded          bool      // Recent, Profile and Adjustments hold stored history
	Recent          []float64 // requests per bin, oldest first, len <= Window
	Pending         float64   // requests observed in the bin now open
	NextTick        time.Time // end of the bin now open
	Leases          []activities.Lease
	Adjustments     map[string]float64 // host -> observed affinity adjustment
	LastProbability float64
	LastDecision    string
	ModelVersion    string
	LastError       string
	Stats           LoopStats
	Runs            int // continue-as-new count
}

// LoopStats are the loop's counters since it was first started.
type LoopStats struct {
	Ticks              int
	Predictions        int
	PredictErrors      int
	Preparations       int
	PreparationsFailed int
	LeasesPrepared     int
	Claims             int
	Misses             int // claims that found no lease (cold requests)
	Expired            int
	WastedMBSeconds    float64 // memory held by leases that expired unused
	Requests           float64
	WarmRequests       int
	SkippedBins        int // bins the loop could not tick (worker down)
	// LagBuckets counts tick lag (behind the bin's end) per LagBucketBounds.
	LagBuckets [len(LagBucketBoundsMS) + 1]int
	MaxLagMS   float64
}

// LagBucketBoundsMS are the upper bounds of LoopStats.LagBuckets.
var LagBucketBoundsMS = [...]float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}

// LoopResult is what a stopped loop returns.
type LoopResult struct {
	App    string
	Stats  LoopStats
	Reason string
}

// ThresholdSignal sets the threshold (invalid values are logged and ignored).
type ThresholdSignal struct{ Threshold float64 }

// PolicySignal changes the policy (an invalid result is logged and ignored).
type PolicySignal struct{ Change PolicyChange }

// ObservationSignal tells the loop a request arrived and how it went.
type ObservationSignal struct {
	RequestID string
	Count     float64 // requests this observation stands for (default 1)
	Host      string
	Warm      bool
	LatencyMS float64
	// Adjustment, when set, is the host's new affinity adjustment.
	Adjustment *float64
	// Claimed: the request was already counted by its claim.
	Claimed bool
}

// StopSignal stops the loop: in-flight preparation cancelled, leases released.
type StopSignal struct{ Reason string }

// StateQuery asks for the whole state (no fields yet).
type StateQuery struct{}

// LoopStatus is the answer to QueryState.
type LoopStatus struct {
	App             string
	State           string
	Bin             time.Duration
	Policy          Policy
	Profile         activities.AppProfile
	Recent          []float64
	Pending         float64
	NextTick        time.Time
	LastProbability float64
	LastDecision    string
	ModelVersion    string
	LastError       string
	Leases          []activities.Lease
	Preparing       string
	Adjustments     map[string]float64
	Stats           LoopStats
	Runs            int
}

// PolicyUpdate changes the policy through an Update (validated, answered).
type PolicyUpdate struct{ Change PolicyChange }

// PolicyUpdateResult is the policy before and after.
type PolicyUpdateResult struct{ Previous, Current Policy }

// ClaimUpdate claims the best live lease for one request.
type ClaimUpdate struct {
	RequestID string
	// CountArrival counts the request in the open bin (lean serve-request
	// workflows; older ones count through their observation signal).
	CountArrival bool
}

// ClaimUpdateResult holds the lease, or Found=false (serve cold). It carries
// the loop's adjustments so a cold request ranks hosts the same way.
type ClaimUpdateResult struct {
	Found       bool
	Lease       activities.Lease
	Adjustments map[string]float64
}

// TraceClock maps live bins onto a trace's bins: the live bin that starts at
// RealStart stands for the trace bin that starts at TraceStart, and every
// live bin after it advances the trace by TraceBin. A demo replays a day of
// one-minute bins at one-second bins, and the model, trained on one-minute
// bins, sees the trace's time of day and bin width.
type TraceClock struct {
	RealStart  time.Time
	TraceStart time.Time
	TraceBin   time.Duration
}

// Map gives the trace time and bin width of the live bin starting at binStart.
func (c *TraceClock) Map(binStart time.Time, bin time.Duration) (time.Time, time.Duration) {
	if c == nil || bin <= 0 || c.TraceBin <= 0 {
		return binStart, bin
	}
	bins := binStart.Sub(c.RealStart) / bin
	return c.TraceStart.Add(bins * c.TraceBin), c.TraceBin
}
