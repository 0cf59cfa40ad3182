// Package api holds the host agent's wire format: the JSON bodies of every
// endpoint, the error codes, and the limits both sides check. The server
// (package agent) and the client (package agent/client) share it so the two
// cannot drift apart; it has no dependencies beyond the standard library.
package api

import (
	"fmt"
	"regexp"
	"time"
)

// Endpoint paths. Every path but Health and Ready needs the bearer token.
const (
	PathHealth     = "/healthz"
	PathReady      = "/readyz"
	PathInfo       = "/v1/info"
	PathLeases     = "/v1/leases"
	PathServe      = "/v1/serve"
	PathMetrics    = "/v1/metrics"
	PathPrometheus = "/metrics"
)

// LeasePath is the path of one lease; ShadowPath runs a shadow request on it.
func LeasePath(id string) string  { return PathLeases + "/" + id }
func ShadowPath(id string) string { return PathLeases + "/" + id + "/shadow" }

// Limits checked by the agent (and early by the client).
const (
	// MaxBodyBytes caps a request body; every body is a few hundred bytes.
	MaxBodyBytes = 64 << 10
	// MaxSizeMB is the largest memory or disk size any call may name
	// (1 TiB): anything above is a typo, not a request.
	MaxSizeMB = 1 << 20
	// MaxCPUMilli is the largest CPU reservation (1024 cores).
	MaxCPUMilli = 1 << 20
	// MaxWorkMS caps the simulated work of one served request (10 minutes).
	MaxWorkMS = 600_000
	// MaxSampleMB caps the file sample a shadow or serve call reads/writes.
	MaxSampleMB = 1024
	// MinTTL and MaxTTL bound a lease's time to live.
	MinTTL = time.Second
	MaxTTL = 24 * time.Hour
)

// idPattern is what preparation, request and application IDs must match:
// it cannot express a path separator or "..", so an ID used in a file name
// stays inside the data folder.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// IDPattern is idPattern's text, for error messages and docs.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`

// CheckID returns an error naming field when id is not a safe ID.
func CheckID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%s is required", field)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s %q does not match %s", field, truncate(id, 40), IDPattern)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Error codes in ErrorBody.Code. The HTTP status says the class; the code
// says exactly what went wrong so callers can branch without parsing text.
const (
	CodeBadRequest    = "bad_request"     // 400: malformed body, bad field
	CodeUnauthorized  = "unauthorized"    // 401: missing or wrong token
	CodeNotFound      = "not_found"       // 404: no such lease (never existed)
	CodeWrongApp      = "wrong_app"       // 403: lease belongs to another application
	CodeConflict      = "conflict"        // 409: same preparation ID, different request
	CodeClaimed       = "already_claimed" // 409: lease already claimed by another request
	CodeLeaseTooSmall = "lease_too_small" // 409: request needs more than the lease holds
	CodeGone          = "gone"            // 410: lease expired or was released
	CodeTooLarge      = "too_large"       // 413: body over MaxBodyBytes
	CodeOverCapacity  = "over_capacity"   // 409: does not fit the free capacity
	CodeShuttingDown  = "shutting_down"   // 503: agent is stopping
	CodeInternal      = "internal"        // 500: allocation or I/O failure
)

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ReserveRequest asks for a lease. A repeated reserve with the same
// preparation ID and the same sizes returns the existing lease.
type ReserveRequest struct {
	PreparationID string  `json:"preparation_id"`
	App           string  `json:"app"`
	MemoryMB      float64 `json:"memory_mb"`
	DiskMB        float64 `json:"disk_mb"`
	CPUMilli      int64   `json:"cpu_milli"`
	// TTLSeconds is the lease's time to live from the moment it is ready;
	// 0 means the agent's default.
	TTLSeconds float64 `json:"ttl_seconds,omitempty"`
}

// Lease states.
const (
	StatePreparing = "preparing" // resources being allocated
	StateReady     = "ready"     // allocated, claimable
	StateClaimed   = "claimed"   // handed to a request being served
	StateReleased  = "released"  // explicitly released
	StateExpired   = "expired"   // TTL passed, reaped
	StateUsed      = "used"      // claimed and the request has finished
)

// Lease describes one lease.
type Lease struct {
	PreparationID string    `json:"preparation_id"`
	App           string    `json:"app"`
	HostID        string    `json:"host_id"`
	State         string    `json:"state"`
	MemoryMB      float64   `json:"memory_mb"`
	DiskMB        float64   `json:"disk_mb"`
	CPUMilli      int64     `json:"cpu_milli"`
	Created       time.Time `json:"created"`
	Expires       time.Time `json:"expires"`
	// ResidentMB is how much of the lease's memory the kernel reports
	// resident (mincore), measured when the lease was answered.
	ResidentMB float64 `json:"resident_mb"`
	// DiskAllocatedMB is the file's allocated blocks (st_blocks), not its
	// apparent size: proof the storage is really reserved.
	DiskAllocatedMB float64 `json:"disk_allocated_mb"`
	// PrepareMS is how long allocation took (including artificial latency).
	PrepareMS float64 `json:"prepare_ms"`
	Shadows   int     `json:"shadows"`
	// Existing is true when a repeated reserve returned this lease.
	Existing bool `json:"existing,omitempty"`
}

// ReleaseResult answers a release. Released is false when the lease had
// already ended (State says how); releasing twice is not an error.
type ReleaseResult struct {
	PreparationID string  `json:"preparation_id"`
	Released      bool    `json:"released"`
	State         string  `json:"state"`
	HeldSeconds   float64 `json:"held_seconds"`
}

// ShadowRequest runs a small slice of the expected work on a lease.
type ShadowRequest struct {
	// ReadRatio is the application's share of reads in its I/O, 0..1.
	ReadRatio float64 `json:"read_ratio"`
	// SampleMB is how much of the file to read and write; 0 means the
	// agent's default (8 MB, capped at the file size).
	SampleMB float64 `json:"sample_mb,omitempty"`
}

// ShadowResult holds a shadow request's timings.
type ShadowResult struct {
	PreparationID string  `json:"preparation_id"`
	ResidentMB    float64 `json:"resident_mb"`
	TouchMS       float64 `json:"touch_ms"`
	ReadMB        float64 `json:"read_mb"`
	WriteMB       float64 `json:"write_mb"`
	IOMS          float64 `json:"io_ms"`
	TotalMS       float64 `json:"total_ms"`
}

// ServeRequest serves one real request of an application.
type ServeRequest struct {
	RequestID string `json:"request_id"`
	App       string `json:"app"`
	// PreparationID names the lease to claim; empty means serve cold.
	PreparationID string  `json:"preparation_id,omitempty"`
	MemoryMB      float64 `json:"memory_mb"`
	DiskMB        float64 `json:"disk_mb"`
	CPUMilli      int64   `json:"cpu_milli,omitempty"`
	ReadRatio     float64 `json:"read_ratio"`
	// WorkMS is the request's CPU work at speed 1 (a slower host takes
	// longer); 0 means only the memory and I/O work.
	WorkMS float64 `json:"work_ms"`
	// SampleMB is how much of the file the request reads and writes; 0
	// means the agent's default.
	SampleMB float64 `json:"sample_mb,omitempty"`
	// FallbackCold serves cold instead of failing when the lease is gone,
	// already claimed or too small (never when it belongs to another app).
	FallbackCold bool `json:"fallback_cold,omitempty"`
}

// ServeResult holds a served request's timings.
type ServeResult struct {
	RequestID     string `json:"request_id"`
	HostID        string `json:"host_id"`
	Warm          bool   `json:"warm"`
	PreparationID string `json:"preparation_id,omitempty"`
	// FallbackReason says why a request naming a lease was served cold.
	FallbackReason string  `json:"fallback_reason,omitempty"`
	SetupMS        float64 `json:"setup_ms"`
	WorkMS         float64 `json:"work_ms"`
	TotalMS        float64 `json:"total_ms"`
}

// Info describes the agent.
type Info struct {
	HostID      string    `json:"host_id"`
	URL         string    `json:"url,omitempty"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	MemoryMB    int64     `json:"memory_mb"`
	DiskMB      int64     `json:"disk_mb"`
	CPUMilli    int64     `json:"cpu_milli"`
	Speed       float64   `json:"speed"`
	SetupPerMB  float64   `json:"setup_ms_per_mb"`
	DefaultTTLS float64   `json:"default_ttl_seconds"`
	Labels      string    `json:"labels,omitempty"`
	DataDir     string    `json:"data_dir"`
}

// HostMetrics is a snapshot of the host and of the agent's reservations.
// Fractions are 0..1.
type HostMetrics struct {
	Time   time.Time `json:"time"`
	HostID string    `json:"host_id"`
	// CPUUtil is the busy share of all CPUs since the previous sample.
	CPUUtil    float64 `json:"cpu_util"`
	MemTotalMB float64 `json:"mem_total_mb"`
	MemUsedMB  float64 `json:"mem_used_mb"`
	MemAvailMB float64 `json:"mem_avail_mb"`
	// MemPressure is PSI "some" avg10 as a fraction (0 where the kernel
	// has no PSI; PSIAvailable says which).
	MemPressure  float64 `json:"mem_pressure"`
	PSIAvailable bool    `json:"psi_available"`
	// IOLatencyMS is the last probe: a 64 KiB write, fsync and read back
	// in the data folder.
	IOLatencyMS      float64 `json:"io_latency_ms"`
	ReservedMemMB    float64 `json:"reserved_mem_mb"`
	ReservedDiskMB   float64 `json:"reserved_disk_mb"`
	ReservedCPUMilli int64   `json:"reserved_cpu_milli"`
	CapacityMemMB    float64 `json:"capacity_mem_mb"`
	CapacityDiskMB   float64 `json:"capacity_disk_mb"`
	CapacityCPUMilli int64   `json:"capacity_cpu_milli"`
	// Leases counts live leases (preparing, ready or claimed).
	Leases        int   `json:"leases"`
	LeasesReady   int   `json:"leases_ready"`
	ServingCold   int   `json:"serving_cold"`
	ServedWarm    int64 `json:"served_warm"`
	ServedCold    int64 `json:"served_cold"`
	LeasesExpired int64 `json:"leases_expired"`
}
