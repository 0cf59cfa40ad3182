// Package records holds the records Forewarm writes to its metric store, and
// the one constant of each event kind, request outcome and decision they
// carry. The store owns them (store.Prediction is records.Prediction); the
// activities and workflows build them; nothing else copies them. The
// package depends on nothing, so workflow code can use it.
package records

import "time"

// Prediction is one decision of a prediction loop.
type Prediction struct {
	Time         time.Time `json:"time"`
	App          string    `json:"app"`
	Bin          time.Time `json:"bin"` // start of the bin decided
	Probability  float64   `json:"probability"`
	Threshold    float64   `json:"threshold"`
	ModelVersion string    `json:"model_version"`
	// Decision is a policy action's name (policy.Action.String(): prepare,
	// keep, release, none), one of the Decision constants of loops
	// written before the policy, either prefixed "dry-run:" in a dry run.
	Decision string `json:"decision"`
}

// Decisions of loops written before the policy package decided (rows
// stored then keep them), and the prefix of a dry run's.
const (
	DecisionPrepare = "prepare"
	DecisionBelow   = "below-threshold"
	DecisionCovered = "covered"
	DecisionDryRun  = "dry-run"
	DecisionNoModel = "no-model"
)

// PreparationEvent is one step in the life of a preparation's lease.
type PreparationEvent struct {
	Time          time.Time `json:"time"`
	PreparationID string    `json:"preparation_id"` // the lease ID the host knows
	App           string    `json:"app"`
	Host          string    `json:"host"`
	Event         string    `json:"event"` // one of the Event constants
	MemoryMB      float64   `json:"memory_mb"`
	DiskMB        float64   `json:"disk_mb"`
	CPUMilli      int64     `json:"cpu_milli"`
	ShadowMS      float64   `json:"shadow_ms"`
	Reason        string    `json:"reason"`
	HeldSeconds   float64   `json:"held_seconds"`
	// BusyMBs is the memory-time (MB·s) the host measured the lease
	// serving requests, on an end event the host answered; the worker's
	// waste counter takes it out of the held time. Not stored.
	BusyMBs float64 `json:"busy_mb_s,omitempty"`
}

// Preparation event kinds.
const (
	EventReserved  = "reserved"  // the host reserved the resources
	EventValidated = "validated" // the shadow request proved them ready
	EventFailed    = "failed"    // reserve or shadow failed; released
	EventClaimed   = "claimed"   // a request took the lease for itself
	EventExtended  = "extended"  // the lease's expiry moved in place
	EventKept      = "kept"      // a cold request's instance kept as a lease
	EventReleased  = "released"  // given back before its TTL
	EventExpired   = "expired"   // its TTL passed: wasted resource-time
)

// Events lists every preparation event kind (the store refuses others).
var Events = []string{EventReserved, EventValidated, EventClaimed, EventExpired, EventReleased, EventFailed, EventKept, EventExtended}

// Request is one resource request as served: what was asked, where it ran
// and how it went. Times keep nanoseconds.
type Request struct {
	Time          time.Time `json:"time"`
	RequestID     string    `json:"request_id"` // stored as a UUID (derived when it is not one)
	App           string    `json:"app"`
	VolumeType    string    `json:"volume_type"`
	SizeMB        float64   `json:"size_mb"`
	ReadRatio     float64   `json:"read_ratio"`
	Host          string    `json:"host"`
	Warm          bool      `json:"warm"`
	ExpectedScore float64   `json:"expected_score"` // affinity the model expected
	SetupMS       float64   `json:"setup_ms"`
	WorkMS        float64   `json:"work_ms"`
	LatencyMS     float64   `json:"latency_ms"`
	Outcome       string    `json:"outcome"` // one of the Outcome constants
}

// Request outcomes.
const (
	OutcomeWarm              = "warm"                    // served by a warm instance
	OutcomeCold              = "cold"                    // no instance: served cold
	OutcomeColdLeaseBusy     = "cold-lease-busy"         // the instance was serving as many as it may
	OutcomeColdLeaseTooSmall = "cold-lease-too-small"    // the request needs more than the instance holds
	OutcomeColdLeaseLost     = "cold-lease-lost"         // the host no longer held the instance
	OutcomeColdAfterWarmFail = "cold-after-warm-failure" // the warm serve failed; served cold
)

// Outcomes lists every request outcome.
var Outcomes = []string{OutcomeWarm, OutcomeCold, OutcomeColdLeaseBusy, OutcomeColdLeaseTooSmall, OutcomeColdLeaseLost, OutcomeColdAfterWarmFail}

// Adjustment is one change of an (application, host) affinity adjustment,
// after a request did better or worse than expected.
type Adjustment struct {
	Time          time.Time `json:"time"`
	App           string    `json:"app"`
	Host          string    `json:"host"`
	Expected      float64   `json:"expected"`
	Actual        float64   `json:"actual"`
	Delta         float64   `json:"delta"`
	NewAdjustment float64   `json:"new_adjustment"`
	Reason        string    `json:"reason"`
}

// AdjustmentPass is one pass of a learner that turns recorded requests
// into adjustments: it read the rows of [From, To) (Rows of them) and
// changed the adjustments as Adjustments says, stamped At, At+1ns, … in
// order. A pass is recorded before its adjustments are written, and the
// next pass starts where the last recorded one ended, so every row is
// learned from once; a pass whose adjustments did not all land is written
// again from the record (the stamps say which landed).
type AdjustmentPass struct {
	Learner     string       `json:"learner"`
	From        time.Time    `json:"from"`
	To          time.Time    `json:"to"`
	At          time.Time    `json:"at"`
	Rows        int          `json:"rows"`
	Adjustments []Adjustment `json:"adjustments"`
}

// GatewayRequest is one request as the gateway served it: where it went,
// whether an instance was warm, and where its time went (waiting for an
// instance another request was starting, starting one, the application
// itself), with the HTTP method, status and sizes, so an application's
// read/write mix and request sizes are measured, not assumed.
type GatewayRequest struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	App       string    `json:"app"`
	Gateway   string    `json:"gateway"`
	Host      string    `json:"host"`
	Lease     string    `json:"lease"`
	Outcome   string    `json:"outcome"` // one of the Gateway* outcomes
	Retried   bool      `json:"retried"` // sent a second time after a stale entry or an instance that never got it
	Method    string    `json:"method"`
	Status    int       `json:"status"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
	QueueMS   float64   `json:"queue_ms"` // waiting for an instance another request was starting
	StartMS   float64   `json:"start_ms"` // starting the instance this request waited for
	AppMS     float64   `json:"app_ms"`   // the instance's own time, as its agent measured it
	TotalMS   float64   `json:"total_ms"` // in the gateway, from the request's arrival to its last byte
	Error     string    `json:"error,omitempty"`
}

// Gateway request outcomes.
const (
	GatewayWarm       = "warm"        // a ready instance served it
	GatewayCold       = "cold"        // no instance: this request started one and waited for it
	GatewayColdJoined = "cold-joined" // no instance: it waited for one another request was starting
	GatewayFailed     = "failed"      // no answer from an instance (the error says why)
)

// GatewayOutcomes lists every gateway request outcome.
var GatewayOutcomes = []string{GatewayWarm, GatewayCold, GatewayColdJoined, GatewayFailed}
