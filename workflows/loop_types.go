package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/policy"
)

// Policy is how one application's loop decides and prepares. The decision
// itself is package policy's (Config); the rest says how a decision is
// carried out.
type Policy struct {
	// Threshold is the chance of a request in a bin at which an application
	// of ReferenceMB is held through it (policy.Config.Threshold); larger
	// applications need more, smaller ones less.
	Threshold      float64
	ReferenceMB    float64 // see policy.Config
	PrepareSeconds float64 // see policy.Config
	LookaheadBins  int     // see policy.Config: the longest the loop sleeps and a lease is planned
	SizePercentile float64 // see policy.Config
	// What a cold start is worth and who the forecast is trusted for (see
	// policy.Config); all zero in loops started before them, which decide
	// by the expected-value rule alone.
	Objective               policy.Objective
	ReferenceRequestsPerDay float64
	KeepAliveBins           int
	FallbackBins            int
	TrustGaps               int
	TopN                    int     // hosts to prepare per preparation
	Paused                  bool    // no predictions, no preparations; activity still counted
	DryRun                  bool    // predict and record, prepare nothing
	MaxShadowMS             float64 // a slower shadow request fails the host
	SampleMB                float64 // size of the shadow request's work
	// Ticking decides at every bin instead of sleeping until the policy
	// could act; the decisions are the same, the cost is not.
	Ticking bool
	// MaxSleepBins bounds how long the loop sleeps between decisions, so a
	// new champion model reaches it within that many bins (0: the default,
	// DefaultMaxSleepBins). A held instance's lease is planned that far
	// ahead too: the bound is also how long a lost loop's instance lives.
	MaxSleepBins int

	// Read by the loop from before the policy package, now retired; kept
	// because clients and carried inputs still name them (Validate refuses
	// them, a start input with them is upgraded).
	HorizonBins int           // bins a prediction looked ahead
	LeaseTTL    time.Duration // 0: HorizonBins bins
}

// DefaultPolicy is what `starter loop start` uses without flags.
func DefaultPolicy() Policy {
	c := policy.Default()
	return Policy{Threshold: c.Threshold, ReferenceMB: c.ReferenceMB, PrepareSeconds: c.PrepareSeconds,
		LookaheadBins: c.LookaheadBins, SizePercentile: c.SizePercentile,
		Objective: c.Objective, ReferenceRequestsPerDay: c.ReferenceRequestsPerDay, KeepAliveBins: c.KeepAliveBins,
		FallbackBins: c.FallbackBins, TrustGaps: c.TrustGaps,
		TopN: 1, MaxShadowMS: 500, SampleMB: 8, MaxSleepBins: DefaultMaxSleepBins}
}

// DefaultMaxSleepBins is an hour of one-minute bins: the longest a loop
// goes without asking the model, so a newly published champion reaches
// every loop within it.
const DefaultMaxSleepBins = 60

// maxSleep is the bound on the sleep in bins.
func (p Policy) maxSleep() int {
	if p.MaxSleepBins > 0 {
		return p.MaxSleepBins
	}
	return DefaultMaxSleepBins
}

// Config is the decision part of the policy.
func (p Policy) Config() policy.Config {
	return policy.Config{Threshold: p.Threshold, ReferenceMB: p.ReferenceMB, PrepareSeconds: p.PrepareSeconds,
		LookaheadBins: p.LookaheadBins, SizePercentile: p.SizePercentile,
		Objective: p.Objective, ReferenceRequestsPerDay: p.ReferenceRequestsPerDay, KeepAliveBins: p.KeepAliveBins,
		FallbackBins: p.FallbackBins, TrustGaps: p.TrustGaps}
}

// legacy says p was written for a loop from before the policy package:
// none of the policy package's fields are set.
func (p Policy) legacy() bool {
	return p.ReferenceMB == 0 && p.LookaheadBins == 0 && p.SizePercentile == 0
}

// upgraded is a legacy policy with the policy package's defaults; the
// threshold meant something else (P of a request within the horizon) and
// takes the default too.
func (p Policy) upgraded() Policy {
	d := DefaultPolicy()
	p.Threshold, p.ReferenceMB, p.PrepareSeconds, p.LookaheadBins, p.SizePercentile = d.Threshold, d.ReferenceMB, d.PrepareSeconds, d.LookaheadBins, d.SizePercentile
	// Decided by the expected-value rule as it did; the newer settings
	// are for loops started with them.
	p.HorizonBins, p.LeaseTTL = 0, 0
	return p
}

// ValidateThreshold refuses what no probability can be compared with.
func ValidateThreshold(v float64) error {
	l := policy.Limits
	if !(v >= l.MinThreshold && v <= l.MaxThreshold) {
		return fmt.Errorf("threshold %v is outside [%g, %g]", v, l.MinThreshold, l.MaxThreshold)
	}
	return nil
}

// Limits of the fields Validate checks beyond the policy package's. What a
// host agent accepts (sizes, the shadow sample, a lease's life) is not
// repeated here: Validate reads it from package agent/api, which the agent
// itself enforces.
const (
	MaxTopN = 16
	// MaxShadowMSLimit bounds MaxShadowMS: a shadow slower than a minute
	// proves nothing about readiness.
	MaxShadowMSLimit = 60_000
)

// Validate says what is wrong with a policy, all problems at once, each
// naming its field. ValidateFor adds what depends on the bin width.
func (p Policy) Validate() error {
	errs := []error{p.Config().Validate()}
	if p.TopN < 1 || p.TopN > MaxTopN {
		errs = append(errs, fmt.Errorf("TopN %d is outside [1, %d]", p.TopN, MaxTopN))
	}
	if !(p.MaxShadowMS > 0 && p.MaxShadowMS <= MaxShadowMSLimit) {
		errs = append(errs, fmt.Errorf("MaxShadowMS %v is outside (0, %d]", p.MaxShadowMS, MaxShadowMSLimit))
	}
	if !(p.SampleMB >= 0 && p.SampleMB <= api.MaxSampleMB) {
		errs = append(errs, fmt.Errorf("SampleMB %v is outside [0, %d], what a host agent samples at most", p.SampleMB, api.MaxSampleMB))
	}
	if p.HorizonBins != 0 {
		errs = append(errs, fmt.Errorf("HorizonBins %d: only loops from before the policy package read it; use LookaheadBins", p.HorizonBins))
	}
	if p.LeaseTTL != 0 {
		errs = append(errs, fmt.Errorf("LeaseTTL %v: only loops from before the policy package read it; leases live as long as the policy holds them", p.LeaseTTL))
	}
	if p.MaxSleepBins < 0 || p.MaxSleepBins > policy.Limits.MaxLookahead {
		errs = append(errs, fmt.Errorf("max sleep %d bins is outside [0, %d] (0: %d)", p.MaxSleepBins, policy.Limits.MaxLookahead, DefaultMaxSleepBins))
	}
	return errors.Join(errs...)
}

// ValidateFor is Validate for a loop of the given bin width: every lease
// the loop asks a host for must live between what a host agent accepts
// (api.MinTTL, api.MaxTTL). A held instance's lease is planned as far as
// the loop may sleep (the longer of LookaheadBins and MaxSleepBins, which
// is DefaultMaxSleepBins when 0), and lives that long plus its grace and
// lead (wire.MaxLeaseBins says how many bins fit). A policy whose
// leases would be longer is refused, naming the settings to lower and how
// far: every host would refuse its reserves, and its extends while the
// loop sleeps through a planned hold.
func (p Policy) ValidateFor(bin time.Duration) error {
	return p.validateFor(bin, true)
}

// validateFor is ValidateFor; without leaseBound, the check of loops from
// before it (versionLeaseBound), which bounded LookaheadBins+2 bins only.
func (p Policy) validateFor(bin time.Duration, leaseBound bool) error {
	errs := []error{p.Validate(), ValidateBin(bin)}
	switch {
	case bin < api.MinTTL:
	case leaseBound:
		errs = append(errs, p.validateLease(bin))
	default:
		if longest := time.Duration(p.LookaheadBins+2) * bin; p.LookaheadBins > 0 && (longest > api.MaxTTL || longest/bin != time.Duration(p.LookaheadBins+2)) {
			errs = append(errs, fmt.Errorf("LookaheadBins %d at %v bins: a lease may be asked to live %d bins (%v), beyond the %v a host agent accepts",
				p.LookaheadBins, bin, p.LookaheadBins+2, longest, api.MaxTTL))
		}
	}
	return errors.Join(errs...)
}

// validateLease refuses a policy whose held instance's lease would live
// longer than a host agent accepts at the given bin width.
func (p Policy) validateLease(bin time.Duration) error {
	sleep := p.maxSleep()
	planned := max(1, p.LookaheadBins, sleep)
	fits := wire.MaxLeaseBins(bin)
	if fits < 1 {
		return fmt.Errorf("bin %v: a lease planned a single bin ahead may be asked to live %v with its grace and lead, beyond the %v a host agent accepts; use bins of at most %v",
			bin, wire.LeaseLife(1, bin), api.MaxTTL, wire.MaxLeaseBin)
	}
	if planned <= fits {
		return nil
	}
	var settings, fields []string
	if p.LookaheadBins > fits {
		settings, fields = append(settings, fmt.Sprintf("LookaheadBins %d", p.LookaheadBins)), append(fields, "LookaheadBins")
	}
	if sleep > fits {
		s := fmt.Sprintf("MaxSleepBins %d", p.MaxSleepBins)
		if p.MaxSleepBins != sleep {
			s += fmt.Sprintf(" (the default, %d)", sleep)
		}
		settings, fields = append(settings, s), append(fields, "MaxSleepBins")
	}
	return fmt.Errorf("%s at %v bins: a held instance's lease may be planned %d bins ahead and asked to live %v with its grace and lead, beyond the %v a host agent accepts; lower %s to at most %d",
		strings.Join(settings, " and "), bin, planned, wire.LeaseLife(planned, bin), api.MaxTTL, strings.Join(fields, " and "), fits)
}

// ValidateBin refuses a bin width finer than a second: the shortest lease a
// host agent accepts (api.MinTTL), and about what the server's timers
// resolve, so a loop cannot decide or keep leases at a finer grain.
func ValidateBin(bin time.Duration) error {
	if bin < api.MinTTL {
		return fmt.Errorf("bin %v is shorter than %v, the shortest lease a host agent accepts", bin, api.MinTTL)
	}
	return nil
}

// PolicyChange changes some fields of a policy (nil: unchanged).
type PolicyChange struct {
	Threshold      *float64
	ReferenceMB    *float64
	PrepareSeconds *float64
	LookaheadBins  *int
	SizePercentile *float64
	TopN           *int
	Paused         *bool
	DryRun         *bool
	MaxShadowMS    *float64
	SampleMB       *float64
	Ticking        *bool
	MaxSleepBins   *int
	// Legacy loops only.
	HorizonBins *int
	LeaseTTL    *time.Duration
}

// Apply returns p with the change applied (not validated).
func (c PolicyChange) Apply(p Policy) Policy {
	set(&p.Threshold, c.Threshold)
	set(&p.ReferenceMB, c.ReferenceMB)
	set(&p.PrepareSeconds, c.PrepareSeconds)
	set(&p.LookaheadBins, c.LookaheadBins)
	set(&p.SizePercentile, c.SizePercentile)
	set(&p.TopN, c.TopN)
	set(&p.Paused, c.Paused)
	set(&p.DryRun, c.DryRun)
	set(&p.MaxShadowMS, c.MaxShadowMS)
	set(&p.SampleMB, c.SampleMB)
	set(&p.Ticking, c.Ticking)
	set(&p.MaxSleepBins, c.MaxSleepBins)
	set(&p.HorizonBins, c.HorizonBins)
	set(&p.LeaseTTL, c.LeaseTTL)
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
	Window  int           // bins of recent activity kept: default 1440 (64 in loops from before the policy package), then what the model uses, at most 1440
	Policy  Policy
	Profile wire.AppProfile
	// MaxWakesPerRun continues as new after this many wakes even when the
	// server has not suggested it yet (default 1000).
	MaxWakesPerRun int `was:"MaxTicksPerRun"`
	// FirstSleepBins, when > 0, bounds the sleep after the loop's first
	// decision instead of the policy's bound (at most that bound). A fleet
	// started at once gives each loop a draw in [1, SleepBound], so their
	// bound wakes come spread as a long-running fleet's do instead of in a
	// few bins an hour later (the scale benchmark does). Later sleeps, and
	// continued runs, use the policy's bound.
	FirstSleepBins int

	// Clock, when set, maps the loop's bins onto another timeline for the
	// model's features: a trace replayed live at a compressed bin width
	// (nil: real time, the production case).
	Clock *TraceClock

	// Carried state (zero on the first start).
	Seeded bool // Recent, Profile and Adjustments hold stored history
	// Recent is requests per bin, oldest first, len <= Window (compact in
	// JSON: see wire.Counts).
	Recent  wire.Counts
	Pending float64   // requests observed in the bin now open
	BinEnd  time.Time `was:"NextTick"` // end of the bin now open
	// Holding says the policy holds the application's instance through the
	// open bin (its last decision was prepare or keep). With the requests of
	// the bin it gives whether the application holds an instance as the next
	// bin begins. It is the policy's view; Leases is the hosts'.
	Holding bool
	// NextWake is when the loop decides next (the start of a bin); the
	// policy knows every decision before it, unless a request arrives.
	NextWake   time.Time
	WakeReason string
	// AheadAt, when set, is when the loop starts the preparation its plan
	// makes for AheadBin, so the instance is ready as that bin begins;
	// the lease lives until AheadUntil.
	AheadAt, AheadBin, AheadUntil time.Time
	// Router: the platform's router records the application's requests in
	// the store, per bin and in batches; the loop reads its counts from
	// there at each wake (the worker's arrival mirror, a bulk read per bin)
	// and hears of requests only through SignalWake: from the router for a
	// request that found no warm instance, from the worker's arrival watch
	// for one that changes the next decision. Claims and observations count
	// nothing then. ReadThrough is the start of the first bin not read yet.
	Router      bool
	ReadThrough time.Time
	// SeedEnd, for a router-mode loop on a Clock seeded from a trace, is
	// the clock's start: Recent's bins before it are that history, which
	// the router never recorded (what it recorded at those live times, an
	// earlier replay's, is not this loop's). Zero: no such history.
	SeedEnd time.Time
	// Sizes are the latest request sizes (MB), newest last; leases are sized
	// from them (Policy.SizePercentile).
	Sizes           []float64
	Leases          []wire.Lease
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
	Predictions        int
	PredictErrors      int
	Preparations       int
	PreparationsFailed int
	// PreparationsCancelled were cancelled by a stop or continue-as-new
	// (they release what they reserved).
	PreparationsCancelled int
	LeasesPrepared        int
	Claims                int
	Misses                int // claims that found no lease (cold requests)
	Expired               int
	WastedMBSeconds       float64 // memory held by leases that expired unused
	Requests              float64
	WarmRequests          int
	SkippedBins           int // bins no wake decided (worker down)
	// Policy loops: decisions by outcome (one per bin, known ahead while the
	// loop sleeps), wakes, in-place extensions and instances kept after a
	// cold request.
	Decisions     [4]int // by policy.Action: idle, prepare, keep, release
	Wakes         int    `was:"Ticks"`
	Extends       int
	ExtendsFailed int
	Released      int
	Kept          int
	// Refusals are signals and updates refused for their payload.
	Refusals int
	// Woken counts wake signals that moved the next decision earlier.
	Woken int
	// ClaimsWaited are claims that waited for the preparation in flight
	// (ClaimsWaitedWarm of them got its instance); PreparationMS is the
	// typical time from starting a preparation to its leases in hand
	// (exponentially weighted, 0 before the first).
	ClaimsWaited     int
	ClaimsWaitedWarm int
	PreparationMS    float64
	// LagBuckets counts wake lag (behind the planned wake) per LagBucketBounds.
	LagBuckets [len(LagBucketBoundsMS) + 1]int
	MaxLagMS   float64
	LagMS      float64 // typical lag (exponentially weighted)
}

// LagBucketBoundsMS are the upper bounds of LoopStats.LagBuckets.
var LagBucketBoundsMS = [...]float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}

// LoopResult is what a stopped loop returns.
type LoopResult struct {
	App    string
	Stats  LoopStats
	Reason string
}

// ThresholdSignal sets the threshold. A payload without it, or with one
// out of range, is refused (LastError says why) and the loop goes on.
type ThresholdSignal struct {
	Threshold float64 `payload:"required"`
}

// PolicySignal changes the policy; a change that names no field or leaves
// the policy invalid is refused as a whole.
type PolicySignal struct {
	Change PolicyChange `payload:"required"`
}

// ObservationSignal tells the loop a request arrived and how it went.
type ObservationSignal struct {
	RequestID string  `payload:"required"`
	Count     float64 // requests this observation stands for (default 1)
	Host      string
	Warm      bool
	LatencyMS float64
	SizeMB    float64 // the request's size, for sizing leases (0: unknown)
	// At is when the request arrived; it is counted in that bin even when
	// the signal comes after the bin closed (zero: when received).
	At time.Time
	// Adjustment, when set, is the host's new affinity adjustment.
	Adjustment *float64
	// Claimed: the request was already counted by its claim.
	Claimed bool
	// Kept is the instance a cold request left behind as a lease of the
	// application (the loop decides at the next bin whether to keep it).
	// Read leniently: a field of Lease this release does not know is
	// skipped, not refused (see decodeStrict).
	Kept *wire.Lease `payload:"lenient"`
	// Gone names leases that failed to serve: the loop stops using them.
	Gone []string
}

// check refuses observations no request can produce.
func (o *ObservationSignal) check() error {
	switch {
	case !(o.Count >= 0 && o.Count <= 1e9):
		return fmt.Errorf("field Count: %v is outside [0, 1e9]", o.Count)
	case !(o.SizeMB >= 0 && o.SizeMB <= maxRequestMB):
		return fmt.Errorf("field SizeMB: %v is outside [0, %d]", o.SizeMB, maxRequestMB)
	case !(o.LatencyMS >= 0):
		return fmt.Errorf("field LatencyMS: %v is negative", o.LatencyMS)
	case o.Adjustment != nil && !(*o.Adjustment >= -1 && *o.Adjustment <= 1):
		return fmt.Errorf("field Adjustment: %v is outside [-1, 1]", *o.Adjustment)
	case len(o.Gone) > maxGone:
		return fmt.Errorf("field Gone: %d leases, at most %d", len(o.Gone), maxGone)
	case o.Kept != nil && (o.Kept.LeaseID == "" || o.Kept.HostURL == ""):
		return errors.New("field Kept: a kept lease needs its LeaseID and HostURL")
	case o.Kept != nil && !(o.Kept.MemoryMB > 0 && o.Kept.MemoryMB <= maxRequestMB):
		return fmt.Errorf("field Kept.MemoryMB: %v is outside (0, %d]", o.Kept.MemoryMB, maxRequestMB)
	}
	return nil
}

// maxGone bounds the leases one observation can name as gone: one request
// claims one lease.
const maxGone = 16

// WakeSignal asks the loop to decide the bin that starts at Bin (zero: the
// bin after the one now open) because a request may have changed what it
// planned: a platform's router sends it for a request that found no warm
// instance, the worker's arrival watch for router-mode loops (see
// resident.Watch). A bin already decided is not decided again. Both
// fields are required (Bin may be the zero time, Reason empty).
type WakeSignal struct {
	Bin    time.Time `payload:"required"`
	Reason string    `payload:"required"`
}

// check refuses a reason too long to show.
func (w *WakeSignal) check() error {
	if len(w.Reason) > 200 {
		return fmt.Errorf("field Reason: %d bytes, more than 200", len(w.Reason))
	}
	return nil
}

// StopSignal stops the loop: in-flight preparation cancelled, leases
// released. The reason is required (it may be empty): a payload that names
// no field is refused like any other.
type StopSignal struct {
	Reason string `payload:"required"`
}

// StateQuery asks for the whole state (no fields yet).
type StateQuery struct{}

// LoopStatus is the answer to QueryState.
type LoopStatus struct {
	App             string
	State           string
	Bin             time.Duration
	Policy          Policy
	Profile         wire.AppProfile
	Recent          []float64
	Pending         float64
	BinEnd          time.Time `was:"NextTick"`
	Holding         bool
	NextWake        time.Time
	WakeReason      string
	LeaseSizeMB     float64
	Thresholds      policy.Thresholds
	LastProbability float64
	LastDecision    string
	ModelVersion    string
	LastError       string
	Leases          []wire.Lease
	Preparing       string
	Adjustments     map[string]float64
	Stats           LoopStats
	Runs            int
	Router          bool // arrivals recorded by the router (LoopInput.Router)
}

// PolicyUpdate changes the policy through an Update (validated, answered).
type PolicyUpdate struct {
	Change PolicyChange `payload:"required"`
}

// PolicyUpdateResult is the policy before and after.
type PolicyUpdateResult struct{ Previous, Current Policy }

// ClaimUpdate asks for the best live lease for one request.
type ClaimUpdate struct {
	RequestID string `payload:"required"`
	// CountArrival counts the request in the open bin (ServeRequest always
	// sets it; a claim without it counts nothing).
	CountArrival bool
	SizeMB       float64   // the request's size (0: unknown)
	ArrivedAt    time.Time // when the request arrived (zero: when the claim is handled)
}

// check refuses claims no request can make.
func (c *ClaimUpdate) check() error {
	switch {
	case c.RequestID == "":
		return errors.New("field RequestID is empty")
	case !(c.SizeMB >= 0 && c.SizeMB <= maxRequestMB):
		return fmt.Errorf("field SizeMB: %v is outside [0, %d]", c.SizeMB, maxRequestMB)
	}
	return nil
}

// ClaimUpdateResult is the claim-lease update's answer: the lease, or
// Found=false (serve cold). It is the claim activity's result as well
// (wire.ClaimResult: one type), whose LoopRunning the claimer sets.
type ClaimUpdateResult = wire.ClaimResult

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
