// Package api holds the host agent's wire format: the JSON bodies of every
// endpoint, the error codes, the limits both sides check and the per-host
// token derivation. The server (package agent) and the client (package
// agent/client) share it so the two cannot drift apart; it has no
// dependencies beyond the standard library.
//
// # Endpoints
//
//	method  path                     body            answer
//	GET     /healthz                 -               200 {"status":"ok"} (no token)
//	GET     /readyz                  -               200, or 503 while shutting down (no token)
//	GET     /v1/info                 -               Info
//	POST    /v1/leases               ReserveRequest  201 Lease (new) or 200 (existing)
//	GET     /v1/leases               -               []Lease, live leases with their use
//	GET     /v1/leases/{id}          -               Lease with resident and allocated MB
//	DELETE  /v1/leases/{id}          -               ReleaseResult (200 also if it had ended)
//	POST    /v1/leases/{id}/shadow   ShadowRequest   ShadowResult
//	POST    /v1/leases/{id}/extend   ExtendRequest   Lease with the new expiry
//	POST    /v1/serve                ServeRequest    ServeResult
//	GET     /v1/metrics              -               HostMetrics (JSON)
//	GET     /v1/apps                 -               []App, the application specs this agent runs
//	any     /v1/instances/{id}/http/{path}  any      the instance's own answer (proxied)
//	GET     /metrics                 -               Prometheus text format
//
// Every answer but 2xx is an ErrorBody whose Code says exactly what went
// wrong (the Code* constants below, with their HTTP status), except on the
// instance path: there an answer with HeaderLease is the instance's own
// (any status), and one without is the agent's ErrorBody with HeaderSent.
//
// # Process instances
//
// An agent with application specs (GET /v1/apps) runs a reserve of such an
// application as its own process: Lease.Instance describes it (phases,
// pid, port, cgroup, real memory). Requests reach it through
// InstancePath(id, path), forwarded on loopback: at most the spec's
// concurrency at once (lease_busy beyond, after the agent's queue wait),
// not_found or gone for no live lease, no_instance for a memory lease,
// not_ready while it starts, and instance_failed (502) when the instance
// did not answer; HeaderSent "0" there means the request never reached it,
// so a caller may send it elsewhere. A process that exits or is killed ends
// its lease as failed (Instance.Exit, ReleaseResult.Note say how).
//
// # A lease is a warm instance
//
// A ready lease serves every request of its application that names it,
// until it is released or its TTL ends; a served request no longer uses
// it up. Up to MaxConcurrent(cpu_milli) requests run on one lease at a
// time: one per whole core reserved, at least one. A request beyond that,
// or one larger than the lease (memory, disk or CPU), is refused with
// lease_busy or lease_too_small, or, with fallback_cold, served cold on
// resources allocated for it alone while the lease stays ready; either way
// the miss is counted on the lease and in the host metrics. Extend sets a
// new expiry in place (no new reservation, no shadow). A cold serve may keep
// its instance as a new ready lease (keep_id, keep_ttl_seconds), admitted
// like a reserve: when it does not fit, the request is still served and
// ServeResult.KeepRefused says why nothing was kept.
//
// Serving is idempotent by request ID: a retried serve returns the first
// result (Replayed set) instead of running again, for as long as the agent
// remembers it (an hour, and at most a bounded number of requests).
// Releasing an ID the agent does not know leaves a tombstone, so a reserve
// arriving after its own release is refused as gone; tombstones are kept
// for MaxTTL.
//
// # Compatibility
//
// Every field added since the first version is optional and omitted when
// zero, so a newer worker that does not use a feature talks to an older
// agent, and an older worker talks to a newer agent unchanged (its serve
// simply no longer ends the lease, which its release or the TTL then ends).
// An older agent answers /extend with 404 and no code.
//
// # Credentials
//
// Each agent accepts one bearer token. A fleet derives them per host from
// one root secret that only the worker holds: DeriveToken(root, hostID) is
// the lowercase hex of HMAC-SHA256(key = root, message = host ID). An
// agent is given only its own token, so a compromised host cannot call
// another.
package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	PathApps       = "/v1/apps"
	PathInstances  = "/v1/instances"
)

// InstancePath is where a request for a process instance's own HTTP path
// (starting with /) goes: the agent forwards it to the instance of lease
// id, which listens on loopback only.
func InstancePath(id, path string) string { return PathInstances + "/" + id + "/http" + path }

// Headers of a proxied answer: which host and lease served it, and how long
// the instance itself took (milliseconds, from the agent's side).
const (
	HeaderHost       = "Forewarm-Host"
	HeaderLease      = "Forewarm-Lease"
	HeaderInstanceMS = "Forewarm-Instance-Ms"
	// HeaderSent is on the agent's own refusals of an instance request
	// (an ErrorBody, never with HeaderLease): "0" when nothing of the
	// request reached the instance, so it is safe to send it again
	// elsewhere; "1" when it may have (the instance may have acted on it).
	HeaderSent = "Forewarm-Sent"
)

// LeasePath is the path of one lease; ShadowPath runs a shadow request on
// it and ExtendPath sets its new expiry.
func LeasePath(id string) string  { return PathLeases + "/" + id }
func ShadowPath(id string) string { return PathLeases + "/" + id + "/shadow" }
func ExtendPath(id string) string { return PathLeases + "/" + id + "/extend" }

// MaxConcurrent is how many requests one lease serves at the same time:
// one per whole core it reserves (rounded up), at least one.
func MaxConcurrent(cpuMilli int64) int {
	if cpuMilli <= 1000 {
		return 1
	}
	return int((cpuMilli + 999) / 1000)
}

// DeriveToken is the bearer token of host hostID in a fleet whose root
// secret is root: the lowercase hex of HMAC-SHA256(root, hostID). The
// worker derives it for every host it calls; each agent is given only its
// own (hostagent --print-token computes it).
func DeriveToken(root []byte, hostID string) string {
	m := hmac.New(sha256.New, root)
	m.Write([]byte(hostID))
	return hex.EncodeToString(m.Sum(nil))
}

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
	CodeClaimed       = "already_claimed" // 409: no longer produced (a lease serves many requests); kept for older clients
	CodeLeaseTooSmall = "lease_too_small" // 409: request needs more than the lease holds
	CodeLeaseBusy     = "lease_busy"      // 409: the lease already serves MaxConcurrent requests
	CodeNotReady      = "not_ready"       // 409: the lease is still being prepared (extend)
	CodeGone          = "gone"            // 410: lease expired or was released
	CodeTooLarge      = "too_large"       // 413: body over MaxBodyBytes
	CodeOverCapacity  = "over_capacity"   // 409: does not fit the free capacity
	CodeShuttingDown  = "shutting_down"   // 503: agent is stopping
	CodeInternal      = "internal"        // 500: allocation or I/O failure
	CodeUnknownSpec   = "unknown_spec"    // 404: no spec of that application (or version) on this host
	CodeNoInstance    = "no_instance"     // 409: the lease has no process instance (a memory reservation)
	CodeInstanceDown  = "instance_failed" // 502: the instance did not answer (exited, killed, refused the connection)
	CodeStartFailed   = "start_failed"    // 502: the instance did not start, get ready or pass its shadow request
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
	// SpecVersion, when given, is the version of App's spec the caller
	// expects; an agent holding another version, or none, refuses
	// (unknown_spec). An agent with a spec of App starts a process
	// instance whatever the caller asked, sized at least as the spec says
	// (larger where the reserve asks for more).
	SpecVersion string `json:"spec_version,omitempty"`
}

// App is one application spec an agent runs (GET /v1/apps).
type App struct {
	App         string  `json:"app"`
	Version     string  `json:"version"`
	MemoryMB    float64 `json:"memory_mb"`
	CPUMilli    int64   `json:"cpu_milli"`
	ScratchMB   float64 `json:"scratch_mb"`
	Concurrency int     `json:"concurrency"`
}

// Instance is a lease's process: the application's own code, started in
// its own cgroup and process group.
type Instance struct {
	SpecVersion string `json:"spec_version"`
	PID         int    `json:"pid"`
	// Port is the instance's port on 127.0.0.1.
	Port int `json:"port"`
	// Cgroup is the instance's cgroup path and version ("v1", "v2"), or
	// empty where the agent may not create cgroups (limits not enforced).
	Cgroup        string `json:"cgroup,omitempty"`
	CgroupVersion string `json:"cgroup_version,omitempty"`
	// Phases of the start: the scratch storage allocated, the process
	// started (fork/exec), its readiness check passed, its shadow request
	// answered.
	ScratchMS float64 `json:"scratch_ms"`
	// StartWaitMS is how long the start waited for one of the host's
	// start slots (hostagent --max-starting) before its process began.
	StartWaitMS float64 `json:"start_wait_ms,omitempty"`
	SpawnMS     float64 `json:"spawn_ms"`
	ReadyMS     float64 `json:"ready_ms"`
	ShadowMS    float64 `json:"shadow_ms"`
	ShadowCode  int     `json:"shadow_status"`
	// MemoryMB is the instance's real memory (its cgroup's usage, else
	// the process group's resident set) when the lease was answered;
	// PeakMemoryMB the most seen.
	MemoryMB     float64 `json:"memory_mb"`
	PeakMemoryMB float64 `json:"peak_memory_mb,omitempty"`
	// Exit says how the process ended, once it has ("exit status 1",
	// "killed: memory limit 64 MB", "stopped").
	Exit string `json:"exit,omitempty"`
}

// Lease states: preparing → ready → released | expired.
const (
	StatePreparing = "preparing" // resources being allocated (or a cold request whose instance is kept)
	StateReady     = "ready"     // allocated, serving its application's requests
	StateReleased  = "released"  // explicitly released (or released before it was reserved)
	StateExpired   = "expired"   // TTL passed, reaped
	StateFailed    = "failed"    // its process exited or was killed (Instance.Exit says how)
	// StateClaimed and StateUsed are no longer produced: a lease is not
	// used up by a request. Kept so older callers still compile.
	StateClaimed = "claimed"
	StateUsed    = "used"
)

// LeaseUse is what a lease has done as a warm instance. Memory-time counts
// from the moment the lease was ready: busy while at least one request
// runs on it, idle otherwise, in MB·s of the lease's memory.
type LeaseUse struct {
	// RequestsServed counts requests served warm on the lease (counted
	// when they start).
	RequestsServed int64 `json:"requests_served"`
	// InFlight is how many run on it now; MaxConcurrent is the limit.
	InFlight      int     `json:"in_flight"`
	MaxConcurrent int     `json:"max_concurrent"`
	BusyMBs       float64 `json:"busy_mb_s"`
	IdleMBs       float64 `json:"idle_mb_s"`
	// FallbackConcurrency counts requests naming the lease that were served
	// cold because MaxConcurrent were already running on it;
	// FallbackOversize those larger than the lease.
	FallbackConcurrency int64     `json:"fallback_concurrency"`
	FallbackOversize    int64     `json:"fallback_oversize"`
	LastServed          time.Time `json:"last_served,omitzero"`
	// Extensions counts extends.
	Extensions int `json:"extensions,omitempty"`
}

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
	// KeptFrom names the cold request whose instance became this lease.
	KeptFrom string `json:"kept_from,omitempty"`
	// Instance is the lease's process, for an application with a spec on
	// this host (nil: a memory reservation).
	Instance *Instance `json:"instance,omitempty"`
	LeaseUse
}

// ExtendRequest sets a ready lease's expiry to now + TTLSeconds (in
// place: no new reservation, no shadow request). App, when given, must be
// the lease's application.
type ExtendRequest struct {
	TTLSeconds float64 `json:"ttl_seconds"`
	App        string  `json:"app,omitempty"`
}

// ReleaseResult answers a release. Released is false when the lease had
// already ended (State says how); releasing twice is not an error. The
// lease's use is its figures when it ended (also when it had ended before
// this call); requests still running on a released lease finish, and its
// resources return when they have.
type ReleaseResult struct {
	PreparationID string  `json:"preparation_id"`
	Released      bool    `json:"released"`
	State         string  `json:"state"`
	HeldSeconds   float64 `json:"held_seconds"`
	// Note says why a lease that had already ended did ("killed: memory
	// limit 64 MB" for a failed instance).
	Note string `json:"note,omitempty"`
	// EndedAt is when a lease that had already ended did (zero when this
	// release ended it).
	EndedAt time.Time `json:"ended_at,omitempty"`
	// Instance is a process lease's instance when it ended (Exit says how).
	Instance *Instance `json:"instance,omitempty"`
	LeaseUse
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
	// CPUMilli is the CPU the request needs. Served cold it holds that
	// much of the host's capacity while it runs, at least one core (all the
	// host has, when less), admitted like a lease: a cold request that
	// does not fit beside the leases is refused over_capacity, and one that
	// fell back from its busy lease waits for the lease instead.
	CPUMilli  int64   `json:"cpu_milli,omitempty"`
	ReadRatio float64 `json:"read_ratio"`
	// WorkMS is the request's CPU work at speed 1 (a slower host takes
	// longer); 0 means only the memory and I/O work.
	WorkMS float64 `json:"work_ms"`
	// SampleMB is how much of the file the request reads and writes; 0
	// means the agent's default.
	SampleMB float64 `json:"sample_mb,omitempty"`
	// FallbackCold serves cold instead of failing when the lease is gone,
	// busy or too small (never when it belongs to another app).
	FallbackCold bool `json:"fallback_cold,omitempty"`
	// KeepID and KeepTTLSeconds (both or neither) keep the instance of a
	// request served cold as a new ready lease with that preparation ID
	// and TTL. Its size is the request's, or Keep* where larger (a lease
	// sized for the application rather than for this one request).
	KeepID         string  `json:"keep_id,omitempty"`
	KeepTTLSeconds float64 `json:"keep_ttl_seconds,omitempty"`
	KeepMemoryMB   float64 `json:"keep_memory_mb,omitempty"`
	KeepDiskMB     float64 `json:"keep_disk_mb,omitempty"`
	KeepCPUMilli   int64   `json:"keep_cpu_milli,omitempty"`
}

// ServeResult holds a served request's timings.
type ServeResult struct {
	RequestID     string `json:"request_id"`
	HostID        string `json:"host_id"`
	Warm          bool   `json:"warm"`
	PreparationID string `json:"preparation_id,omitempty"`
	// FallbackReason says why a request naming a lease was served cold;
	// FallbackCode is its code (lease_busy, lease_too_small, gone,
	// not_found).
	FallbackReason string  `json:"fallback_reason,omitempty"`
	FallbackCode   string  `json:"fallback_code,omitempty"`
	SetupMS        float64 `json:"setup_ms"`
	WorkMS         float64 `json:"work_ms"`
	TotalMS        float64 `json:"total_ms"`
	// Kept says the cold instance stays as lease KeptID until KeptExpires;
	// KeepRefused says why a keep that was asked for did not happen.
	Kept        bool      `json:"kept,omitempty"`
	KeptID      string    `json:"kept_id,omitempty"`
	KeptExpires time.Time `json:"kept_expires,omitzero"`
	KeepRefused string    `json:"keep_refused,omitempty"`
	// Replayed marks the remembered result of an earlier serve with the
	// same request ID: the request did not run again.
	Replayed bool `json:"replayed,omitempty"`
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
	// Leases counts live leases (preparing or ready).
	Leases        int   `json:"leases"`
	LeasesReady   int   `json:"leases_ready"`
	ServingCold   int   `json:"serving_cold"`
	ServedWarm    int64 `json:"served_warm"`
	ServedCold    int64 `json:"served_cold"`
	LeasesExpired int64 `json:"leases_expired"`
	// ServedReplayed counts retried serves answered from memory.
	ServedReplayed int64 `json:"served_replayed"`
	// FallbackConcurrency and FallbackOversize count requests naming a
	// lease that were served cold because it was busy or too small.
	FallbackConcurrency int64 `json:"fallback_concurrency"`
	FallbackOversize    int64 `json:"fallback_oversize"`
	LeasesExtended      int64 `json:"leases_extended"`
	LeasesKept          int64 `json:"leases_kept"`
	// LeaseBusyMBs and LeaseIdleMBs add up every lease's memory-time since
	// the agent started (ended leases and live ones so far).
	LeaseBusyMBs float64 `json:"lease_busy_mb_s"`
	LeaseIdleMBs float64 `json:"lease_idle_mb_s"`
	// Tombstones counts remembered ended lease IDs.
	Tombstones int `json:"tombstones"`
	// LeaseUse is each live lease's use.
	LeaseUse []LeaseUseEntry `json:"lease_use,omitempty"`
}

// LeaseUseEntry is one live lease's use in HostMetrics.
type LeaseUseEntry struct {
	PreparationID string  `json:"preparation_id"`
	App           string  `json:"app"`
	MemoryMB      float64 `json:"memory_mb"`
	LeaseUse
}
