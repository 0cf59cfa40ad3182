package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/models/lifecycle"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/sim"
	"github.com/forewarm/forewarm/trace"
)

func init() {
	addCommand(newEvalCmd)
	addCommand(newTuneCmd)
}

// FormatSynth evaluates on trace.Synth's deterministic workload.
const formatSynth = "synth"

// traceFlags choose the workload to replay.
type traceFlags struct {
	Format, File, Memory string
	Bin                  time.Duration
	Apps, Days           int
	Seed                 int64
	Mix                  string
	Jitter, Drift        float64
}

func (f *traceFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Format, "format", "", "trace format: azure2019, events or synth (required)")
	fs.StringVar(&f.File, "file", "", "trace file (azure2019 invocations CSV or events CSV)")
	fs.StringVar(&f.Memory, "memory", "", "azure2019 app memory CSV (HashApp, AverageAllocatedMb); apps without one use 170 MB")
	fs.DurationVar(&f.Bin, "bin", time.Minute, "bin width (one trace minute maps onto one bin for azure2019)")
	fs.IntVar(&f.Apps, "apps", 200, "synth: number of applications")
	fs.IntVar(&f.Days, "days", 2, "synth: days of workload")
	fs.Int64Var(&f.Seed, "seed", 1, "synth: workload seed")
	fs.StringVar(&f.Mix, "mix", "", "synth: shares of the application kinds, e.g. timer=0.5,bursty=0.3,rare=0.2 (kinds: heavy, timer, diurnal, bursty, rare, session; default the built-in mix)")
	fs.Float64Var(&f.Jitter, "timer-jitter", 0, "synth: chance that a timer fires one bin early or late")
	fs.Float64Var(&f.Drift, "drift", 0, "synth: share of applications (0 to 1) that appear, go quiet or change rhythm once during the workload")
}

// load reads or generates the trace and describes it in one line.
func (f *traceFlags) load() (*trace.Trace, string, error) {
	switch f.Format {
	case "":
		return nil, "", usageErr("--format is required: azure2019, events or synth")
	case formatSynth:
		if f.File != "" || f.Memory != "" {
			return nil, "", usageErr("--format synth generates its workload: drop --file and --memory")
		}
		if f.Apps < 1 || f.Days < 1 {
			return nil, "", usageErr("--apps %d and --days %d must be >= 1", f.Apps, f.Days)
		}
		var mix trace.Mix
		if f.Mix != "" {
			m, err := trace.ParseMix(f.Mix)
			if err != nil {
				return nil, "", usageErr("--mix: %v", err)
			}
			mix = m
		}
		if !(f.Jitter >= 0 && f.Jitter <= 1) {
			return nil, "", usageErr("--timer-jitter %v: must be in [0, 1]", f.Jitter)
		}
		if !(f.Drift >= 0 && f.Drift <= 1) {
			return nil, "", usageErr("--drift %v: must be in [0, 1]", f.Drift)
		}
		tr := trace.Synth(trace.SynthOptions{Apps: f.Apps, Days: f.Days, Bin: f.Bin, Seed: f.Seed, Mix: mix, TimerJitter: f.Jitter, Drift: f.Drift})
		desc := fmt.Sprintf("synthetic workload (%d apps, %d days, seed %d", f.Apps, f.Days, f.Seed)
		if f.Mix != "" {
			desc += ", mix " + f.Mix
		}
		if f.Jitter > 0 {
			desc += fmt.Sprintf(", timer jitter %g", f.Jitter)
		}
		if f.Drift > 0 {
			desc += fmt.Sprintf(", drift %g", f.Drift)
		}
		return tr, desc + ")", nil
	case trace.FormatAzure2019, trace.FormatEvents:
		if f.File == "" {
			return nil, "", usageErr("--file is required with --format %s", f.Format)
		}
	default:
		return nil, "", usageErr("--format %q: expected azure2019, events or synth", f.Format)
	}
	if f.Bin <= 0 {
		return nil, "", usageErr("--bin %v: must be positive", f.Bin)
	}
	tr, err := trace.Read(f.Format, f.File, trace.ReadOptions{MemoryPath: f.Memory, Bin: f.Bin})
	if err != nil {
		return nil, "", fmt.Errorf("read trace: %w", err)
	}
	if len(tr.Apps) == 0 || tr.Bins == 0 {
		return nil, "", fmt.Errorf("trace %s holds no activity (%d apps, %d bins)", f.File, len(tr.Apps), tr.Bins)
	}
	if f.Memory != "" {
		// A memory file that names none of the trace's apps is the wrong file:
		// every app would silently fall back to the default.
		known := 0
		for _, a := range tr.Apps {
			if a.MemoryMB > 0 {
				known++
			}
		}
		if known == 0 {
			return nil, "", fmt.Errorf("memory file %s gives the memory of none of the %d apps in %s: is it the memory file of this trace?", f.Memory, len(tr.Apps), f.File)
		}
		if known < len(tr.Apps) {
			slog.Warn("apps without memory in the memory file use the default", "apps", len(tr.Apps)-known, "default_mb", trace.DefaultMemoryMB)
		}
	}
	return tr, fmt.Sprintf("%s (%s)", filepath.Base(f.File), f.Format), nil
}

// modelFlags train "ours".
type modelFlags struct {
	Epochs, Samples int
	Seed            uint64
	NoORT           bool
}

func (m *modelFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&m.Epochs, "epochs", 0, "ours: maximum training epochs (0 = the models package default)")
	fs.IntVar(&m.Samples, "samples", 0, "ours: training sequences (0 = the models package default)")
	fs.Uint64Var(&m.Seed, "train-seed", 1, "ours: training seed (same seed, same model)")
	fs.BoolVar(&m.NoORT, "no-ort", false, "ours: run the model with the pure-Go forward pass instead of ONNX Runtime")
}

// rangeFlags split the trace into train, select and test ranges.
type rangeFlags struct {
	Train, Select float64
	Retrain       bool
}

func (r *rangeFlags) register(fs *pflag.FlagSet) {
	fs.Float64Var(&r.Train, "train-fraction", 1.0/3, "share of the trace, from its start, that only trains the model and warms the policies up")
	fs.Float64Var(&r.Select, "select-fraction", 1.0/3, "share after it on which every policy's setting is chosen; the rest is the test range that is reported")
	fs.BoolVar(&r.Retrain, "retrain", true, "ours: train the model again on everything before the test range (same settings) for the test; false reuses the select range's model")
}

// evalSetup is everything both commands share.
type evalSetup struct {
	tr                 *trace.Trace
	desc               string
	train, sel, test   sim.Range
	trainSec           float64
	selModel, tstModel string
}

// prepare loads the trace, splits it into train, select and test ranges
// and, when ours is wanted, trains the demand model on the bins before the
// select range (and again on those before the test range) and loads it the
// way production does (lifecycle.TrainDemand: ONNX bytes loaded back on ONNX Runtime).
func prepare(ctx context.Context, g *globals, tf *traceFlags, mf *modelFlags, rf *rangeFlags, wantOurs bool) (*evalSetup, sim.Forecaster, sim.Forecaster, error) {
	tr, desc, err := tf.load()
	if err != nil {
		return nil, nil, nil, err
	}
	train, sel, test, err := sim.Ranges(tr.Bins, rf.Train, rf.Select)
	if err != nil {
		return nil, nil, nil, usageErr("--train-fraction/--select-fraction: %v", err)
	}
	for _, r := range []sim.Range{sel, test} {
		if err := sim.CheckRange(tr, r); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", desc, err)
		}
	}
	s := &evalSetup{tr: tr, desc: desc, train: train, sel: sel, test: test}
	if !wantOurs {
		return s, nil, nil, nil
	}
	if !mf.NoORT {
		if err := models.InitORT(g.ONNX.Lib); err != nil {
			return nil, nil, nil, fmt.Errorf("%w (or pass --no-ort to use the pure-Go forward pass)", err)
		}
	}
	began := time.Now()
	selFc, selVersion, err := trainForecaster(ctx, tr, sel.From, mf)
	if err != nil {
		return nil, nil, nil, err
	}
	tstFc, tstVersion := selFc, selVersion
	if rf.Retrain {
		if tstFc, tstVersion, err = trainForecaster(ctx, tr, test.From, mf); err != nil {
			return nil, nil, nil, err
		}
	}
	s.trainSec = time.Since(began).Seconds()
	s.selModel, s.tstModel = selVersion, tstVersion
	return s, selFc, tstFc, nil
}

// trainForecaster trains the demand model on bins [0, end) of tr only and
// loads it back from its ONNX bytes, as the worker does.
func trainForecaster(ctx context.Context, tr *trace.Trace, end int, mf *modelFlags) (sim.Forecaster, string, error) {
	cand, err := lifecycle.TrainDemand(ctx, trainingPart(tr, end), demand.TrainOptions{
		Epochs: mf.Epochs, Samples: mf.Samples, Seed: mf.Seed, Logger: slog.Default(),
		Version: fmt.Sprintf("demand-eval-before-bin-%d", end),
	}, !mf.NoORT, func(p demand.Progress) {
		slog.Info("training demand model", "before_bin", end, "epoch", p.Epoch, "epochs", p.Epochs, "batch", p.Batch, "batches", p.Batches, "train_loss", p.TrainLoss, "val_loss", p.ValLoss)
	})
	if err != nil {
		return nil, "", fmt.Errorf("train the demand model on bins [0, %d): %w", end, err)
	}
	d := cand.Model
	return &sim.DemandForecaster{Model: d, Workers: 2}, d.Version(), nil
}

// trainingPart is tr cut before evalStart: the model cannot see what it
// will be judged on.
func trainingPart(tr *trace.Trace, evalStart int) *trace.Trace {
	cut := *tr
	cut.Bins = evalStart
	cut.Apps = make([]trace.App, len(tr.Apps))
	for i, a := range tr.Apps {
		a.Counts = slices.Clone(a.Counts[:evalStart])
		cut.Apps[i] = a
	}
	return &cut
}

func minutesToDurations(ms []float64, flag string) ([]time.Duration, error) {
	return toDurations(ms, time.Minute, flag)
}

// toDurations converts flag values in unit to durations; each must be positive.
func toDurations(xs []float64, unit time.Duration, flag string) ([]time.Duration, error) {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		if !(x > 0) || math.IsInf(x, 0) {
			return nil, usageErr("--%s %v: must be positive", flag, x)
		}
		out[i] = time.Duration(x * float64(unit)).Round(time.Second) // 1/6 h reads as 10m
	}
	return out, nil
}

func checkThresholds(ths []float64) error {
	for _, t := range ths {
		if !(t >= policy.Limits.MinThreshold && t <= policy.Limits.MaxThreshold) {
			return usageErr("--thresholds %v: each must be in [%g, %g]", t, policy.Limits.MinThreshold, policy.Limits.MaxThreshold)
		}
	}
	return nil
}

type evalOutput struct {
	Trace          string  `json:"trace"`
	TrainFraction  float64 `json:"train_fraction"`
	SelectFraction float64 `json:"select_fraction"`
	SelectModel    string  `json:"select_model,omitempty"`
	TestModel      string  `json:"test_model,omitempty"`
	TrainSeconds   float64 `json:"train_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	*sim.Report
	Seeds        []seedRun `json:"-"`
	SeedsSeconds float64   `json:"-"` // the other seeds' runs, not in TotalSeconds
}

// seedRun is ours with a model trained from another seed: the setting it
// chose on the select range, that setting on the test range, and its p75
// against each baseline's chosen setting of the main run, paired.
type seedRun struct {
	Seed        uint64      `json:"train_seed"`
	Select      sim.Summary `json:"select"`
	Test        sim.Summary `json:"test"`
	Differences []seedDiff  `json:"p75_difference_vs"`
}

// seedDiff is a sim.Difference whose interval is absent without resamples.
type seedDiff struct {
	Family   string      `json:"family"`
	Setting  string      `json:"setting"`
	Ours     string      `json:"ours"`
	Estimate float64     `json:"estimate"`
	CI90     *[2]float64 `json:"ci90"`
}

// moreSeeds evaluates ours again for each seed (the baselines do not
// depend on it) and compares each with the main run's baselines.
func moreSeeds(ctx context.Context, g *globals, tf *traceFlags, mf modelFlags, rf *rangeFlags, cfg sim.EvalConfig, base *sim.Report, seeds []uint) ([]seedRun, error) {
	var out []seedRun
	for _, seed := range seeds {
		mf.Seed = uint64(seed)
		c := cfg
		c.Families, c.ReadySeconds, c.Bootstrap = []string{sim.FamilyOurs}, 0, -1
		_, rep, err := evaluate(ctx, g, tf, &mf, rf, c)
		if err != nil {
			return nil, fmt.Errorf("train seed %d: %w", seed, err)
		}
		if len(rep.Selection) != 1 || len(rep.Chosen) != 1 {
			return nil, fmt.Errorf("train seed %d: no setting of ours chosen", seed)
		}
		diffs, err := sim.CompareChosen(rep, base, cfg.ColdRule, cfg.Bootstrap)
		if err != nil {
			return nil, fmt.Errorf("train seed %d: %w", seed, err)
		}
		run := seedRun{Seed: uint64(seed), Select: rep.Selection[0], Test: rep.Chosen[0]}
		for _, d := range diffs {
			sd := seedDiff{Family: d.Family, Setting: d.Setting, Ours: d.Ours, Estimate: d.Estimate}
			if !math.IsNaN(d.CI90[0]) && !math.IsNaN(d.CI90[1]) {
				sd.CI90 = &d.CI90
			}
			run.Differences = append(run.Differences, sd)
		}
		out = append(out, run)
	}
	return out, nil
}

// writeSeeds prints the other seeds' runs as a Markdown table.
func writeSeeds(w io.Writer, first uint64, runs []seedRun) {
	if len(runs) == 0 {
		return
	}
	var fams []string
	for _, d := range runs[0].Differences {
		fams = append(fams, d.Family)
	}
	fmt.Fprintf(w, "\nOurs with the demand model trained from other seeds (the main run's is seed %d; baselines as chosen above), test range; p75 differences in percentage points with 90%% paired bootstrap intervals:\n\n", first)
	fmt.Fprint(w, "| train seed | chosen setting | select: cold p75 | test: cold p75 | test: mean per app | test: overall | test: waste |")
	for _, f := range fams {
		fmt.Fprintf(w, " ours − %s |", f)
	}
	fmt.Fprint(w, "\n|---:|---|---:|---:|---:|---:|---:|")
	for range fams {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, r := range runs {
		fmt.Fprintf(w, "| %d | %s | %.1f%% | %.1f%% | %.1f%% | %.2f%% | %.1f%% |", r.Seed, r.Test.Policy, 100*r.Select.ColdP75, 100*r.Test.ColdP75,
			100*r.Test.ColdMeanApp, 100*r.Test.ColdOverall, r.Test.WastePct)
		for _, d := range r.Differences {
			if d.CI90 == nil {
				fmt.Fprintf(w, " %+.1f |", 100*d.Estimate)
				continue
			}
			fmt.Fprintf(w, " %+.1f (%+.1f to %+.1f) |", 100*d.Estimate, 100*d.CI90[0], 100*d.CI90[1])
		}
		fmt.Fprintln(w)
	}
}

// sweepFlags are the settings every family is swept over, and how the
// choice among them is made.
type sweepFlags struct {
	pols    string
	kaMin   []float64
	ths     []float64
	hrHours []float64
	lead    int
	rule    string
	prepSec float64
	budget  float64
	boot    int
	matched []float64
	floors  []int
	obj     string
	trust   []int
	fallbk  int
	ready   float64
	seeds   []uint
}

func (f *sweepFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.pols, "policies", strings.Join(sim.Families, ","), "comma-separated policies: "+strings.Join(sim.Families, ", "))
	floatListVar(fs, &f.kaMin, "keepalive-minutes", minutes(sim.DefaultKeepAlives), "keepalive and perapp-keepalive: the keep-alives, minutes")
	floatListVar(fs, &f.ths, "thresholds", sim.DefaultThresholds, "ours and perapp-keepalive: the sweep of the reference application's threshold (the price of a cold start in idle memory)")
	floatListVar(fs, &f.hrHours, "histogram-hours", scale(minutes(sim.DefaultHistogramRanges), 1.0/60), "histogram: the sweep of the histogram range, hours (the paper's default is 4)")
	fs.IntVar(&f.lead, "oracle-lead", 0, "oracle: bins prepared ahead of each request (0 = the floor)")
	fs.StringVar(&f.rule, "cold-rule", string(sim.ColdFirst), "which requests of a bin with no live instance are cold: first (the paper's; the instance it starts serves the rest) or all")
	fs.Float64Var(&f.prepSec, "prepare-seconds", policy.Default().PrepareSeconds, "memory-time each fresh preparation (reservation and shadow request) is charged, in seconds of the app's memory")
	fs.Float64Var(&f.budget, "budget", 100, "waste budget for choosing each family's setting on the select range, % of the 10-minute keep-alive's waste")
	fs.IntVar(&f.boot, "bootstrap", 1000, "bootstrap resamples of the applications for the p75's 90% intervals (0: none)")
	fs.IntSliceVar(&f.floors, "keep-alive-floors", sim.DefaultFloors, "ours: the sweep of the keep-alive floor, bins held after every bin with requests whatever the forecast (each with every threshold)")
	fs.UintSliceVar(&f.seeds, "more-train-seeds", nil, "ours: train and evaluate again with each of these training seeds (twice the training each) and compare each with the baselines, paired")
	fs.Float64Var(&f.ready, "late-ready-seconds", 30, "rerun every family's chosen setting on the test range with fresh preparations ready only this many seconds into their bin (0: no such run)")
	fs.IntSliceVar(&f.trust, "trust-gaps", sim.DefaultTrustGaps, "ours: the sweep of the idle stretches between requests an application's last day must hold before its forecast is used (each with every threshold and floor)")
	fs.IntVar(&f.fallbk, "fallback-bins", policy.Default().FallbackBins, "ours: the keep-alive, in bins, of an application whose forecast is not trusted")
	fs.StringVar(&f.obj, "objective", string(policy.Default().Objective), "ours: what a cold start is worth: per_application (every application's cold-start rate counts equally, as in the p75) or per_request")
	floatListVar(fs, &f.matched, "matched-waste", sim.DefaultMatchedWaste, "waste levels (% of the 10-minute keep-alive) at which each curve's p75 is read off")
}

// config checks the flags and builds the evaluation's configuration.
func (f *sweepFlags) config() (sim.EvalConfig, error) {
	var cfg sim.EvalConfig
	fams, err := sim.ParseFamilies(f.pols)
	if err != nil {
		return cfg, usageErr("--policies: %v", err)
	}
	kas, err := minutesToDurations(f.kaMin, "keepalive-minutes")
	if err != nil {
		return cfg, err
	}
	if err := checkThresholds(f.ths); err != nil {
		return cfg, err
	}
	hrs, err := toDurations(f.hrHours, time.Hour, "histogram-hours")
	if err != nil {
		return cfg, err
	}
	if f.lead < 0 {
		return cfg, usageErr("--oracle-lead %d: must be >= 0", f.lead)
	}
	rule, err := sim.ParseColdRule(f.rule)
	if err != nil {
		return cfg, usageErr("--cold-rule: %v", err)
	}
	pc := policy.Default()
	pc.PrepareSeconds = f.prepSec
	if err := pc.Validate(); err != nil {
		return cfg, usageErr("--prepare-seconds %v: %v", f.prepSec, err)
	}
	pc.Objective = policy.Objective(f.obj)
	if err := pc.Validate(); err != nil || pc.Objective == "" {
		return cfg, usageErr("--objective %q: choose %s or %s", f.obj, policy.PerApplication, policy.PerRequest)
	}
	if !(f.ready >= 0) {
		return cfg, usageErr("--late-ready-seconds %v: must be >= 0", f.ready)
	}
	pc.FallbackBins = f.fallbk
	if err := pc.Validate(); err != nil {
		return cfg, usageErr("--fallback-bins %d: %v", f.fallbk, err)
	}
	if len(f.trust) == 0 {
		return cfg, usageErr("--trust-gaps: give at least one value")
	}
	for _, g := range f.trust {
		if g < 0 || g > policy.Limits.MaxTrustGaps {
			return cfg, usageErr("--trust-gaps %d: each must be in [0, %d]", g, policy.Limits.MaxTrustGaps)
		}
	}
	for _, k := range f.floors {
		if k < 0 || k > policy.Limits.MaxKeepAliveBins {
			return cfg, usageErr("--keep-alive-floors %d: each must be in [0, %d] bins", k, policy.Limits.MaxKeepAliveBins)
		}
	}
	if !(f.budget > 0) {
		return cfg, usageErr("--budget %v: must be a positive percentage", f.budget)
	}
	if f.boot < 0 {
		return cfg, usageErr("--bootstrap %d: must be >= 0", f.boot)
	}
	boot := f.boot
	if boot == 0 {
		boot = -1 // none
	}
	for _, m := range f.matched {
		if !(m > 0) {
			return cfg, usageErr("--matched-waste %v: each must be a positive percentage", m)
		}
	}
	return sim.EvalConfig{Families: fams, KeepAlives: kas, Thresholds: f.ths, HistRanges: hrs, OracleLead: f.lead,
		ColdRule: rule, Policy: pc, BudgetPct: f.budget, Bootstrap: boot, MatchedWaste: f.matched, Floors: f.floors, TrustGaps: f.trust, ReadySeconds: f.ready}, nil
}

// evaluate prepares the trace and the models and runs the evaluation.
func evaluate(ctx context.Context, g *globals, tf *traceFlags, mf *modelFlags, rf *rangeFlags, cfg sim.EvalConfig) (*evalSetup, *sim.Report, error) {
	setup, selFc, tstFc, err := prepare(ctx, g, tf, mf, rf, slices.Contains(cfg.Families, sim.FamilyOurs))
	if err != nil {
		return nil, nil, err
	}
	cfg.Select, cfg.Test = setup.sel, setup.test
	cfg.SelectForecaster, cfg.TestForecaster = selFc, tstFc
	rep, err := sim.Evaluate(setup.tr, cfg)
	return setup, rep, err
}

func newEvalCmd(g *globals) *cobra.Command {
	var (
		tf     traceFlags
		mf     modelFlags
		rf     rangeFlags
		sf     sweepFlags
		outDir string
		asJSON bool
		asMD   bool
		perApp bool
		title  string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Replay a trace through every preparation policy and compare cold starts with wasted memory",
		Long: `eval replays a trace bin by bin through the preparation policies and
reports each policy's 75th-percentile and overall cold-start rate, its
wasted memory-time (idle reserved memory plus what its preparations cost) as
a percentage of the fixed 10-minute keep-alive's on the same range, and the
preparations (= shadow requests) it made.

The trace is cut in time order into three ranges: train (the model learns,
policies warm up), select (every swept setting of every policy is run and
each family's setting is chosen: the lowest p75 within --budget), and test
(the chosen settings are reported, with 90% bootstrap intervals; the whole
curves are printed and plotted for reading). Nothing is chosen on the test
range.

Policies: reactive (prepare nothing), keepalive (fixed keep-alive, swept
over --keepalive-minutes), perapp-keepalive (each application's best fixed
keep-alive on all of its history so far, re-chosen every hour; 10 minutes
until it has 5 gaps between requests to judge by; at the price of a cold
start swept over --thresholds), histogram (the hybrid histogram policy of Shahrad
et al., ATC 2020, swept over its range --histogram-hours), ours (the demand
model, trained before each range, run on ONNX Runtime, deciding through the
production policy package, swept over --thresholds) and oracle (knows the
future: the floor). The accounting is documented in the sim package.

With --out DIR it writes results.csv, results.json, pareto.svg and pareto.png
(and apps.csv, per application, with --per-app). --log-level info shows the
training progress.`,
		Example: `  starter eval --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --out docs/results/azure
  starter eval --format synth --apps 200 --days 3 --policies keepalive,histogram,oracle --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			began := time.Now()
			cfg, err := sf.config()
			if err != nil {
				return err
			}
			if perApp && outDir == "" {
				return usageErr("--per-app writes apps.csv into --out: give --out")
			}
			setup, rep, err := evaluate(cmd.Context(), g, &tf, &mf, &rf, cfg)
			if err != nil {
				return err
			}
			total := time.Since(began).Seconds()
			var seeds []seedRun
			if len(sf.seeds) > 0 && slices.Contains(cfg.Families, sim.FamilyOurs) {
				if seeds, err = moreSeeds(cmd.Context(), g, &tf, mf, &rf, cfg, rep, sf.seeds); err != nil {
					return err
				}
			}
			out := evalOutput{Trace: setup.desc, TrainFraction: rf.Train, SelectFraction: rf.Select, SelectModel: setup.selModel, TestModel: setup.tstModel,
				TrainSeconds: setup.trainSec, TotalSeconds: total, Report: rep, Seeds: seeds, SeedsSeconds: time.Since(began).Seconds() - total}
			if title == "" {
				title = "Cold starts vs. wasted memory, test range: " + setup.desc
			}
			if outDir != "" {
				if err := writeResults(outDir, &out, title, perApp); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeEvalJSON(w, &out)
			}
			if asMD {
				if err := sim.WriteMarkdown(w, rep); err != nil {
					return err
				}
				writeSeeds(w, mf.Seed, seeds)
				_, err := fmt.Fprintf(w, "\nTime: %.0f s in all, of which training %.0f s and simulation %.1f s.\n", out.TotalSeconds, out.TrainSeconds, float64(rep.SimMillis)/1000)
				return err
			}
			fmt.Fprintf(w, "%s\n", setup.desc)
			if err := sim.WriteTable(w, rep); err != nil {
				return err
			}
			fmt.Fprintf(w, "\ntime: %.1fs total (training %.1fs, simulation %.1fs)\n", out.TotalSeconds, out.TrainSeconds, float64(rep.SimMillis)/1000)
			if outDir != "" {
				fmt.Fprintf(w, "wrote %s\n", strings.Join(resultFiles(outDir), ", "))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	tf.register(fs)
	mf.register(fs)
	rf.register(fs)
	sf.register(fs)
	fs.StringVar(&outDir, "out", "", "directory for results.csv, results.json, pareto.svg and pareto.png")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON instead of a table")
	fs.BoolVar(&perApp, "per-app", false, "also write apps.csv into --out: every policy's accounting per application")
	fs.BoolVar(&asMD, "markdown", false, "print the tables as Markdown (for docs/results.md)")
	fs.StringVar(&title, "title", "", "plot title")
	return cmd
}

// floatList is a comma-separated list of numbers that prints its default
// the way it is typed (pflag's float64Slice prints 0.500000).
type floatList []float64

func (l *floatList) String() string {
	parts := make([]string, len(*l))
	for i, v := range *l {
		parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func (l *floatList) Set(s string) error {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", f)
		}
		out = append(out, v)
	}
	*l = out
	return nil
}

func (l *floatList) Type() string { return "numbers" }

func floatListVar(fs *pflag.FlagSet, p *[]float64, name string, def []float64, usage string) {
	*p = slices.Clone(def)
	fs.Var((*floatList)(p), name, usage)
}

func minutes(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Minutes()
	}
	return out
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

func resultFiles(dir string) []string {
	var out []string
	for _, n := range []string{"results.csv", "results.json", "pareto.svg", "pareto.png"} {
		out = append(out, filepath.Join(dir, n))
	}
	return out
}

func writeResults(dir string, out *evalOutput, title string, perApp bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	write := func(name string, f func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		file, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := f(file); err != nil {
			file.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		return file.Close()
	}
	if err := write("results.csv", func(w io.Writer) error { return sim.WriteCSV(w, out.Report) }); err != nil {
		return err
	}
	if err := write("results.json", func(w io.Writer) error { return writeEvalJSON(w, out) }); err != nil {
		return err
	}
	if perApp {
		if err := write("apps.csv", func(w io.Writer) error { return sim.WritePerAppCSV(w, out.Report) }); err != nil {
			return err
		}
	}
	for _, ext := range []string{"svg", "png"} {
		if err := write("pareto."+ext, func(w io.Writer) error { return sim.WritePlot(w, out.Report, title, ext) }); err != nil {
			return err
		}
	}
	return nil
}

// writeEvalJSON writes the run's context with the report (NaN-safe).
func writeEvalJSON(w io.Writer, out *evalOutput) error {
	var b strings.Builder
	if err := sim.WriteJSON(&b, out.Report); err != nil {
		return err
	}
	return emitJSON(w, struct {
		Trace          string          `json:"trace"`
		TrainFraction  float64         `json:"train_fraction"`
		SelectFraction float64         `json:"select_fraction"`
		SelectModel    string          `json:"select_model,omitempty"`
		TestModel      string          `json:"test_model,omitempty"`
		TrainSeconds   float64         `json:"train_seconds"`
		TotalSeconds   float64         `json:"total_seconds"`
		Results        json.RawMessage `json:"results"`
		Seeds          []seedRun       `json:"more_train_seeds,omitempty"`
		SeedsSeconds   float64         `json:"more_train_seeds_seconds,omitempty"`
	}{out.Trace, out.TrainFraction, out.SelectFraction, out.SelectModel, out.TestModel, out.TrainSeconds, out.TotalSeconds, json.RawMessage(b.String()), out.Seeds, out.SeedsSeconds})
}

func newTuneCmd(g *globals) *cobra.Command {
	var (
		tf     traceFlags
		mf     modelFlags
		rf     rangeFlags
		sf     sweepFlags
		fam    string
		target float64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Recommend the setting that meets a waste budget or a cold-start target, chosen on the select range",
		Long: `tune runs the same simulation as eval for one policy family and recommends
the setting chosen on the select range (never the test range) that meets
the goal, then shows what it gave on the test range:

  --budget X        the lowest p75 cold-start rate wasting at most X% of the
                    fixed 10-minute keep-alive's memory-time (default 100);
  --cold-target Y   the least waste with a p75 cold-start rate at most Y%.

For ours the setting is the threshold to give the loops
(` + "`starter loop threshold --app <app> <threshold>`" + `), for keepalive the keep-alive in minutes.`,
		Example: `  starter tune --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --budget 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if fs.Changed("budget") && fs.Changed("cold-target") {
				return usageErr("give one of --budget and --cold-target, not both")
			}
			sf.pols = fam
			cfg, err := sf.config()
			if err != nil {
				return err
			}
			if len(cfg.Families) != 1 || (fam != sim.FamilyOurs && fam != sim.FamilyKeepAlive && fam != sim.FamilyPerApp && fam != sim.FamilyHistogram) {
				return usageErr("--policy %q: tune sets one of ours, perapp-keepalive, keepalive or histogram", fam)
			}
			goal := sim.Goal{WasteBudgetPct: cfg.BudgetPct}
			if fs.Changed("cold-target") {
				if !(target > 0 && target <= 100) {
					return usageErr("--cold-target %v: must be a percentage in (0, 100]", target)
				}
				goal = sim.Goal{ColdTarget: target / 100}
			}
			setup, rep, err := evaluate(cmd.Context(), g, &tf, &mf, &rf, cfg)
			if err != nil {
				return err
			}
			var selRows []sim.Summary
			for _, r := range rep.Rows {
				if r.Range == sim.RangeSelect {
					selRows = append(selRows, r)
				}
			}
			best, err := sim.Tune(selRows, fam, goal)
			if err != nil {
				return err
			}
			var test sim.Summary
			for _, r := range rep.TestRows() {
				if r.Param == best.Param {
					test = r
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return emitJSON(w, struct {
					Trace     string  `json:"trace"`
					Policy    string  `json:"policy"`
					Param     float64 `json:"param"`
					SelectP75 float64 `json:"select_cold_rate_p75"`
					SelectPct float64 `json:"select_waste_pct_of_keepalive10"`
					TestP75   float64 `json:"test_cold_rate_p75"`
					TestOver  float64 `json:"test_cold_rate_overall"`
					TestPct   float64 `json:"test_waste_pct_of_keepalive10"`
					TestPreps int     `json:"test_preparations"`
				}{setup.desc, best.Policy, best.Param, best.ColdP75, best.WastePct, test.ColdP75, test.ColdOverall, test.WastePct, test.Preparations})
			}
			fmt.Fprintf(w, "%s\nrecommended: %s (setting %g), chosen on the select range: cold p75 %.1f%%, waste %.1f%% of the 10-minute keep-alive\n",
				setup.desc, best.Policy, best.Param, 100*best.ColdP75, best.WastePct)
			fmt.Fprintf(w, "on the test range it gave: cold p75 %.1f%%, overall %.2f%%, waste %.1f%%, %d preparations\n",
				100*test.ColdP75, 100*test.ColdOverall, test.WastePct, test.Preparations)
			return nil
		},
	}
	fs := cmd.Flags()
	tf.register(fs)
	mf.register(fs)
	rf.register(fs)
	sf.register(fs)
	fs.StringVar(&fam, "policy", sim.FamilyOurs, "policy family to tune: ours, perapp-keepalive, keepalive or histogram")
	fs.Float64Var(&target, "cold-target", 0, "p75 cold-start rate target, %, instead of the waste budget")
	fs.BoolVar(&asJSON, "json", false, "print the recommendation as JSON")
	return cmd
}
