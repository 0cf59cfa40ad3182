package wire

import (
	"time"

	"github.com/forewarm/forewarm/models/affinity/score"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// Non-retryable application error types. Workflows match on these names,
// so they are constants and part of the contract.
const (
	ErrNoModel      = "NoModel"      // no champion model, or it fails to load
	ErrBadInput     = "BadInput"     // an input a retry cannot fix
	ErrHostRejected = "HostRejected" // a host refused for good (capacity, bad request)
	ErrNoHosts      = "NoHosts"      // no live host to prepare or serve on
	ErrNotEnough    = "NotEnoughData"
)

// Lease is a validated reservation on a host, held by a prediction loop.
type Lease struct {
	LeaseID  string // what the host knows the reservation by: workflows.LeaseID, <app>.<bin unix seconds>.<host>
	App      string
	Host     string
	HostURL  string
	MemoryMB float64
	DiskMB   float64
	CPUMilli int64
	Reserved time.Time
	Expires  time.Time
	ShadowMS float64
	Score    float64 // expected affinity when prepared: clamp(ModelScore + Adjusted, 0, 1)
	Adjusted float64 // the adjustment part of Score
	// ModelScore is the affinity model's part of Score (0 in leases of
	// loops from before it was kept).
	ModelScore float64
	ModelVers  string // affinity model version that scored the host
}

// ForecastInput asks the champion demand model for the chance of a
// request in each of the next Bins bins along the path where none arrives,
// and the policy's decisions along it. One local activity per wake.
type ForecastInput struct {
	App    string
	Counts []float64     // closed bins, oldest first
	Next   time.Time     // start of the bin decided now, on the model's timeline
	Bin    time.Duration // the model's bin width
	Bins   int           // bins to forecast (>= 1; 1 decides this bin only)
	// Held says the application holds an instance as the bin begins.
	Held       bool
	Thresholds policy.Thresholds
	// Policy, when set, decides through policy.Config.Decide with these
	// settings, for an instance of MemoryMB, from the application's
	// activity over the model's window of Counts; nil: the expected-value
	// rule of Thresholds alone (loops from before the setting).
	Policy    *policy.Config
	MemoryMB  float64
	Lookahead int  // policy.Config.LookaheadBins: the longest hold planned
	DryRun    bool // recorded as such
	// MaxSleep, when > 0, bounds the next wake: at most MaxSleep bins
	// ahead; a held instance's lease is then planned that far too (not
	// only Lookahead), so the loop need not wake earlier to extend it.
	// 0: within Bins (loops from before the bound).
	MaxSleep int
	// LeaseBin is the width of the loop's own bins, in which its leases
	// live, when it differs from Bin (a loop on a trace clock); 0: Bin.
	// A lease is planned no further than a host agent keeps it
	// (MaxLeaseBins of it).
	LeaseBin time.Duration
	// Router, when set, reads the counts from the worker's arrival Mirror
	// instead of Counts, and registers the plan with its Watch.
	Router *RouterInput
	// Due is when the decision was due (live time; zero: its lag is not
	// measured) and
	// Decided how many bins the wake settles (the bins slept through since
	// the last, and this one), for the worker's decision metrics.
	Due     time.Time
	Decided int
}

// RouterInput places a router-mode loop's wake on the live bins its
// arrivals are recorded on.
type RouterInput struct {
	Start  time.Time     // start of the bin decided (live)
	Bin    time.Duration // the loop's bin (live)
	Window int           // bins of history the model gets
	// Since is the start of the first bin the loop has not read yet (zero:
	// none read): the result's Counts are the bins since.
	Since time.Time
	// Seed, for a loop on a trace clock, is its history of the bins before
	// SeedEnd (the clock's start, a bin boundary), which the router cannot
	// have recorded: the mirror reads it for those bins (Mirror.Seed).
	// Empty once the window no longer reaches back before SeedEnd.
	Seed    []float64
	SeedEnd time.Time
}

// ForecastResult is the path and what the policy makes of it.
type ForecastResult struct {
	// Path is P(request in bin j from now | none before), j < Bins; with
	// MaxSleep, only as far as the loop reads it: the first bin, and when
	// the policy acts next, the lookahead from there.
	Path   []float64
	Action policy.Action
	// HoldBins is how many bins from now the application stays held if no
	// request arrives (0 when the action does not hold).
	HoldBins int
	// NextChange is how many bins from now the loop must decide again if no
	// request arrives (1..Bins): the decisions before it are known.
	NextChange int
	// Until says why the next decision falls there: one of the Wake*
	// reasons below.
	Until        string
	ModelVersion string
	HistoryBins  int // bins of history the model can use: the loop keeps as many
	// Counts, in router mode, are the bins [Router.Since, Router.Start) as
	// recorded (at most Router.Window of them), for the loop's own history.
	Counts Counts
	// Held says whether the application held an instance as the bin began
	// (in router mode the last bin's requests are known only here).
	Held bool
	// Ahead, from a decision through Policy, is what the policy does at
	// NextChange if no request arrives before it: the loop prepares ahead
	// of that bin when it prepares. Nil from the expected-value rule alone.
	Ahead *Ahead
}

// Ahead is the decision at a loop's next change.
type Ahead struct {
	Prepare  bool // the policy prepares then
	HoldBins int  // and holds that many bins from there (within the lookahead)
}

// Why a loop's next decision falls where it does (ForecastResult.Until).
const (
	UntilChange = "change" // the policy acts then
	UntilHold   = "hold"   // the lease is planned that far: extend it
	UntilBound  = "bound"  // MaxSleep: a new model reaches the loop by then
	UntilEnd    = "end"    // the end of the forecast (loops from before the bound)
	// UntilWatch: a held router-mode loop sleeps past its planned release
	// while requests are likely to keep it; the worker's arrival watch
	// wakes it when it should let go (see activities.Plan.ReleaseAt).
	UntilWatch = "watch"
)

// SeedInput asks for what a loop needs once, when it first starts.
type SeedInput struct {
	App  string
	End  time.Time
	Bins int
	Bin  time.Duration
}

// SeedResult is the recent activity, profile and adjustments of one app.
type SeedResult struct {
	Counts       []float64
	Profile      AppProfile
	ProfileKnown bool
	Adjustments  map[string]float64
}

// RankInput asks for the hosts best suited to an application.
type RankInput struct {
	Profile     AppProfile
	Adjustments map[string]float64 // host -> observed adjustment
	Exclude     []string
}

// HostCandidate is one ranked host, with the parts of its score
// (score.Parts).
type HostCandidate struct {
	Host       string
	URL        string
	ModelScore float64 // the affinity model's score
	Adjustment float64 // observed for this (app, host) pair
	Score      float64 // clamp(ModelScore + Adjustment, 0, 1)
	FreeMemMB  float64
}

// Parts is the lease's expected score and what it is made of.
func (l Lease) Parts() score.Parts {
	return score.Parts{Model: l.ModelScore, Adjustment: l.Adjusted, Score: l.Score}
}

// Parts is the candidate's score and what it is made of.
func (c HostCandidate) Parts() score.Parts {
	return score.Parts{Model: c.ModelScore, Adjustment: c.Adjustment, Score: c.Score}
}

// RejectedHost is a live host the capacity filter dropped, and why.
type RejectedHost struct {
	Host   string
	Reason string
}

// RankResult is every live host that can take the application, best
// first, and those that cannot.
type RankResult struct {
	Candidates   []HostCandidate
	Rejected     []RejectedHost
	ModelVersion string
}

// ReserveInput reserves resources on one host.
type ReserveInput struct {
	LeaseID   string
	App       string
	Candidate HostCandidate
	MemoryMB  float64
	DiskMB    float64
	CPUMilli  int64
	TTL       time.Duration
}

// ReserveResult is the reservation as the host granted it.
type ReserveResult struct {
	Reserved time.Time
	Expires  time.Time
}

// ExtendInput sets a live lease's expiry to now + TTL on its host, in
// place.
type ExtendInput struct {
	LeaseID string
	App     string
	Host    string
	HostURL string
	TTL     time.Duration
}

// ExtendResult is the new expiry, or why the host refused: Gone when it no
// longer holds the lease (the loop forgets it), otherwise Reason (e.g.
// still preparing).
type ExtendResult struct {
	Extended bool
	Expires  time.Time
	Gone     bool
	Reason   string
}

// ShadowInput runs a small slice of the expected work on a reservation.
type ShadowInput struct {
	LeaseID   string
	App       string
	Host      string
	HostURL   string
	ReadRatio float64
	SampleMB  float64
	MaxMS     float64 // slower than this counts as a failed validation
}

// ShadowResult says whether the reservation proved ready.
type ShadowResult struct {
	OK       bool
	ShadowMS float64
	Reason   string
}

// ReleaseInput gives a reservation back and records why.
type ReleaseInput struct {
	LeaseID     string
	App         string
	Host        string
	HostURL     string
	Event       string // released | expired | failed
	Reason      string
	MemoryMB    float64
	DiskMB      float64
	CPUMilli    int64
	HeldSeconds float64
}

// ReleaseResult says whether the host still held the reservation and, from
// the host, what the lease did as a warm instance.
type ReleaseResult struct {
	WasHeld        bool
	RequestsServed int64
	BusyMBs        float64 // memory-time with a request running on it
	IdleMBs        float64 // memory-time ready with none
	Fallbacks      int64   // requests naming it served cold (busy or too small)
}

// ServeInput runs one request on one host: what the host is asked
// (HostServing: with LeaseID the request runs warm on that lease; when the
// lease is busy, too small or gone the host serves cold; KeepID and KeepTTL,
// both or neither, ask the host to keep a cold instance as a new lease of
// the application, sized Keep* where larger than the request), and where.
// LeaseStays says the caller treats the lease as a warm instance that goes
// on serving (it releases it later); without it the activity releases the
// lease after the request, as loops written before warm instances expect
// of a claim.
type ServeInput struct {
	HostServing
	Host       string
	HostURL    string
	LeaseStays bool
}

// ServeResult is what the host measured (HostServed): FallbackCode says
// why a request naming a lease ran cold; Kept, KeptExpires and KeepRefused
// answer a keep; Replayed marks the first result of a retried request.
type ServeResult = HostServed

// ClaimInput asks the application's loop for a lease.
type ClaimInput struct {
	App       string
	RequestID string
	// CountArrival lets the loop count the request as arrived when it
	// claims (then the observation signal is needed only to adjust).
	CountArrival bool
	SizeMB       float64   // the request's size: the loop sizes its leases from them
	ArrivedAt    time.Time // when the request arrived: the loop counts it in that bin
}

// ClaimResult is the lease claimed, if any: the answer of the loop's
// claim-lease update (workflows.ClaimUpdateResult is this type), with
// LoopRunning set by the claimer.
type ClaimResult struct {
	Found       bool
	LoopRunning bool // a loop answered (false: no loop for the application)
	Lease       Lease
	Adjustments map[string]float64 // the loop's host adjustments, for a cold ranking
	// Stays: the lease goes on serving after this request (warm instance).
	Stays bool
	// Keep asks a cold request's host to keep its instance as a lease.
	Keep *KeepPlan
	// WaitedMS is how long the claim waited for the instance being prepared.
	WaitedMS float64
}

// KeepPlan is how a cold request's instance is kept as a lease: its ID on
// the host, its TTL and size (a lease sized for the application, not for
// the one request).
type KeepPlan struct {
	LeaseID  string
	TTL      time.Duration
	MemoryMB float64
	DiskMB   float64
	CPUMilli int64
}

// RecordRequestInput is one served request and its adjustment, if any.
type RecordRequestInput struct {
	Request    records.Request
	Claimed    *records.PreparationEvent
	Adjustment *records.Adjustment
}

// RecordRequestResult is empty; fields may be added.
type RecordRequestResult struct{}
