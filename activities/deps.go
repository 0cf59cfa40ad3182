// Package activities holds every side effect of Forewarm's workflows:
// model inference, host leases, shadow requests, serving, ClickHouse writes
// and training. Activities are methods on structs built once by the worker
// with their dependencies; each dependency is a small interface declared
// here, so the workflow tests mock activities and the activity tests mock
// the systems behind them. The worker adapts the real store, models and
// host-agent client to these interfaces (worker/adapters). What passes
// between workflows and activities (inputs, results, leases, error type
// names) is defined in package activities/wire, without I/O, so workflow
// code imports it instead of this package; activities and their callers
// name it there too. The services that live in the worker beside the activities (the
// arrival mirror and watch, the last-known host list, the gateway
// learner) are in package worker/resident; the Forecast activity reaches
// the watch through PlanWatch.
package activities

import (
	"context"
	"time"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// HostInfo is a live host with its latest metrics.
type HostInfo struct {
	ID          string
	URL         string
	MemoryMB    float64
	DiskMB      float64
	CPUMilli    int64
	Speed       float64
	CPUUtil     float64
	MemPressure float64
	IOLatencyMS float64
	FreeMemMB   float64
}

// DemandQuery is one application's recent activity to predict from.
type DemandQuery struct {
	Counts []float64 // oldest first
	Next   time.Time // start of the bin being predicted
	Bin    time.Duration
}

// DemandModel is a loaded demand model.
type DemandModel interface {
	Predict(in []DemandQuery) ([]float64, error)
	Version() string
	// HistoryBins is how many trailing bins the model can use.
	HistoryBins() int
	// HorizonBins is the horizon the probability is about.
	HorizonBins() int
}

// ModelRegistry loads champion models.
type ModelRegistry interface {
	// ChampionVersion is the current demand champion's version (ErrNoModel when none).
	ChampionVersion(ctx context.Context) (string, error)
	// LoadDemand loads one demand model version.
	LoadDemand(ctx context.Context, version string) (DemandModel, error)
}

// AffinityScorer scores hosts for an application (0..1, higher is better).
type AffinityScorer interface {
	Score(ctx context.Context, app wire.AppProfile, hosts []HostInfo) (scores []float64, version string, err error)
}

// HostDirectory lists the live hosts (registered recently) with metrics.
type HostDirectory interface {
	LiveHosts(ctx context.Context) ([]HostInfo, error)
}

// HostReservation asks a host to reserve resources under a lease ID.
type HostReservation struct {
	LeaseID  string
	App      string
	MemoryMB float64
	DiskMB   float64
	CPUMilli int64
	TTL      time.Duration
}

// HostReleased is what a host reports when releasing: whether this call
// ended the lease, and what the lease did as a warm instance.
type HostReleased struct {
	Released bool
	State    string
	// How a lease that had ended before the release did: Note says why,
	// EndedAt when, HeldSeconds how long it lived (all zero otherwise).
	Note           string
	EndedAt        time.Time
	HeldSeconds    float64
	RequestsServed int64
	BusyMBs        float64
	IdleMBs        float64
	Fallbacks      int64 // busy or too small: served cold instead
}

// HostClient talks to one host agent.
type HostClient interface {
	Reserve(ctx context.Context, r HostReservation) (expires time.Time, err error)
	Shadow(ctx context.Context, leaseID string, readRatio, sampleMB float64) (shadowMS float64, err error)
	Extend(ctx context.Context, leaseID, app string, ttl time.Duration) (expires time.Time, err error)
	Serve(ctx context.Context, s wire.HostServing) (wire.HostServed, error)
	Release(ctx context.Context, leaseID string) (HostReleased, error)
}

// HostClients builds (and caches) clients and classifies their errors.
type HostClients interface {
	// For is the client of host's agent at url. A URL the worker must not
	// call gives a client whose every call fails permanently.
	For(host, url string) HostClient
	// Permanent says a host refused for good (bad request, over capacity,
	// wrong app): retrying the same call cannot help.
	Permanent(err error) bool
	// NotFound says the lease is unknown to the host (already released or expired).
	NotFound(err error) bool
}

// Recorder writes rows to the metric store (the rows are the store's own,
// package records).
type Recorder interface {
	RecordPredictions(ctx context.Context, rows []records.Prediction) error
	RecordPreparationEvents(ctx context.Context, rows []records.PreparationEvent) error
	RecordRequests(ctx context.Context, rows []records.Request) error
	RecordAdjustments(ctx context.Context, rows []records.Adjustment) error
}

// HistoryReader reads what a loop needs when it starts.
type HistoryReader interface {
	RecentActivity(ctx context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error)
	AppProfile(ctx context.Context, app string) (wire.AppProfile, bool, error)
	Adjustments(ctx context.Context, app string) (map[string]float64, error)
}

// LeaseClaimer asks an application's prediction loop for a live lease.
// Found is false when the loop holds none; LoopRunning is false when no
// loop runs for the application (the request goes cold either way).
type LeaseClaimer interface {
	Claim(ctx context.Context, in wire.ClaimInput) (wire.ClaimResult, error)
}

// DecisionMetrics counts the loops' decisions: each wake settles bins (the
// ones slept through and its own) lag after it was due (negative: not
// measured, e.g. a loop's first decision), for a loop whose bins are bin
// wide in live time (the lag's SLO is one bin).
type DecisionMetrics interface {
	Decided(lag time.Duration, bins int, router bool, bin time.Duration)
}
