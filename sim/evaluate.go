package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// Policy families, as named on the command line.
const (
	FamilyReactive  = "reactive"
	FamilyKeepAlive = "keepalive"
	FamilyHistogram = "histogram"
	FamilyOurs      = "ours"
	FamilyOracle    = "oracle"
)

// Families lists every policy family in report order.
var Families = []string{FamilyReactive, FamilyKeepAlive, FamilyHistogram, FamilyOurs, FamilyOracle}

// ReferenceKeepAlive is the keep-alive every waste is normalised to.
const ReferenceKeepAlive = 10 * time.Minute

// DefaultKeepAlives is the fixed keep-alive sweep.
var DefaultKeepAlives = []time.Duration{1 * time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, 60 * time.Minute}

// DefaultHistogramRanges is the hybrid histogram policy's sweep over its
// histogram range, as in the paper's Pareto figure (4 hours is its default).
var DefaultHistogramRanges = []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}

// DefaultThresholds is our policy's threshold sweep.
var DefaultThresholds = []float64{0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9}

// ParseFamilies reads a comma-separated list of policy families; empty
// means all of them. Unknown names are an error naming the known ones.
func ParseFamilies(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return slices.Clone(Families), nil
	}
	var out []string
	for _, f := range strings.Split(list, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if !slices.Contains(Families, f) {
			return nil, fmt.Errorf("unknown policy %q: choose from %s", f, strings.Join(Families, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// EvalConfig is one evaluation: which policies, which sweeps.
type EvalConfig struct {
	EvalStart  int
	Families   []string        // nil = all
	KeepAlives []time.Duration // nil = DefaultKeepAlives
	Thresholds []float64       // nil = DefaultThresholds
	HistRanges []time.Duration // nil = DefaultHistogramRanges
	Forecaster Forecaster      // needed for "ours"
	OracleLead int             // bins
}

// Report is an evaluation's outcome.
type Report struct {
	Apps       int       `json:"apps"`
	Bins       int       `json:"bins"`
	BinSeconds float64   `json:"bin_seconds"`
	TrainFrom  time.Time `json:"train_from"`
	EvalFrom   time.Time `json:"eval_from"`
	EvalTo     time.Time `json:"eval_to"`
	EvalStart  int       `json:"eval_start_bin"`

	ReferenceWastedMBSec float64   `json:"reference_wasted_mb_s"` // keep-alive 10 min
	Rows                 []Summary `json:"rows"`
	// Best is, per family, the row with the lowest p75 cold-start rate among
	// those wasting no more than the 10-minute keep-alive.
	Best      []Summary `json:"best_within_keepalive10_waste"`
	SimMillis int64     `json:"simulation_ms"`

	Runs []Result `json:"-"` // per-application accounting, same order as Rows
}

// Evaluate runs every requested policy (with its sweep) over tr and
// normalises the waste to the 10-minute keep-alive on the same range.
func Evaluate(tr *trace.Trace, cfg EvalConfig) (*Report, error) {
	if err := CheckRange(tr, cfg.EvalStart); err != nil {
		return nil, err
	}
	fams := cfg.Families
	if fams == nil {
		fams = Families
	}
	kas, ths, hrs := cfg.KeepAlives, cfg.Thresholds, cfg.HistRanges
	if hrs == nil {
		hrs = DefaultHistogramRanges
	}
	if kas == nil {
		kas = DefaultKeepAlives
	}
	if ths == nil {
		ths = DefaultThresholds
	}

	type run struct {
		family string
		param  float64
		p      Policy
	}
	var runs []run
	for _, f := range fams {
		switch f {
		case FamilyReactive:
			runs = append(runs, run{f, 0, Reactive{}})
		case FamilyKeepAlive:
			for _, k := range kas {
				runs = append(runs, run{f, k.Minutes(), NewKeepAlive(k)})
			}
		case FamilyHistogram:
			for _, r := range hrs {
				h := NewHistogram()
				h.Range = r
				runs = append(runs, run{f, r.Hours(), h})
			}
		case FamilyOurs:
			if cfg.Forecaster == nil {
				return nil, fmt.Errorf("policy %q needs the demand model, and none was given", FamilyOurs)
			}
			cache := NewForecastCache(cfg.Forecaster)
			for _, th := range ths {
				runs = append(runs, run{f, th, NewOurs(cache, th)})
			}
		case FamilyOracle:
			runs = append(runs, run{f, 0, &Oracle{Lead: cfg.OracleLead}})
		default:
			return nil, fmt.Errorf("unknown policy %q: choose from %s", f, strings.Join(Families, ", "))
		}
	}

	began := time.Now()
	ref, err := Run(tr, NewKeepAlive(ReferenceKeepAlive), Options{EvalStart: cfg.EvalStart})
	if err != nil {
		return nil, err
	}
	refWaste := Summarize(ref).WastedMBSec
	rep := &Report{
		Apps: len(tr.Apps), Bins: tr.Bins, BinSeconds: tr.Bin.Seconds(),
		TrainFrom: tr.Start, EvalFrom: tr.BinStart(cfg.EvalStart), EvalTo: tr.BinStart(tr.Bins),
		EvalStart: cfg.EvalStart, ReferenceWastedMBSec: refWaste,
	}
	for _, r := range runs {
		res, err := Run(tr, r.p, Options{EvalStart: cfg.EvalStart})
		if err != nil {
			return nil, err
		}
		s := Summarize(res)
		s.Family, s.Param = r.family, r.param
		s.Normalize(refWaste)
		rep.Rows = append(rep.Rows, s)
		rep.Runs = append(rep.Runs, res)
	}
	rep.SimMillis = time.Since(began).Milliseconds()
	rep.Best = bestWithin(rep.Rows, fams, 100)
	return rep, nil
}

// bestWithin picks, per family, the lowest p75 cold-start rate (then the
// lowest waste) among rows wasting at most maxPct of the reference.
func bestWithin(rows []Summary, fams []string, maxPct float64) []Summary {
	var out []Summary
	for _, f := range fams {
		var best *Summary
		for i := range rows {
			r := &rows[i]
			if r.Family != f || !(r.WastePct <= maxPct+1e-9 || (math.IsNaN(r.WastePct) && r.WastedMBSec == 0)) {
				continue
			}
			if best == nil || r.ColdP75 < best.ColdP75 || (r.ColdP75 == best.ColdP75 && r.WastedMBSec < best.WastedMBSec) {
				best = r
			}
		}
		if best != nil {
			out = append(out, *best)
		}
	}
	return out
}

// Goal is what `starter tune` aims at: exactly one of the two is set.
type Goal struct {
	WasteBudgetPct float64 // lowest p75 cold-start rate with WastePct <= this
	ColdTarget     float64 // lowest waste with ColdP75 <= this (0..1)
}

// Tune recommends the row of family that meets goal best. It fails, naming
// the closest row, when no row meets it.
func Tune(rows []Summary, family string, g Goal) (Summary, error) {
	var cands []Summary
	for _, r := range rows {
		if r.Family == family {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		return Summary{}, fmt.Errorf("no %s rows to tune from", family)
	}
	switch {
	case g.WasteBudgetPct > 0 && g.ColdTarget > 0, g.WasteBudgetPct <= 0 && g.ColdTarget <= 0:
		return Summary{}, fmt.Errorf("give exactly one goal: a waste budget or a cold-start target")
	case g.WasteBudgetPct > 0:
		var best *Summary
		for i := range cands {
			c := &cands[i]
			if c.WastePct <= g.WasteBudgetPct && (best == nil || c.ColdP75 < best.ColdP75 || (c.ColdP75 == best.ColdP75 && c.WastePct < best.WastePct)) {
				best = c
			}
		}
		if best == nil {
			low := slices.MinFunc(cands, func(a, b Summary) int { return cmp.Compare(a.WastePct, b.WastePct) })
			return Summary{}, fmt.Errorf("no %s setting wastes at most %.1f%% of the 10-minute keep-alive; the least wasteful, %s, wastes %.1f%%", family, g.WasteBudgetPct, low.Policy, low.WastePct)
		}
		return *best, nil
	default:
		var best *Summary
		for i := range cands {
			c := &cands[i]
			if c.ColdP75 <= g.ColdTarget && (best == nil || c.WastedMBSec < best.WastedMBSec || (c.WastedMBSec == best.WastedMBSec && c.ColdP75 < best.ColdP75)) {
				best = c
			}
		}
		if best == nil {
			low := slices.MinFunc(cands, func(a, b Summary) int { return cmp.Compare(a.ColdP75, b.ColdP75) })
			return Summary{}, fmt.Errorf("no %s setting reaches a p75 cold-start rate of %.1f%%; the best, %s, reaches %.1f%%", family, 100*g.ColdTarget, low.Policy, 100*low.ColdP75)
		}
		return *best, nil
	}
}
