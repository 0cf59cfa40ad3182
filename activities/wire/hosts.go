package wire

import (
	"math"
	"time"

	"github.com/forewarm/forewarm/agent/api"
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

// MaxLeaseBin is the widest bin a lease can be planned for at all: a bin,
// its grace and its lead within api.MaxTTL.
const MaxLeaseBin = api.MaxTTL / 3

// MaxLeaseBins is how many bins ahead a loop of bin width bin may plan a
// held instance's lease so that a host agent accepts it (api.MaxTTL): the
// lease lives the bins planned, plus its grace (a bin, at least 5 s) and
// a start up to a bin ahead of the bin it is for (a preparation's lead, at
// most half a bin; a trace-clock loop's first decision, a bin). 0: not
// even one bin fits (bin wider than MaxLeaseBin).
func MaxLeaseBins(bin time.Duration) int {
	if bin <= 0 || bin > MaxLeaseBin {
		return 0
	}
	return max(0, int((api.MaxTTL-max(bin, 5*time.Second)-bin)/bin))
}

// LeaseLife is the longest a lease planned bins ahead at bin width bin may
// be asked to live (see MaxLeaseBins); it saturates instead of wrapping.
func LeaseLife(bins int, bin time.Duration) time.Duration {
	if bins < 0 || bin <= 0 {
		return 0
	}
	extra := max(bin, 5*time.Second) + bin
	if extra < 0 || bin > (math.MaxInt64-extra)/time.Duration(max(1, bins)) {
		return math.MaxInt64
	}
	return time.Duration(bins)*bin + extra
}
