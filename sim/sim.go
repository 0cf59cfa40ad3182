package sim

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// Policy decides, bin by bin, which applications hold a preparation.
type Policy interface {
	// Name identifies the policy and its parameter, e.g. "keepalive-10m".
	Name() string
	// Start resets the policy for a run over env. Called once per Run.
	Start(env Env) error
	// Plan sets live[i] = true for every application i that holds a
	// preparation during bin b. live arrives all false. Called for
	// evaluation bins only, in order, before Observe(b).
	Plan(b int, live []bool) error
	// Observe reports the requests per application in bin b once the bin
	// is over. Called for every bin from 0, in order. counts is reused
	// after the call returns.
	Observe(b int, counts []uint32)
}

// Clairvoyant is implemented by policies that are allowed to see the
// whole trace in advance (the oracle). Run hands it the trace after Start.
type Clairvoyant interface {
	Foresee(tr *trace.Trace)
}

// HistoryUser is implemented by policies that read the observed counts
// (our policy hands them to the model). Run gives it a History after Start
// and advances it after every Observe.
type HistoryUser interface {
	UseHistory(h *History)
}

// Env is what a policy knows about a run: the applications' profiles and
// the bin grid, not their counts.
type Env struct {
	Apps      []AppInfo
	Start     time.Time     // start of bin 0
	Bin       time.Duration // bin width
	Bins      int           // bins played: [0, Bins)
	EvalStart int           // first counted bin
}

// AppInfo is an application's static profile.
type AppInfo struct {
	ID        string
	MemoryMB  float64 // never 0: trace.DefaultMemoryMB stands in for unknown
	ReadRatio float64
}

// ColdRule says which requests of a bin without a live instance are cold.
type ColdRule string

const (
	// ColdFirst counts the first request of such a bin cold: the instance
	// its cold start brings up serves the rest of the bin (Shahrad et al.).
	ColdFirst ColdRule = "first"
	// ColdAll counts every request of such a bin cold (the stricter rule of
	// earlier Forewarm versions).
	ColdAll ColdRule = "all"
)

// ParseColdRule reads a --cold-rule value.
func ParseColdRule(s string) (ColdRule, error) {
	switch r := ColdRule(s); r {
	case ColdFirst, ColdAll:
		return r, nil
	}
	return "", fmt.Errorf("cold rule %q: choose %q (the paper's: the first request of a bin with no live instance) or %q (all of them)", s, ColdFirst, ColdAll)
}

// Range is a span of bins [From, To).
type Range struct{ From, To int }

// Bins is the range's length.
func (r Range) Bins() int { return r.To - r.From }

// Options choose the counted range and the accounting.
type Options struct {
	// Range is counted; bins before it only warm policies up, bins after it
	// are not played.
	Range Range
	// PrepareSeconds is the memory-time, in seconds of the application's
	// memory, charged to waste for each fresh preparation (its reservation
	// before the bin and its shadow request). 0 charges nothing.
	PrepareSeconds float64
	// ReadySeconds, when > 0, is how long after its bin begins a freshly
	// prepared instance becomes ready (the decision came at the bin's
	// start, or the preparation took longer than planned): the bin's first
	// request is cold when it arrives before then. Requests arrive
	// uniformly within a bin, so with n of them that happens with chance
	// 1 − (1 − ReadySeconds/bin)^n, drawn per application and bin from a
	// fixed seed: every policy meets the same draws.
	ReadySeconds float64
}

// lateReady says whether the first of n requests in app i's bin b arrives
// before a fresh instance is ready, ready seconds into a bin of binSec.
func lateReady(i, b int, n uint32, ready, binSec float64) bool {
	if ready <= 0 || n == 0 {
		return false
	}
	if ready >= binSec {
		return true
	}
	h := uint64(i)*0x9e3779b97f4a7c15 ^ uint64(b)*0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	h ^= h >> 29
	u := float64(h>>11) / (1 << 53)
	return u < 1-math.Pow(1-ready/binSec, float64(n))
}

// Result is the exact accounting of one run over the counted range.
type Result struct {
	Policy    string
	EvalStart int
	EvalBins  int
	BinSec    float64
	Apps      []AppResult // same order as the trace's apps
}

// AppResult is one application's accounting.
type AppResult struct {
	ID           string
	MemoryMB     float64
	Requests     uint64
	ColdFirst    uint64  // bins with requests and no live instance (the paper's cold starts)
	ColdAll      uint64  // requests in those bins
	LiveBins     int     // bins with a live instance
	WastedBins   int     // live bins without a request
	Preparations int     // fresh preparations made (= shadow requests)
	IdleMBSec    float64 // WastedBins × MemoryMB × bin seconds
	PrepareMBSec float64 // Preparations × MemoryMB × PrepareSeconds
	WastedMBSec  float64 // IdleMBSec + PrepareMBSec
}

// Cold is the application's cold requests under rule.
func (a AppResult) Cold(rule ColdRule) uint64 {
	if rule == ColdAll {
		return a.ColdAll
	}
	return a.ColdFirst
}

// Split validates a train fraction and returns the first evaluation bin:
// floor(fraction × bins). Both parts must hold at least one bin.
func Split(bins int, fraction float64) (int, error) {
	if !(fraction > 0 && fraction < 1) {
		return 0, fmt.Errorf("train fraction %v: must be strictly between 0 and 1", fraction)
	}
	s := int(fraction * float64(bins))
	if s < 1 || s >= bins {
		return 0, fmt.Errorf("train fraction %v of %d bins leaves %d training and %d evaluation bins: both need at least one", fraction, bins, s, bins-s)
	}
	return s, nil
}

// Ranges splits bins into train, select and test ranges in time order:
// train is the first trainFrac of the bins, select the next selectFrac, test
// the rest. Each must hold at least one bin.
func Ranges(bins int, trainFrac, selectFrac float64) (train, sel, test Range, err error) {
	if !(trainFrac > 0 && selectFrac > 0 && trainFrac+selectFrac < 1) {
		return train, sel, test, fmt.Errorf("train fraction %v and select fraction %v: both must be positive and leave a test range (sum < 1)", trainFrac, selectFrac)
	}
	a := int(trainFrac * float64(bins))
	b := int((trainFrac + selectFrac) * float64(bins))
	if a < 1 || b <= a || b >= bins {
		return train, sel, test, fmt.Errorf("fractions %v and %v of %d bins leave %d training, %d select and %d test bins: each needs at least one", trainFrac, selectFrac, bins, a, b-a, bins-b)
	}
	return Range{0, a}, Range{a, b}, Range{b, bins}, nil
}

// ErrNoRequests means the evaluation range holds no request, so there is
// nothing to measure.
var ErrNoRequests = errors.New("the evaluation range holds no request")

// CheckRange fails when r is empty, outside tr, or holds no request.
func CheckRange(tr *trace.Trace, r Range) error {
	if r.From < 0 || r.From >= r.To || r.To > tr.Bins {
		return fmt.Errorf("evaluation range [%d, %d) of the trace's %d bins is empty or outside it", r.From, r.To, tr.Bins)
	}
	for i := range tr.Apps {
		for _, c := range tr.Apps[i].Counts[r.From:r.To] {
			if c > 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("bins [%d, %d) (%s to %s): %w", r.From, r.To,
		tr.BinStart(r.From).Format(time.RFC3339), tr.BinStart(r.To).Format(time.RFC3339), ErrNoRequests)
}

// NewEnv describes tr to a policy counted over r.
func NewEnv(tr *trace.Trace, r Range) Env {
	apps := make([]AppInfo, len(tr.Apps))
	for i := range tr.Apps {
		a := &tr.Apps[i]
		apps[i] = AppInfo{ID: a.ID, MemoryMB: a.MemoryOrDefault(), ReadRatio: a.ReadRatio}
	}
	return Env{Apps: apps, Start: tr.Start, Bin: tr.Bin, Bins: r.To, EvalStart: r.From}
}

// Run replays tr through p and accounts for the counted range.
func Run(tr *trace.Trace, p Policy, opt Options) (Result, error) {
	rg := opt.Range
	if err := CheckRange(tr, rg); err != nil {
		return Result{}, err
	}
	env := NewEnv(tr, rg)
	if err := p.Start(env); err != nil {
		return Result{}, fmt.Errorf("policy %s: start: %w", p.Name(), err)
	}
	if c, ok := p.(Clairvoyant); ok {
		c.Foresee(tr)
	}
	hist := &History{env: env, tr: tr}
	if hu, ok := p.(HistoryUser); ok {
		hu.UseHistory(hist)
	}
	n := len(tr.Apps)
	binSec := tr.Bin.Seconds()
	res := Result{Policy: p.Name(), EvalStart: rg.From, EvalBins: rg.Bins(), BinSec: binSec, Apps: make([]AppResult, n)}
	for i := range res.Apps {
		res.Apps[i].ID = env.Apps[i].ID
		res.Apps[i].MemoryMB = env.Apps[i].MemoryMB
	}
	counts := make([]uint32, n)
	live := make([]bool, n)
	held := make([]bool, n) // app held an instance (prepared or serving) in the previous bin
	for b := 0; b < rg.To; b++ {
		for i := range tr.Apps {
			counts[i] = tr.Apps[i].Counts[b]
		}
		if b >= rg.From {
			clear(live)
			if err := p.Plan(b, live); err != nil {
				return Result{}, fmt.Errorf("policy %s: bin %d: %w", p.Name(), b, err)
			}
			for i, c := range counts {
				r := &res.Apps[i]
				r.Requests += uint64(c)
				if live[i] {
					r.LiveBins++
					if !held[i] {
						r.Preparations++
						if lateReady(i, b, c, opt.ReadySeconds, binSec) {
							r.ColdFirst++
							r.ColdAll++
						}
					}
					if c == 0 {
						r.WastedBins++
					}
				} else if c > 0 {
					r.ColdFirst++
					r.ColdAll += uint64(c)
				}
				held[i] = live[i] || c > 0
			}
		} else {
			for i, c := range counts {
				held[i] = c > 0
			}
		}
		p.Observe(b, counts)
		hist.now = b + 1
	}
	for i := range res.Apps {
		r := &res.Apps[i]
		r.IdleMBSec = float64(r.WastedBins) * r.MemoryMB * binSec
		r.PrepareMBSec = float64(r.Preparations) * r.MemoryMB * opt.PrepareSeconds
		r.WastedMBSec = r.IdleMBSec + r.PrepareMBSec
	}
	return res, nil
}
