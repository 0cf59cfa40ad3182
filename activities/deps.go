// Package activities holds every side effect of Forewarm's workflows:
// model inference, host leases, shadow requests, serving, ClickHouse writes
// and training. Activities are methods on structs built once by the worker
// with their dependencies; each dependency is a small interface declared
// here, so the workflow tests mock activities and the activity tests mock
// the systems behind them. The worker adapts the real store, models and
// host-agent client to these interfaces (worker/adapters).
package activities

import (
	"context"
	"time"

	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

// AppProfile is what the loop and the hosts need to know about an application.
type AppProfile struct {
	App        string
	MemoryMB   float64
	DiskMB     float64
	CPUMilli   int64
	ReadRatio  float64
	DurationMS float64
	VolumeType string
	RatePerMin float64 // recent requests per minute (0 when unknown)
}

// WithDefaults fills what is not known of a profile: the memory of a
// typical application (trace.DefaultMemoryMB) and a quarter of the memory
// as disk. It is the one place these defaults live.
func (p AppProfile) WithDefaults() AppProfile {
	if p.MemoryMB <= 0 {
		p.MemoryMB = trace.DefaultMemoryMB
	}
	if p.DiskMB <= 0 {
		p.DiskMB = p.MemoryMB / 4
	}
	return p
}

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
	Score(ctx context.Context, app AppProfile, hosts []HostInfo) (scores []float64, version string, err error)
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

// HostServing asks a host to serve one request.
type HostServing struct {
	RequestID string
	App       string
	LeaseID   string // empty: cold
	MemoryMB  float64
	DiskMB    float64
	ReadRatio float64
	WorkMS    float64
	// KeepID and KeepTTL (both or neither) keep a cold instance as a new
	// lease; Keep*MB and KeepCPUMilli size it when larger than the request.
	KeepID       string
	KeepTTL      time.Duration
	KeepMemoryMB float64
	KeepDiskMB   float64
	KeepCPUMilli int64
}

// HostServed is what a host reports after serving.
type HostServed struct {
	Warm    bool
	SetupMS float64
	WorkMS  float64
	TotalMS float64
	// FallbackCode says why a request naming a lease was served cold
	// (lease_busy, lease_too_small, gone, not_found).
	FallbackCode string
	Kept         bool
	KeptExpires  time.Time
	KeepRefused  string
	Replayed     bool
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
	Serve(ctx context.Context, s HostServing) (HostServed, error)
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
	AppProfile(ctx context.Context, app string) (AppProfile, bool, error)
	Adjustments(ctx context.Context, app string) (map[string]float64, error)
}

// LeaseClaimer asks an application's prediction loop for a live lease.
// Found is false when the loop holds none; LoopRunning is false when no
// loop runs for the application (the request goes cold either way).
type LeaseClaimer interface {
	Claim(ctx context.Context, in ClaimInput) (ClaimResult, error)
}

// DecisionMetrics counts the loops' decisions: each wake settles bins (the
// ones slept through and its own) lag after it was due (negative: not
// measured, e.g. a loop's first decision), for a loop whose bins are bin
// wide in live time (the lag's SLO is one bin).
type DecisionMetrics interface {
	Decided(lag time.Duration, bins int, router bool, bin time.Duration)
}
