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
}

func (f *traceFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Format, "format", "", "trace format: azure2019, events or synth (required)")
	fs.StringVar(&f.File, "file", "", "trace file (azure2019 invocations CSV or events CSV)")
	fs.StringVar(&f.Memory, "memory", "", "azure2019 app memory CSV (HashApp, AverageAllocatedMb); apps without one use 170 MB")
	fs.DurationVar(&f.Bin, "bin", time.Minute, "bin width (one trace minute maps onto one bin for azure2019)")
	fs.IntVar(&f.Apps, "apps", 200, "synth: number of applications")
	fs.IntVar(&f.Days, "days", 2, "synth: days of workload")
	fs.Int64Var(&f.Seed, "seed", 1, "synth: workload seed")
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
		tr := trace.Synth(trace.SynthOptions{Apps: f.Apps, Days: f.Days, Bin: f.Bin, Seed: f.Seed})
		return tr, fmt.Sprintf("synthetic workload (%d apps, %d days, seed %d)", f.Apps, f.Days, f.Seed), nil
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

// modelFlags train "ours" on the training part.
type modelFlags struct {
	Epochs, Samples int
	Horizon         int
	Seed            uint64
	NoORT           bool
}

func (m *modelFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&m.Epochs, "epochs", 0, "ours: maximum training epochs (0 = the models package default)")
	fs.IntVar(&m.Samples, "samples", 0, "ours: training sequences (0 = the models package default)")
	fs.Uint64Var(&m.Seed, "train-seed", 1, "ours: training seed (same seed, same model)")
	fs.BoolVar(&m.NoORT, "no-ort", false, "ours: run the model with the pure-Go forward pass instead of ONNX Runtime")
}

// registerHorizon adds --horizon for eval and tune (`starter model train`
// shares modelFlags and has its own --horizon).
func (m *modelFlags) registerHorizon(fs *pflag.FlagSet) {
	fs.IntVar(&m.Horizon, "horizon", 0, "ours: bins the model looks ahead, which is also the lease TTL (0 = the models package default)")
}

// evalSetup is everything both commands share.
type evalSetup struct {
	tr        *trace.Trace
	desc      string
	evalStart int
	trainSec  float64
	model     string
}

// prepare loads the trace, splits it and, when ours is wanted, trains the
// demand model on the training part only and loads it the way production
// does (ONNX bytes through models.LoadDemand on ONNX Runtime).
func prepare(ctx context.Context, g *globals, tf *traceFlags, mf *modelFlags, frac float64, wantOurs bool) (*evalSetup, sim.Forecaster, error) {
	if !(frac > 0 && frac < 1) {
		return nil, nil, usageErr("--train-fraction %v: must be strictly between 0 and 1", frac)
	}
	tr, desc, err := tf.load()
	if err != nil {
		return nil, nil, err
	}
	evalStart, err := sim.Split(tr.Bins, frac)
	if err != nil {
		return nil, nil, usageErr("--train-fraction: %v", err)
	}
	if err := sim.CheckRange(tr, evalStart); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", desc, err)
	}
	s := &evalSetup{tr: tr, desc: desc, evalStart: evalStart}
	if !wantOurs {
		return s, nil, nil
	}
	began := time.Now()
	if mf.Horizon < 0 {
		return nil, nil, usageErr("--horizon %d: must be >= 0", mf.Horizon)
	}
	res, err := models.TrainDemand(ctx, trainingPart(tr, evalStart), models.TrainOptions{
		Spec:   models.DemandSpec{Horizon: mf.Horizon},
		Epochs: mf.Epochs, Samples: mf.Samples, Seed: mf.Seed, Logger: slog.Default(),
	}, func(p models.Progress) {
		slog.Info("training demand model", "epoch", p.Epoch, "epochs", p.Epochs, "batch", p.Batch, "batches", p.Batches, "train_loss", p.TrainLoss, "val_loss", p.ValLoss)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("train the demand model on bins [0, %d): %w", evalStart, err)
	}
	onnx, err := res.ONNX()
	if err != nil {
		return nil, nil, fmt.Errorf("export the demand model: %w", err)
	}
	if !mf.NoORT {
		if err := models.InitORT(g.ONNX.Lib); err != nil {
			return nil, nil, fmt.Errorf("%w (or pass --no-ort to use the pure-Go forward pass)", err)
		}
	}
	d, err := models.LoadDemand(onnx, res.Meta(), !mf.NoORT)
	if err != nil {
		return nil, nil, fmt.Errorf("load the trained demand model: %w", err)
	}
	s.trainSec = time.Since(began).Seconds()
	s.model = d.Version()
	return s, &sim.DemandForecaster{Model: d}, nil
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
		if !(t >= 0 && t <= 1) {
			return usageErr("--thresholds %v: each must be in [0, 1]", t)
		}
	}
	return nil
}

type evalOutput struct {
	Trace         string  `json:"trace"`
	TrainFraction float64 `json:"train_fraction"`
	Model         string  `json:"model,omitempty"`
	TrainSeconds  float64 `json:"train_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
	*sim.Report
}

func newEvalCmd(g *globals) *cobra.Command {
	var (
		tf      traceFlags
		mf      modelFlags
		frac    float64
		pols    string
		kaMin   []float64
		ths     []float64
		hrHours []float64
		lead    int
		outDir  string
		asJSON  bool
		asMD    bool
		perApp  bool
		title   string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Replay a trace through every preparation policy and compare cold starts with wasted memory",
		Long: `eval replays a trace bin by bin through the preparation policies and reports,
over the evaluation range (the part after --train-fraction), each policy's
75th-percentile and overall cold-start rate, its wasted memory-time as a
percentage of the fixed 10-minute keep-alive's on the same range, and the
preparations (= shadow requests) it made.

Policies: reactive (prepare nothing), keepalive (fixed keep-alive, swept
over --keepalive-minutes), histogram (the hybrid histogram policy of Shahrad
et al., ATC 2020, swept over its range --histogram-hours), ours (the
demand model trained on the training part, run on ONNX Runtime, swept over
--thresholds, lease TTL = the model's horizon) and oracle (knows the future:
the floor). The accounting is documented in the sim package.

With --out DIR it writes results.csv, results.json, pareto.svg and pareto.png
(and apps.csv, per application, with --per-app). --log-level info shows the
training progress.`,
		Example: `  starter eval --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --out docs/results/azure
  starter eval --format synth --apps 200 --days 2 --policies keepalive,histogram,oracle --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			began := time.Now()
			fams, err := sim.ParseFamilies(pols)
			if err != nil {
				return usageErr("--policies: %v", err)
			}
			if perApp && outDir == "" {
				return usageErr("--per-app writes apps.csv into --out: give --out")
			}
			kas, err := minutesToDurations(kaMin, "keepalive-minutes")
			if err != nil {
				return err
			}
			if err := checkThresholds(ths); err != nil {
				return err
			}
			hrs, err := toDurations(hrHours, time.Hour, "histogram-hours")
			if err != nil {
				return err
			}
			if lead < 0 {
				return usageErr("--oracle-lead %d: must be >= 0", lead)
			}
			setup, fc, err := prepare(cmd.Context(), g, &tf, &mf, frac, slices.Contains(fams, sim.FamilyOurs))
			if err != nil {
				return err
			}
			rep, err := sim.Evaluate(setup.tr, sim.EvalConfig{
				EvalStart: setup.evalStart, Families: fams, KeepAlives: kas, Thresholds: ths,
				HistRanges: hrs, Forecaster: fc, OracleLead: lead,
			})
			if err != nil {
				return err
			}
			out := evalOutput{Trace: setup.desc, TrainFraction: frac, Model: setup.model, TrainSeconds: setup.trainSec, TotalSeconds: time.Since(began).Seconds(), Report: rep}
			if title == "" {
				title = "Cold starts vs. wasted memory: " + setup.desc
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
				_, err := fmt.Fprintf(w, "Time: %.0f s in all, of which training %.0f s and simulation %.1f s.\n", out.TotalSeconds, out.TrainSeconds, float64(rep.SimMillis)/1000)
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
	mf.registerHorizon(fs)
	fs.Float64Var(&frac, "train-fraction", 2.0/3, "share of the trace, from its start, to train and warm policies on; the rest is evaluated")
	fs.StringVar(&pols, "policies", strings.Join(sim.Families, ","), "comma-separated policies: "+strings.Join(sim.Families, ", "))
	floatListVar(fs, &kaMin, "keepalive-minutes", minutes(sim.DefaultKeepAlives), "keepalive: the keep-alive sweep, minutes")
	floatListVar(fs, &ths, "thresholds", sim.DefaultThresholds, "ours: the threshold sweep")
	floatListVar(fs, &hrHours, "histogram-hours", scale(minutes(sim.DefaultHistogramRanges), 1.0/60), "histogram: the sweep of the histogram range, hours (the paper's default is 4)")
	fs.IntVar(&lead, "oracle-lead", 0, "oracle: bins prepared ahead of each request (0 = the floor)")
	fs.StringVar(&outDir, "out", "", "directory for results.csv, results.json, pareto.svg and pareto.png")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON instead of a table")
	fs.BoolVar(&perApp, "per-app", false, "also write apps.csv into --out: every policy's accounting per application")
	fs.BoolVar(&asMD, "markdown", false, "print the table as Markdown (for docs/results.md)")
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
	var rep json.RawMessage
	var b strings.Builder
	if err := sim.WriteJSON(&b, out.Report); err != nil {
		return err
	}
	rep = json.RawMessage(b.String())
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Trace         string          `json:"trace"`
		TrainFraction float64         `json:"train_fraction"`
		Model         string          `json:"model,omitempty"`
		TrainSeconds  float64         `json:"train_seconds"`
		TotalSeconds  float64         `json:"total_seconds"`
		Results       json.RawMessage `json:"results"`
	}{out.Trace, out.TrainFraction, out.Model, out.TrainSeconds, out.TotalSeconds, rep})
}

func newTuneCmd(g *globals) *cobra.Command {
	var (
		tf     traceFlags
		mf     modelFlags
		frac   float64
		policy string
		budget float64
		target float64
		ths    []float64
		kaMin  []float64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Recommend the threshold that meets a waste budget or a cold-start target",
		Long: `tune runs the same simulation as eval over a fine sweep of our policy's
threshold (or, with --policy keepalive, of the keep-alive) and recommends the
setting that meets the goal:

  --waste-budget X   the lowest p75 cold-start rate wasting at most X% of the
                     fixed 10-minute keep-alive's memory-time;
  --cold-target Y    the least waste with a p75 cold-start rate at most Y%.`,
		Example: `  starter tune --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --waste-budget 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if fs.Changed("waste-budget") == fs.Changed("cold-target") {
				return usageErr("give exactly one of --waste-budget and --cold-target")
			}
			goal := sim.Goal{WasteBudgetPct: budget, ColdTarget: target / 100}
			if fs.Changed("waste-budget") && !(budget > 0) {
				return usageErr("--waste-budget %v: must be a positive percentage", budget)
			}
			if fs.Changed("cold-target") && !(target > 0 && target <= 100) {
				return usageErr("--cold-target %v: must be a percentage in (0, 100]", target)
			}
			cfg := sim.EvalConfig{Families: []string{policy}}
			switch policy {
			case sim.FamilyOurs:
				if err := checkThresholds(ths); err != nil {
					return err
				}
				cfg.Thresholds = ths
			case sim.FamilyKeepAlive:
				kas, err := minutesToDurations(kaMin, "keepalive-minutes")
				if err != nil {
					return err
				}
				cfg.KeepAlives = kas
			default:
				return usageErr("--policy %q: tune sets the threshold of ours or the keep-alive of keepalive", policy)
			}
			setup, fc, err := prepare(cmd.Context(), g, &tf, &mf, frac, policy == sim.FamilyOurs)
			if err != nil {
				return err
			}
			cfg.EvalStart, cfg.Forecaster = setup.evalStart, fc
			rep, err := sim.Evaluate(setup.tr, cfg)
			if err != nil {
				return err
			}
			best, err := sim.Tune(rep.Rows, policy, goal)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Trace       string  `json:"trace"`
					Policy      string  `json:"policy"`
					Param       float64 `json:"param"`
					ColdP75     float64 `json:"cold_rate_p75"`
					ColdOverall float64 `json:"cold_rate_overall"`
					WastePct    float64 `json:"waste_pct_of_keepalive10"`
					Preps       int     `json:"preparations"`
				}{setup.desc, best.Policy, best.Param, best.ColdP75, best.ColdOverall, best.WastePct, best.Preparations})
			}
			what := "threshold"
			if policy == sim.FamilyKeepAlive {
				what = "keep-alive (minutes)"
			}
			fmt.Fprintf(w, "%s\nrecommended %s: %g (%s)\n  cold-start rate p75 %.1f%%, overall %.2f%%\n  wasted memory-time %.1f%% of the 10-minute keep-alive, %d preparations\n",
				setup.desc, what, best.Param, best.Policy, 100*best.ColdP75, 100*best.ColdOverall, best.WastePct, best.Preparations)
			return nil
		},
	}
	fs := cmd.Flags()
	tf.register(fs)
	mf.register(fs)
	mf.registerHorizon(fs)
	fs.Float64Var(&frac, "train-fraction", 2.0/3, "share of the trace, from its start, to train on; the rest is evaluated")
	fs.StringVar(&policy, "policy", sim.FamilyOurs, "policy to tune: ours (threshold) or keepalive (minutes)")
	fs.Float64Var(&budget, "waste-budget", 0, "wasted memory-time budget, % of the fixed 10-minute keep-alive's")
	fs.Float64Var(&target, "cold-target", 0, "p75 cold-start rate target, %")
	floatListVar(fs, &ths, "thresholds", fineThresholds(), "ours: thresholds to try")
	floatListVar(fs, &kaMin, "keepalive-minutes", []float64{1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120}, "keepalive: keep-alives to try, minutes")
	fs.BoolVar(&asJSON, "json", false, "print the recommendation as JSON")
	return cmd
}

// fineThresholds is 0.01, 0.02, …, 0.10, 0.125, …, 0.95.
func fineThresholds() []float64 {
	var out []float64
	for i := 1; i <= 10; i++ {
		out = append(out, float64(i)/100)
	}
	for t := 0.125; t < 0.951; t += 0.025 {
		out = append(out, math.Round(t*1000)/1000)
	}
	return out
}
