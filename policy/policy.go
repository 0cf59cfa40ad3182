// Package policy makes every per-application, per-bin preparation decision
// Forewarm takes, for the prediction loops and for the simulator alike, so
// what the results page measures is what production does. It is pure Go:
// no Temporal, no ClickHouse, no model runtime.
//
// # The decision
//
// At the start of each bin the caller knows p, the demand model's chance of
// at least one request of the application in that bin, and whether the
// application holds a warm instance now (a prepared lease, or the instance
// that served its last bin). Holding the instance through the bin costs its
// memory for the bin; a request that finds no instance costs a cold start.
// The expected-value rule holds the application when
//
//	p × ColdCost ≥ MemoryMB × bin seconds (+ a fresh preparation's cost)
//
// and ColdCost, the memory-time one avoided cold start is worth, is set by
// the operator's threshold: an application of ReferenceMB is held when
// p ≥ Threshold, a larger one needs a proportionally higher p, a smaller
// one less. Each application so gets its own effective threshold. Making a
// fresh preparation adds its own cost (PrepareSeconds of the memory, the
// reservation and shadow request before the bin begins), so an application
// already held is kept at its plain threshold and a new one is prepared
// only at a slightly higher one: the policy does not flap around the line.
//
// # What a cold start is worth, and when the forecast is trusted
//
// The operator names the figure they are judged on (Objective). Per
// request, every cold start is worth the same. Per application (the
// default), every application's cold-start rate counts equally, as in the
// 75th percentile of per-application rates: one cold start of an
// application is worth ReferenceRequestsPerDay over its own request rate,
// so a sparse application's hold is bought as readily as a busy one's.
//
// The forecast is used for an application only once its recent history
// holds TrustGaps idle stretches between requests. Until then the
// application gets the fixed keep-alive it replaces (FallbackBins after
// each request), so a new or barely seen application is never served worse
// than by that keep-alive. Every application also stays held
// KeepAliveBins after a request whatever the forecast (a session's next
// request is likeliest then). A Threshold of 1 uses no forecast at all:
// the policy is then exactly a fixed keep-alive, one of its own settings,
// so a selection over its settings can always fall back to it.
//
// Config.Decide is the one function every caller decides through.
//
// The four outcomes are Prepare (nothing held, hold now), Keep (held, hold
// on: extend the lease in place, or keep the instance that just served),
// Release (held, let go) and Idle (nothing held, nothing to do).
package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Action is one bin's decision for one application.
type Action uint8

const (
	Idle    Action = iota // nothing held, nothing to do
	Prepare               // nothing held: reserve and validate a warm instance for this bin
	Keep                  // held: hold on through this bin (extend in place if needed)
	Release               // held: let the instance go
)

var actionNames = [...]string{"idle", "prepare", "keep", "release"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Holds is true when the application holds an instance during the bin.
func (a Action) Holds() bool { return a == Prepare || a == Keep }

// Config is the policy's every knob. The zero value is not valid; start
// from Default and change what you need.
type Config struct {
	// Threshold is the chance of a request in a bin at which an application
	// of ReferenceMB is held through it; it sets what a cold start is worth
	// (ColdCostMBSec). Within [0, 1]; 0 holds every application always (a
	// cold start is worth any memory).
	Threshold float64 `json:"threshold"`
	// ReferenceMB is the memory of the application Threshold speaks for.
	ReferenceMB float64 `json:"reference_mb"`
	// PrepareSeconds is the memory-time, in seconds of the application's
	// memory, that a fresh preparation costs on top of the bin it serves:
	// the reservation made before the bin begins and its shadow request.
	PrepareSeconds float64 `json:"prepare_seconds"`
	// LookaheadBins bounds how far ahead a lease is planned: a lease's TTL
	// covers at most this many bins of the no-request forecast (the host
	// frees it by itself if the loop is lost).
	LookaheadBins int `json:"lookahead_bins"`
	// SizePercentile sizes leases: this percentile of the application's
	// request sizes, so most requests fit the instance.
	SizePercentile float64 `json:"size_percentile"`

	// Objective is what a cold start is worth: PerApplication (each
	// application's cold-start rate counts equally) or PerRequest. Empty
	// reads as PerRequest: loops started before the setting.
	Objective Objective `json:"objective"`
	// ReferenceRequestsPerDay is, under PerApplication, the request rate of
	// the application Threshold speaks for: one with half the rate is
	// worth twice as much per cold start.
	ReferenceRequestsPerDay float64 `json:"reference_requests_per_day"`
	// KeepAliveBins is a keep-alive floor: every application stays held
	// this many bins after a bin with requests, whatever the forecast.
	KeepAliveBins int `json:"keep_alive_bins"`
	// FallbackBins is the keep-alive of an application whose forecast is
	// not trusted (new, or too little history): it is held this many bins
	// after a bin with requests, and never prepared on a forecast.
	FallbackBins int `json:"fallback_bins"`
	// TrustGaps is how many idle stretches between requests an
	// application's recent history must hold before its forecast is used.
	TrustGaps int `json:"trust_gaps"`
}

// Default is the configuration of a fresh loop and of `starter eval`'s
// "ours" family before selection.
func Default() Config {
	return Config{Threshold: 0.05, ReferenceMB: 170, PrepareSeconds: 2, LookaheadBins: 10, SizePercentile: 0.95,
		Objective: PerApplication, ReferenceRequestsPerDay: 24, KeepAliveBins: 2, FallbackBins: 10, TrustGaps: 2}
}

// Limits are the bounds Validate enforces, in one place for every caller
// (signals, updates, flags).
var Limits = struct {
	MinThreshold, MaxThreshold     float64
	MinReferenceMB, MaxReferenceMB float64
	MaxPrepareSeconds              float64
	MinLookahead, MaxLookahead     int
	MinPercentile, MaxPercentile   float64
	MaxReferenceRequests           float64
	MaxKeepAliveBins, MaxTrustGaps int
}{0, 1, 1, 1 << 20, 3600, 1, 1440, 0.5, 1, 1e9, 1440, 1440}

// Validate says what is wrong with c, every problem at once.
func (c Config) Validate() error {
	var errs []error
	l := Limits
	if !(c.Threshold >= l.MinThreshold && c.Threshold <= l.MaxThreshold) {
		errs = append(errs, fmt.Errorf("threshold %v is outside [%v, %v]", c.Threshold, l.MinThreshold, l.MaxThreshold))
	}
	if !(c.ReferenceMB >= l.MinReferenceMB && c.ReferenceMB <= l.MaxReferenceMB) {
		errs = append(errs, fmt.Errorf("reference_mb %v is outside [%v, %v]", c.ReferenceMB, l.MinReferenceMB, l.MaxReferenceMB))
	}
	if !(c.PrepareSeconds >= 0 && c.PrepareSeconds <= l.MaxPrepareSeconds) {
		errs = append(errs, fmt.Errorf("prepare_seconds %v is outside [0, %v]", c.PrepareSeconds, l.MaxPrepareSeconds))
	}
	if c.LookaheadBins < l.MinLookahead || c.LookaheadBins > l.MaxLookahead {
		errs = append(errs, fmt.Errorf("lookahead_bins %d is outside [%d, %d]", c.LookaheadBins, l.MinLookahead, l.MaxLookahead))
	}
	if !(c.SizePercentile >= l.MinPercentile && c.SizePercentile <= l.MaxPercentile) {
		errs = append(errs, fmt.Errorf("size_percentile %v is outside [%v, %v]", c.SizePercentile, l.MinPercentile, l.MaxPercentile))
	}
	if err := checkObjective(c.Objective); err != nil {
		errs = append(errs, err)
	}
	if r := c.ReferenceRequestsPerDay; !(r >= 0 && r <= l.MaxReferenceRequests) || (r == 0 && c.Objective == PerApplication) {
		errs = append(errs, fmt.Errorf("reference_requests_per_day %v is outside (0, %g] (0 only with objective %q)", r, l.MaxReferenceRequests, PerRequest))
	}
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{{"keep_alive_bins", c.KeepAliveBins, l.MaxKeepAliveBins}, {"fallback_bins", c.FallbackBins, l.MaxKeepAliveBins}, {"trust_gaps", c.TrustGaps, l.MaxTrustGaps}} {
		if f.v < 0 || f.v > f.max {
			errs = append(errs, fmt.Errorf("%s %d is outside [0, %d]", f.name, f.v, f.max))
		}
	}
	return errors.Join(errs...)
}

// App is what the policy knows of one application.
type App struct {
	MemoryMB float64 // the instance's memory (lease size); <= 0: ReferenceMB
	// ColdWeight scales what a cold start costs this application relative
	// to the reference (e.g. its cold-start time over a typical one); <= 0: 1.
	ColdWeight float64
}

// ColdCostMBSec is the memory-time one avoided cold start is worth, for a
// bin of the given width: the reference application's bin at Threshold
// (+Inf at threshold 0).
func (c Config) ColdCostMBSec(bin time.Duration) float64 {
	return c.ReferenceMB * bin.Seconds() / c.Threshold
}

// Thresholds are one application's effective thresholds: the chance of a
// request in a bin at which it is kept (held) or prepared (not held).
// Above 1 means never.
type Thresholds struct {
	Keep, Prepare float64
}

// For is app's effective thresholds at the given bin width.
func (c Config) For(app App, bin time.Duration) Thresholds {
	mem := app.MemoryMB
	if !(mem > 0) {
		mem = c.ReferenceMB
	}
	w := app.ColdWeight
	if !(w > 0) {
		w = 1
	}
	sec := bin.Seconds()
	keep := mem * sec / (c.ColdCostMBSec(bin) * w)
	prep := mem * (sec + c.PrepareSeconds) / (c.ColdCostMBSec(bin) * w)
	return Thresholds{Keep: keep, Prepare: prep}
}

// Decide is the decision for one bin: held says whether the application
// holds an instance as the bin begins, p is the chance of a request in it.
// A probability that is not a number is treated as 0 (never hold on it).
func (t Thresholds) Decide(held bool, p float64) Action {
	if math.IsNaN(p) {
		p = 0
	}
	switch {
	case held && p >= t.Keep:
		return Keep
	case held:
		return Release
	case p >= t.Prepare:
		return Prepare
	default:
		return Idle
	}
}

// Hold plans ahead from a forecast along the path where no request
// arrives: path[j] is the chance of a request in the j-th bin from now
// given none before it. It returns how many bins from now the application
// stays held (0: not held now) under Decide, at most LookaheadBins and at
// most len(path). A lease prepared or extended now lives that long.
func (c Config) Hold(t Thresholds, held bool, path []float64) int {
	n := min(len(path), c.LookaheadBins)
	for j := range n {
		held = t.Decide(held, path[j]).Holds()
		if !held {
			return j
		}
	}
	return n
}

// NextChange is the first bin from now (0-based) at which Decide, walking
// path as in Hold, would change what the application holds; len(path) when
// nothing changes within it. A loop with nothing to serve can sleep until
// then: the decisions in between are known.
func NextChange(t Thresholds, held bool, path []float64) int {
	for j, p := range path {
		a := t.Decide(held, p)
		if a == Prepare || a == Release {
			return j
		}
		held = a.Holds()
	}
	return len(path)
}

// MinSizes is how many request sizes a percentile needs; with fewer the
// lease takes the largest of them and the profile's size.
const MinSizes = 8

// LeaseSizeMB is the lease size for an application whose recent request
// sizes (MB) are sizes: their SizePercentile (nearest rank) once there are
// MinSizes of them; before, the largest of them and fallback (the
// profile's size).
func (c Config) LeaseSizeMB(sizes []float64, fallback float64) float64 {
	var ok []float64
	for _, s := range sizes {
		if s > 0 && !math.IsInf(s, 0) {
			ok = append(ok, s)
		}
	}
	if len(ok) < MinSizes {
		return max(fallback, slices.Max(append(ok, 0)))
	}
	slices.Sort(ok)
	k := int(math.Ceil(c.SizePercentile*float64(len(ok)))) - 1
	return ok[max(0, min(k, len(ok)-1))]
}

// MaxLeaseCores bounds the CPU a lease reserves for concurrency.
const MaxLeaseCores = 8

// LeaseCores is how many requests an instance must be able to serve at
// once: the offered load of the busiest recent bin (its requests times how
// long one takes, over the bin's length) plus 1.5 times its square root,
// rounded up; at least 1, at most MaxLeaseCores. Arrivals within a bin are
// random, so sizing for the mean load alone queues them: the square-root
// margin (the Halfin–Whitt staffing rule) keeps the chance a request waits
// small.
// A host serves a lease's requests one per reserved core in parallel, so
// this sizes the lease's CPU.
func LeaseCores(counts []float64, requestSeconds, binSeconds float64) int {
	if !(requestSeconds > 0) || !(binSeconds > 0) {
		return 1
	}
	peak := 0.0
	for _, c := range counts {
		peak = max(peak, c)
	}
	load := peak * min(requestSeconds, binSeconds) / binSeconds
	n := math.Ceil(load + 1.5*math.Sqrt(load))
	return int(min(MaxLeaseCores, max(1, n)))
}
