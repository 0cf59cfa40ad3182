package sim

import (
	"errors"
	"fmt"
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

// PreparationCounter is implemented by policies that count their own
// preparations (our policy renews a lease inside a continuous hold, which
// the generic rule would not see). Run takes its figures over the rule's.
type PreparationCounter interface {
	Preparations() []int // per application, evaluation range only
}

// Env is what a policy knows about a run: the applications' profiles and
// the bin grid, not their counts.
type Env struct {
	Apps      []AppInfo
	Start     time.Time     // start of bin 0
	Bin       time.Duration // bin width
	Bins      int           // total bins
	EvalStart int           // first evaluation bin
}

// AppInfo is an application's static profile.
type AppInfo struct {
	ID        string
	MemoryMB  float64 // never 0: trace.DefaultMemoryMB stands in for unknown
	ReadRatio float64
}

// Options choose the evaluation range.
type Options struct {
	EvalStart int // first bin counted; bins before it only warm policies up
}

// Result is the exact accounting of one run over the evaluation range.
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
	Cold         uint64  // cold requests
	LiveBins     int     // bins with a live preparation
	WastedBins   int     // live bins without a request
	WastedMBSec  float64 // WastedBins × MemoryMB × bin seconds
	Preparations int     // fresh preparations made (= shadow requests)
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

// ErrNoRequests means the evaluation range holds no request, so there is
// nothing to measure.
var ErrNoRequests = errors.New("the evaluation range holds no request")

// CheckRange fails when the evaluation range of tr starting at evalStart
// is empty or holds no request.
func CheckRange(tr *trace.Trace, evalStart int) error {
	if evalStart < 0 || evalStart >= tr.Bins {
		return fmt.Errorf("evaluation range [%d, %d) of the trace's bins is empty", evalStart, tr.Bins)
	}
	for i := range tr.Apps {
		for _, c := range tr.Apps[i].Counts[evalStart:] {
			if c > 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("bins [%d, %d) (%s to %s): %w", evalStart, tr.Bins,
		tr.BinStart(evalStart).Format(time.RFC3339), tr.BinStart(tr.Bins).Format(time.RFC3339), ErrNoRequests)
}

// NewEnv describes tr to a policy.
func NewEnv(tr *trace.Trace, evalStart int) Env {
	apps := make([]AppInfo, len(tr.Apps))
	for i := range tr.Apps {
		a := &tr.Apps[i]
		apps[i] = AppInfo{ID: a.ID, MemoryMB: a.MemoryOrDefault(), ReadRatio: a.ReadRatio}
	}
	return Env{Apps: apps, Start: tr.Start, Bin: tr.Bin, Bins: tr.Bins, EvalStart: evalStart}
}

// Run replays tr through p and accounts for the evaluation range.
func Run(tr *trace.Trace, p Policy, opt Options) (Result, error) {
	if err := CheckRange(tr, opt.EvalStart); err != nil {
		return Result{}, err
	}
	env := NewEnv(tr, opt.EvalStart)
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
	res := Result{Policy: p.Name(), EvalStart: opt.EvalStart, EvalBins: tr.Bins - opt.EvalStart, BinSec: binSec, Apps: make([]AppResult, n)}
	for i := range res.Apps {
		res.Apps[i].ID = env.Apps[i].ID
		res.Apps[i].MemoryMB = env.Apps[i].MemoryMB
	}
	counts := make([]uint32, n)
	live := make([]bool, n)
	held := make([]bool, n) // app held an instance (prepared or serving) in the previous bin
	for b := 0; b < tr.Bins; b++ {
		for i := range tr.Apps {
			counts[i] = tr.Apps[i].Counts[b]
		}
		if b >= opt.EvalStart {
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
					}
					if c == 0 {
						r.WastedBins++
					}
				} else {
					r.Cold += uint64(c)
				}
				held[i] = live[i] || c > 0
			}
		} else if b == opt.EvalStart-1 {
			for i, c := range counts {
				held[i] = c > 0
			}
		}
		p.Observe(b, counts)
		hist.now = b + 1
	}
	if pc, ok := p.(PreparationCounter); ok {
		for i, n := range pc.Preparations() {
			res.Apps[i].Preparations = n
		}
	}
	for i := range res.Apps {
		r := &res.Apps[i]
		r.WastedMBSec = float64(r.WastedBins) * r.MemoryMB * binSec
	}
	return res, nil
}
