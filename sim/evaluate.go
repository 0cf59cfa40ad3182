package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/trace"
)

// Policy families, as named on the command line.
const (
	FamilyReactive  = "reactive"
	FamilyKeepAlive = "keepalive"
	FamilyPerApp    = "perapp-keepalive"
	FamilyHistogram = "histogram"
	FamilyOurs      = "ours"
	FamilyOracle    = "oracle"
)

// Families lists every policy family in report order.
var Families = []string{FamilyReactive, FamilyKeepAlive, FamilyPerApp, FamilyHistogram, FamilyOurs, FamilyOracle}

// ReferenceKeepAlive is the keep-alive every waste is normalised to.
const ReferenceKeepAlive = 10 * time.Minute

func minutesList(ms ...float64) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m * float64(time.Minute))
	}
	return out
}

// DefaultKeepAlives is the fixed keep-alive sweep, 1 to 240 minutes; the
// per-application keep-alive chooses among these too.
var DefaultKeepAlives = minutesList(1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 90, 120, 150, 180, 240)

// DefaultHistogramRanges is the hybrid histogram policy's sweep over its
// histogram range, 10 minutes to 8 hours (4 hours is the paper's default).
var DefaultHistogramRanges = minutesList(10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 480)

// DefaultThresholds is the sweep of the exchange rate between cold starts
// and idle memory, for ours and the per-application keep-alive: the
// threshold of a reference-size application (policy.Config.Threshold).
var DefaultThresholds = []float64{0.002, 0.0027, 0.0036, 0.0049, 0.0066, 0.0089, 0.012, 0.016, 0.022, 0.03,
	0.04, 0.054, 0.073, 0.099, 0.13, 0.18, 0.24, 0.33, 0.44, 0.6, 0.81}

// DefaultFloors is the sweep of ours' keep-alive floor, bins held after
// every bin with requests whatever the forecast; each is swept with every
// threshold.
var DefaultFloors = []int{0, 1, 2, 5, 10}

// DefaultTrustGaps is the sweep of ours' trust setting (idle stretches
// before an application's forecast is used): the default's short wait, and
// trusting the pooled model from an application's first request. Chosen on
// the select ranges of development fleets (other seeds than the reported
// ones) and of the Azure sample, where one or the other was best and a
// wait of 5 never was.
var DefaultTrustGaps = []int{policy.Default().TrustGaps, 0}

// DefaultMatchedWaste are the waste levels (% of the 10-minute keep-alive)
// at which every curve's p75 is read off.
var DefaultMatchedWaste = []float64{25, 50, 75, 100, 125, 150, 175, 200}

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

// EvalConfig is one evaluation: the ranges, which policies, which sweeps.
// Zero fields take the defaults.
type EvalConfig struct {
	// Select and Test are counted ranges, Select before Test. Every swept
	// setting is chosen on Select; Test reports.
	Select, Test Range
	Families     []string
	KeepAlives   []time.Duration
	HistRanges   []time.Duration
	Thresholds   []float64 // ours and the per-application keep-alive
	Floors       []int     // ours' keep-alive floors, bins
	// TrustGaps is ours' sweep of the idle stretches an application's
	// history must hold before its forecast is used (nil: Policy's alone).
	TrustGaps []int
	// Policy is ours' configuration; its Threshold, KeepAliveBins and
	// TrustGaps are swept, and one more setting is always in the sweep:
	// threshold 1 with a floor of the reference keep-alive, which is that
	// keep-alive.
	Policy policy.Config
	// SelectForecaster and TestForecaster are the demand model for each
	// range (a model trained before Select, and one trained before Test).
	SelectForecaster, TestForecaster Forecaster
	OracleLead                       int
	ColdRule                         ColdRule // default ColdFirst
	BudgetPct                        float64  // default 100 (the 10-minute keep-alive's waste)
	// ReadySeconds, when > 0, reruns every family's chosen setting on the
	// test range with fresh preparations ready only that long into their
	// bin (Options.ReadySeconds): what a late preparation costs each.
	ReadySeconds float64
	Bootstrap    int // resamples for the p75 intervals; default 1000, < 0 none
	MatchedWaste []float64

	referenceFloor int // the reference keep-alive in bins of the trace
}

func (c *EvalConfig) defaults() {
	if c.Families == nil {
		c.Families = Families
	}
	if c.KeepAlives == nil {
		c.KeepAlives = DefaultKeepAlives
	}
	if c.HistRanges == nil {
		c.HistRanges = DefaultHistogramRanges
	}
	if c.Thresholds == nil {
		c.Thresholds = DefaultThresholds
	}
	if c.Floors == nil {
		c.Floors = DefaultFloors
	}
	if c.Policy == (policy.Config{}) {
		c.Policy = policy.Default()
	}
	if c.TrustGaps == nil {
		c.TrustGaps = []int{c.Policy.TrustGaps}
	}
	if c.ColdRule == "" {
		c.ColdRule = ColdFirst
	}
	if c.BudgetPct == 0 {
		c.BudgetPct = 100
	}
	if c.Bootstrap == 0 {
		c.Bootstrap = 1000
	}
	if c.MatchedWaste == nil {
		c.MatchedWaste = DefaultMatchedWaste
	}
}

// RangeInfo describes a counted range.
type RangeInfo struct {
	FromBin int       `json:"from_bin"`
	ToBin   int       `json:"to_bin"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	// ReferenceWastedMBSec is the 10-minute keep-alive's waste on the range.
	ReferenceWastedMBSec float64 `json:"reference_wasted_mb_s"`
}

// Matched is one family's test-range curve read off at fixed wastes as a
// staircase of measured settings, never interpolated: at each waste level,
// the lowest p75 of any of the family's settings whose test-range waste is
// at or under it (BestAtWaste), with that setting; NaN and "" where none is.
type Matched struct {
	Family   string    `json:"family"`
	WastePct []float64 `json:"waste_pct"`
	ColdP75  []float64 `json:"cold_rate_p75"`
	// Setting is the policy (name and parameter) that gave each level's
	// p75, and SettingWastePct its own test-range waste (<= the level).
	Setting         []string  `json:"setting"`
	SettingWastePct []float64 `json:"setting_waste_pct"`
}

// Difference is p75(ours) − p75(Family) on the test range, each at its
// setting chosen on the select range (0..1 rates; negative: ours lower),
// with a 90% interval from a paired bootstrap over the applications with
// requests in the range (PairedBootstrap); NaNs without resamples.
type Difference struct {
	Family   string     `json:"family"`
	Setting  string     `json:"setting"` // the family's chosen setting
	Ours     string     `json:"ours"`    // our chosen setting
	Estimate float64    `json:"estimate"`
	CI90     [2]float64 `json:"ci90"`
}

// Report is an evaluation's outcome.
type Report struct {
	Apps       int       `json:"apps"`
	Bins       int       `json:"bins"`
	BinSeconds float64   `json:"bin_seconds"`
	TrainFrom  time.Time `json:"train_from"`
	Select     RangeInfo `json:"select"`
	Test       RangeInfo `json:"test"`
	ColdRule   ColdRule  `json:"cold_rule"`
	BudgetPct  float64   `json:"budget_pct"`
	// PrepareSeconds is what each fresh preparation is charged.
	PrepareSeconds float64 `json:"prepare_seconds"`

	// Rows are every setting on both ranges, select rows first.
	Rows []Summary `json:"rows"`
	// Selection is, per family, the select-range row chosen at the budget;
	// Chosen the same settings on the test range (Selected is true there).
	Selection []Summary `json:"selection"`
	Chosen    []Summary `json:"chosen"`
	// Differences are, for each family chosen beside ours, p75(ours) −
	// p75(that family) on the test range with a paired bootstrap interval.
	Differences []Difference `json:"p75_difference_vs,omitempty"`
	// LateReady are the chosen settings on the test range again with fresh
	// preparations ready only ReadySeconds into their bin.
	ReadySeconds float64   `json:"late_ready_seconds,omitempty"`
	LateReady    []Summary `json:"late_ready,omitempty"`
	Matched      []Matched `json:"matched_waste"`
	// Calibration is the test model's forecasts on the test range against
	// what happened, overall and per application group.
	Calibration []GroupCalibration `json:"calibration,omitempty"`
	SimMillis   int64              `json:"simulation_ms"`

	Runs []Result `json:"-"` // per-application accounting, same order as Rows
}

// TestRows are the test-range rows.
func (r *Report) TestRows() []Summary {
	var out []Summary
	for _, s := range r.Rows {
		if s.Range == RangeTest {
			out = append(out, s)
		}
	}
	return out
}

type setting struct {
	family string
	param  float64
	mk     func(fc *ForecastCache) Policy // a fresh policy for one run
}

func (c *EvalConfig) settings() ([]setting, error) {
	var out []setting
	for _, f := range c.Families {
		switch f {
		case FamilyReactive:
			out = append(out, setting{f, 0, func(*ForecastCache) Policy { return Reactive{} }})
		case FamilyKeepAlive:
			for _, k := range c.KeepAlives {
				out = append(out, setting{f, k.Minutes(), func(*ForecastCache) Policy { return NewKeepAlive(k) }})
			}
		case FamilyPerApp:
			for _, th := range c.Thresholds {
				out = append(out, setting{f, th, func(*ForecastCache) Policy {
					return NewPerAppKeepAlive(th, c.Policy.ReferenceMB, c.KeepAlives)
				}})
			}
		case FamilyHistogram:
			for _, r := range c.HistRanges {
				out = append(out, setting{f, r.Hours(), func(*ForecastCache) Policy {
					h := NewHistogram()
					h.Range = r
					return h
				}})
			}
		case FamilyOurs:
			if c.SelectForecaster == nil || c.TestForecaster == nil {
				return nil, fmt.Errorf("policy %q needs the demand model, and none was given", FamilyOurs)
			}
			type point struct {
				th           float64
				floor, trust int
			}
			var pts []point
			for _, g := range c.TrustGaps {
				for _, k := range c.Floors {
					for _, th := range c.Thresholds {
						pts = append(pts, point{th, k, g})
					}
				}
			}
			// Threshold 1 trusts no forecast: one such setting whatever the trust.
			pts = append(pts, point{1, c.referenceFloor, c.Policy.TrustGaps})
			for _, pt := range pts {
				cfg := c.Policy
				cfg.Threshold, cfg.KeepAliveBins, cfg.TrustGaps = pt.th, pt.floor, pt.trust
				if err := cfg.Validate(); err != nil {
					return nil, fmt.Errorf("ours at threshold %v, floor %d, trust gaps %d: %w", pt.th, pt.floor, pt.trust, err)
				}
				out = append(out, setting{f, pt.th, func(fc *ForecastCache) Policy {
					return NewOurs(fc, cfg)
				}})
			}
		case FamilyOracle:
			out = append(out, setting{f, 0, func(*ForecastCache) Policy { return &Oracle{Lead: c.OracleLead} }})
		default:
			return nil, fmt.Errorf("unknown policy %q: choose from %s", f, strings.Join(Families, ", "))
		}
	}
	return out, nil
}

// Evaluate runs every requested policy with its sweep over the select and
// the test range, chooses each family's setting on the select range at the
// waste budget, and reads the test-range curves off at matched wastes.
func Evaluate(tr *trace.Trace, cfg EvalConfig) (*Report, error) {
	cfg.defaults()
	if cfg.Select.To > cfg.Test.From {
		return nil, fmt.Errorf("select range [%d, %d) must end before the test range [%d, %d) begins", cfg.Select.From, cfg.Select.To, cfg.Test.From, cfg.Test.To)
	}
	for _, r := range []Range{cfg.Select, cfg.Test} {
		if err := CheckRange(tr, r); err != nil {
			return nil, err
		}
	}
	cfg.referenceFloor = binsCeil(ReferenceKeepAlive, tr.Bin)
	sets, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rep := &Report{
		Apps: len(tr.Apps), Bins: tr.Bins, BinSeconds: tr.Bin.Seconds(), TrainFrom: tr.Start,
		ColdRule: cfg.ColdRule, BudgetPct: cfg.BudgetPct, PrepareSeconds: cfg.Policy.PrepareSeconds,
	}
	opts := func(r Range) Options { return Options{Range: r, PrepareSeconds: cfg.Policy.PrepareSeconds} }
	caches := map[string]*ForecastCache{}
	if cfg.SelectForecaster != nil {
		caches[RangeSelect] = NewForecastCache(cfg.SelectForecaster)
	}
	if cfg.TestForecaster != nil {
		caches[RangeTest] = NewForecastCache(cfg.TestForecaster)
	}
	for k, rg := range map[string]Range{RangeSelect: cfg.Select, RangeTest: cfg.Test} {
		ref, err := Run(tr, NewKeepAlive(ReferenceKeepAlive), opts(rg))
		if err != nil {
			return nil, err
		}
		info := RangeInfo{FromBin: rg.From, ToBin: rg.To, From: tr.BinStart(rg.From), To: tr.BinStart(rg.To),
			ReferenceWastedMBSec: Summarize(ref, cfg.ColdRule).WastedMBSec}
		if k == RangeSelect {
			rep.Select = info
		} else {
			rep.Test = info
		}
	}
	for _, rng := range []struct {
		name string
		r    Range
		ref  float64
	}{{RangeSelect, cfg.Select, rep.Select.ReferenceWastedMBSec}, {RangeTest, cfg.Test, rep.Test.ReferenceWastedMBSec}} {
		for i, st := range sets {
			res, err := Run(tr, st.mk(caches[rng.name]), opts(rng.r))
			if err != nil {
				return nil, err
			}
			s := Summarize(res, cfg.ColdRule)
			s.Family, s.Param, s.Range = st.family, st.param, rng.name
			s.Normalize(rng.ref)
			s.ColdP75CI = Bootstrap(AppColdRates(res, cfg.ColdRule), cfg.Bootstrap, uint64(i+1))
			rep.Rows = append(rep.Rows, s)
			rep.Runs = append(rep.Runs, res)
		}
	}
	rep.selectSettings(cfg.Families)
	if rep.Differences, err = rep.differences(cfg.ColdRule, cfg.Bootstrap); err != nil {
		return nil, err
	}
	rep.Matched = matchedWaste(rep.TestRows(), cfg.Families, cfg.MatchedWaste)
	if cfg.ReadySeconds > 0 {
		rep.ReadySeconds = cfg.ReadySeconds
		for _, ch := range rep.Chosen {
			for _, st := range sets {
				if st.family != ch.Family {
					continue
				}
				p := st.mk(caches[RangeTest])
				if p.Name() != ch.Policy {
					continue
				}
				o := opts(cfg.Test)
				o.ReadySeconds = cfg.ReadySeconds
				res, err := Run(tr, p, o)
				if err != nil {
					return nil, err
				}
				s := Summarize(res, cfg.ColdRule)
				s.Family, s.Param, s.Range, s.Selected = ch.Family, ch.Param, RangeTest, true
				s.Normalize(rep.Test.ReferenceWastedMBSec)
				rep.LateReady = append(rep.LateReady, s)
				break
			}
		}
	}
	if c := caches[RangeTest]; c != nil {
		if rep.Calibration, err = Calibration(tr, c, cfg.Test); err != nil {
			return nil, err
		}
	}
	rep.SimMillis = time.Since(began).Milliseconds()
	return rep, nil
}

// withinBudget: no more waste than the budget (a policy that wastes
// nothing is within any budget, even when the reference wastes nothing).
func withinBudget(s Summary, budget float64) bool {
	return s.WastePct <= budget+1e-9 || (math.IsNaN(s.WastePct) && s.WastedMBSec == 0)
}

// better orders rows for selection: lower p75, then lower overall rate,
// then less waste.
func better(a, b Summary) bool {
	if a.ColdP75 != b.ColdP75 {
		return a.ColdP75 < b.ColdP75
	}
	if a.ColdOverall != b.ColdOverall {
		return a.ColdOverall < b.ColdOverall
	}
	return a.WastedMBSec < b.WastedMBSec
}

// selectSettings picks, per family, the select-range row within the budget
// that is best (lowest p75, then overall cold rate, then waste); a family
// with no row within the budget gets its least wasteful one. The test row
// of the same setting is marked Selected.
func (r *Report) selectSettings(fams []string) {
	for _, f := range fams {
		var best *Summary
		inBudget := false
		for i := range r.Rows {
			s := &r.Rows[i]
			if s.Family != f || s.Range != RangeSelect {
				continue
			}
			ok := withinBudget(*s, r.BudgetPct)
			switch {
			case best == nil,
				ok && !inBudget,
				ok && better(*s, *best),
				!ok && !inBudget && s.WastedMBSec < best.WastedMBSec:
				best, inBudget = s, ok || inBudget
			}
		}
		if best == nil {
			continue
		}
		r.Selection = append(r.Selection, *best)
		for i := range r.Rows {
			s := &r.Rows[i]
			if s.Family == f && s.Range == RangeTest && s.Policy == best.Policy {
				s.Selected = true
				r.Chosen = append(r.Chosen, *s)
			}
		}
	}
}

// differences compares our chosen test row with every other family's,
// resampling the applications n times per comparison (seeded by the
// comparison's place, so the same runs give the same intervals). None
// without ours.
func (r *Report) differences(rule ColdRule, n int) ([]Difference, error) {
	return CompareChosen(r, r, rule, n)
}

// chosenTest is, per family, the index in Rows (and Runs) of its chosen
// test row, and the families in report order.
func (r *Report) chosenTest() (map[string]int, []string) {
	chosen := map[string]int{}
	var fams []string
	for i, s := range r.Rows {
		if s.Selected && s.Range == RangeTest {
			chosen[s.Family] = i
			fams = append(fams, s.Family)
		}
	}
	return chosen, fams
}

// CompareChosen is, for every family chosen in base other than ours,
// p75(ours) − p75(that family) on the test range, ours as chosen in ours
// (base itself, or an evaluation of ours alone with another model over the
// same trace and ranges), resampling the applications n times per
// comparison (seeded by the comparison's place). None without ours.
func CompareChosen(ours, base *Report, rule ColdRule, n int) ([]Difference, error) {
	oc, _ := ours.chosenTest()
	o, ok := oc[FamilyOurs]
	if !ok || len(ours.Runs) != len(ours.Rows) {
		return nil, nil
	}
	chosen, fams := base.chosenTest()
	var out []Difference
	for _, f := range fams {
		if f == FamilyOurs {
			continue
		}
		k := chosen[f]
		a, b, err := pairedRates(ours.Runs[o], base.Runs[k], rule)
		if err != nil {
			return nil, err
		}
		out = append(out, Difference{Family: f, Setting: base.Rows[k].Policy, Ours: ours.Rows[o].Policy,
			Estimate: stats.Percentile(a, 0.75) - stats.Percentile(b, 0.75),
			CI90:     PairedBootstrap(a, b, n, uint64(len(out)+1))})
	}
	return out, nil
}

// pairedRates is both runs' per-application cold-start rates under rule,
// for the applications with requests, in the same order; the runs must
// cover the same applications over the same range.
func pairedRates(a, b Result, rule ColdRule) ([]float64, []float64, error) {
	if len(a.Apps) != len(b.Apps) || a.EvalStart != b.EvalStart || a.EvalBins != b.EvalBins {
		return nil, nil, fmt.Errorf("runs %s and %s cover different applications or ranges: they cannot be paired", a.Policy, b.Policy)
	}
	for i := range a.Apps {
		if a.Apps[i].ID != b.Apps[i].ID || a.Apps[i].Requests != b.Apps[i].Requests {
			return nil, nil, fmt.Errorf("runs %s and %s differ at application %d (%s, %s): they cannot be paired", a.Policy, b.Policy, i, a.Apps[i].ID, b.Apps[i].ID)
		}
	}
	return AppColdRates(a, rule), AppColdRates(b, rule), nil
}

// Frontier is the Pareto frontier of rows: sorted by waste, each point
// strictly better in p75 than every less wasteful one.
func Frontier(rows []Summary) []Summary {
	pts := slices.Clone(rows)
	pts = slices.DeleteFunc(pts, func(s Summary) bool { return math.IsNaN(s.WastePct) })
	slices.SortFunc(pts, func(a, b Summary) int {
		return cmp.Or(cmp.Compare(a.WastePct, b.WastePct), cmp.Compare(a.ColdP75, b.ColdP75))
	})
	var out []Summary
	for _, p := range pts {
		if len(out) == 0 || p.ColdP75 < out[len(out)-1].ColdP75 {
			out = append(out, p)
		}
	}
	return out
}

// BestAtWaste is the best measured setting among rows at waste w: the row
// with the lowest p75 whose WastePct is at most w (ties: the less wasteful),
// never a point between two settings; false when no row wastes that little.
// Read at increasing w it is a staircase stepping down at the rows of the
// Pareto frontier. Rows without a waste percentage are left out.
func BestAtWaste(rows []Summary, w float64) (Summary, bool) {
	var best *Summary
	for i := range rows {
		s := &rows[i]
		if math.IsNaN(s.WastePct) || s.WastePct > w+1e-9 {
			continue
		}
		if best == nil || s.ColdP75 < best.ColdP75 || (s.ColdP75 == best.ColdP75 && s.WastePct < best.WastePct) {
			best = s
		}
	}
	if best == nil {
		return Summary{}, false
	}
	return *best, true
}

func matchedWaste(rows []Summary, fams []string, levels []float64) []Matched {
	var out []Matched
	for _, f := range fams {
		var fr []Summary
		for _, s := range rows {
			if s.Family == f && !math.IsNaN(s.WastePct) {
				fr = append(fr, s)
			}
		}
		if len(fr) == 0 {
			continue
		}
		m := Matched{Family: f, WastePct: slices.Clone(levels)}
		for _, w := range levels {
			s, ok := BestAtWaste(fr, w)
			if !ok {
				s = Summary{ColdP75: math.NaN(), WastePct: math.NaN()}
			}
			m.ColdP75 = append(m.ColdP75, s.ColdP75)
			m.Setting = append(m.Setting, s.Policy)
			m.SettingWastePct = append(m.SettingWastePct, s.WastePct)
		}
		out = append(out, m)
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
			if withinBudget(*c, g.WasteBudgetPct) && (best == nil || better(*c, *best)) {
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

// GroupCalibration is the calibration of the forecasts for one group of
// applications ("all" for every one).
type GroupCalibration struct {
	Group string `json:"group"`
	Apps  int    `json:"apps"`
	models.Calibration
}

// Calibration scores the forecasts cached for range r against whether each
// application had a request in each bin, overall and per application group
// (models.GroupOf on the history before r). Bins without a cached forecast
// are left out.
func Calibration(tr *trace.Trace, cache *ForecastCache, r Range) ([]GroupCalibration, error) {
	groups := make([]string, len(tr.Apps))
	buf := make([]float64, r.From)
	for i, a := range tr.Apps {
		for b := range r.From {
			buf[b] = float64(a.Counts[b])
		}
		groups[i] = models.GroupOf(buf)
	}
	type acc struct {
		p    []float64
		y    []bool
		apps int
	}
	by := map[string]*acc{"all": {}}
	for _, g := range models.Groups {
		by[g] = &acc{}
	}
	for i := range tr.Apps {
		by["all"].apps++
		by[groups[i]].apps++
	}
	for b := r.From; b < r.To; b++ {
		probs, ok := cache.Cached(b)
		if !ok {
			continue
		}
		for i, p := range probs {
			y := tr.Apps[i].Counts[b] > 0
			for _, g := range []string{"all", groups[i]} {
				by[g].p = append(by[g].p, p)
				by[g].y = append(by[g].y, y)
			}
		}
	}
	var out []GroupCalibration
	for _, g := range append([]string{"all"}, models.Groups...) {
		a := by[g]
		if len(a.p) == 0 {
			continue
		}
		c, err := models.Calibrate(a.p, a.y)
		if err != nil {
			return nil, fmt.Errorf("calibration of %s apps: %w", g, err)
		}
		out = append(out, GroupCalibration{Group: g, Apps: a.apps, Calibration: c})
	}
	return out, nil
}
