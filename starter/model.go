package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/affinitydata"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/models/lifecycle"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
)

func init() { addCommand(newModelCmd) }

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Train, evaluate, publish and list the learned models",
		Long: `The demand model (an LSTM over an application's recent activity that gives
P(at least one request in the next bin)) and the affinity model (a host
score) are trained in Go, exported to ONNX and run by ONNX Runtime. Trained
versions live in the ClickHouse model registry; the workers load the
champion of each kind.`,
	}
	cmd.AddCommand(newModelTrainCmd(g), newModelTrainAffinityCmd(g), newModelListCmd(g))
	return cmd
}

// modelTrainOutput is what `model train --json` prints.
type modelTrainOutput struct {
	Version      string                    `json:"version"`
	Source       string                    `json:"source"`
	TrainUntil   time.Time                 `json:"train_until"`
	EvalFrom     time.Time                 `json:"eval_from"`
	EvalTo       time.Time                 `json:"eval_to"`
	Spec         demand.Spec               `json:"spec"`
	Epochs       int                       `json:"epochs"`
	BestEpoch    int                       `json:"best_epoch"`
	TrainSeqs    int                       `json:"train_sequences"`
	SeqPerSec    float64                   `json:"train_sequences_per_second"`
	TrainSeconds float64                   `json:"train_seconds"`
	Runtime      string                    `json:"runtime"` // onnxruntime or go
	Model        models.Metrics            `json:"model"`
	Baselines    map[string]models.Metrics `json:"baselines"`
	BeatsAll     bool                      `json:"beats_all_baselines"` // on the primary metric, log loss
	Champion     string                    `json:"previous_champion,omitempty"`
	ChampionEval *models.Metrics           `json:"previous_champion_metrics,omitempty"`
	Published    bool                      `json:"published"`
	Status       string                    `json:"status,omitempty"`
	Reason       string                    `json:"reason"`
	ONNXFile     string                    `json:"onnx_file,omitempty"`
	ONNXBytes    int                       `json:"onnx_bytes"`
}

func newModelTrainCmd(g *globals) *cobra.Command {
	var (
		tf                traceFlags
		mf                modelFlags
		fromStore         bool
		from, to, until   string
		status, out, vers string
		noPublish, asJSON bool
		hidden, seq       int
		span              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "train (--format F --file PATH [--memory M] | --from-store [--from T --to T]) [--train-until T]",
		Short: "Train the demand model offline, evaluate it against the baselines and publish it",
		Long: `Train the demand LSTM on a trace file or on the history stored in ClickHouse,
up to --train-until (default: all but the last fifth of the range). The model
is exported to ONNX, loaded back the way workers load it (ONNX Runtime unless
--no-ort) and evaluated on every application at every bin after
--train-until, beside three baselines on the same points: active in the last
bin, historical active fraction, and recency (bins since the last request,
ties broken by the request count of the last hour).

Then it is stored in the model registry and, with --status auto (default),
published as champion by the one rule every trainer uses: its log loss on
the held-out range beats every baseline's and the current champion's (by 1%)
on the same points; else it stays a candidate. --status champion or
candidate overrides the rule; --no-publish only trains and reports.`,
		Example: `  starter model train --format azure2019 --file 1350_inv.csv --memory 1350_mem.csv --train-until 2019-07-15T16:00:00Z
  starter model train --from-store --json
  starter model train --format synth --apps 100 --days 3 --no-publish --out demand.onnx`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !slices.Contains([]string{"auto", store.StatusChampion, store.StatusCandidate}, status) {
				return usageErr("--status %q: expected auto, champion or candidate", status)
			}
			if mf.Epochs < 0 || mf.Samples < 0 || hidden < 0 || seq < 0 {
				return usageErr("--epochs, --samples, --hidden and --seq-len must not be negative")
			}
			tUntil, err := parseTimeFlag("--train-until", until)
			if err != nil {
				return err
			}
			var st *store.Store
			openStore := func() (*store.Store, error) {
				if st != nil {
					return st, nil
				}
				var err error
				if st, err = store.Open(ctx, g.ClickHouse); err != nil {
					return nil, fmt.Errorf("open the model registry: %w (or pass --no-publish)", err)
				}
				return st, nil
			}
			defer func() {
				if st != nil {
					st.Close()
				}
			}()

			var tr *trace.Trace
			var source string
			if fromStore {
				if tf.Format != "" || tf.File != "" || tf.Memory != "" {
					return usageErr("--from-store reads ClickHouse: drop --format, --file and --memory")
				}
				tr, source, err = storedTrace(ctx, openStore, from, to, span, tf.Bin)
			} else {
				if from != "" || to != "" {
					return usageErr("--from and --to select stored history: use them with --from-store")
				}
				tr, source, err = tf.load()
			}
			if err != nil {
				return err
			}
			if tUntil.IsZero() {
				tUntil = lifecycle.HeldOutFrom(tr, rule.HoldoutFraction)
			}
			if !tUntil.After(tr.Start) || !tUntil.Before(tr.End()) {
				return usageErr("--train-until %s: must fall inside the data, %s – %s", tUntil.Format(time.RFC3339), tr.Start.Format(time.RFC3339), tr.End().Format(time.RFC3339))
			}

			// Before minutes of training: fail now if the runtime is missing.
			runtime := "onnxruntime"
			if mf.NoORT {
				runtime = "go"
			} else if err := models.InitORT(g.ONNX.Lib); err != nil {
				return fmt.Errorf("%w (or pass --no-ort to evaluate with the pure-Go forward pass)", err)
			}
			if !noPublish {
				if _, err := openStore(); err != nil {
					return err
				}
			}
			began := time.Now()
			stderr := cmd.ErrOrStderr()
			cand, err := lifecycle.TrainDemand(ctx, tr, demand.TrainOptions{
				Spec:       demand.Spec{SeqLen: seq, Hidden: hidden},
				TrainUntil: tUntil, Epochs: mf.Epochs, Samples: mf.Samples, Seed: mf.Seed, Version: vers,
			}, useORT(mf), func(p demand.Progress) {
				fmt.Fprintf(stderr, "epoch %d/%d batch %d/%d  train loss %.4f  val loss %.4f  %.0f seq/s\n",
					p.Epoch, p.Epochs, p.Batch, p.Batches, p.TrainLoss, p.ValLoss, p.SeqPerSec)
			})
			if err != nil {
				return fmt.Errorf("train on %s: %w", source, err)
			}
			defer cand.Close()
			res, onnx := cand.Result, cand.ONNX
			trainSecs := time.Since(began).Seconds()
			fmt.Fprintf(stderr, "evaluating %s on %s – %s ...\n", res.Version, tUntil.Format(time.RFC3339), tr.End().Format(time.RFC3339))
			var champs lifecycle.ChampionSource
			if !noPublish {
				champs = st
			}
			cmp, err := lifecycle.CompareDemand(ctx, champs, cand, tr, tUntil, useORT(mf))
			if err != nil {
				return err
			}
			ev := cmp.Eval
			o := modelTrainOutput{Version: res.Version, Source: source, TrainUntil: tUntil, EvalFrom: ev.From, EvalTo: ev.To,
				Spec: res.Spec, Epochs: res.Epochs, BestEpoch: res.BestEpoch, TrainSeqs: res.TrainSeqs, SeqPerSec: res.SeqPerSec,
				TrainSeconds: trainSecs, Runtime: runtime, Model: *ev.Model, Baselines: ev.Baselines, ONNXBytes: len(onnx),
				Champion: cmp.Champion, ChampionEval: cmp.ChampionEval}
			decision := rule.Decide(cmp.Comparison, 0)
			o.BeatsAll = !strings.Contains(decision.Reason, "baseline(s)")

			if o.ONNXFile, err = writeONNX(out, onnx); err != nil {
				return err
			}
			if noPublish {
				o.Reason = "not published (--no-publish): " + decision.Reason
			} else {
				metrics := cmp.CandidateFlat
				metrics["train.sequences_per_second"] = res.SeqPerSec
				metrics["train.epochs"] = float64(res.Epochs)
				if o.Status, o.Reason, err = publishTrained(ctx, st, status, res.Version, models.KindDemand, res.Meta(), onnx, metrics, decision); err != nil {
					return err
				}
				o.Published = true
				if err := st.RecordTrainingRun(ctx, store.TrainingRun{RunID: "cli-" + res.Version, Kind: models.KindDemand, Version: res.Version,
					Status: o.Status, Duration: time.Since(began), Samples: int64(res.TrainSeqs), Metrics: metrics, Message: o.Reason}); err != nil {
					return fmt.Errorf("record the training run: %w", err)
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return emitJSON(w, o)
			}
			return printTrainReport(w, o)
		},
	}
	fs := cmd.Flags()
	tf.register(fs)
	mf.register(fs)
	fs.BoolVar(&fromStore, "from-store", false, "train on the activity stored in ClickHouse instead of a trace file")
	fs.StringVar(&from, "from", "", "--from-store: start of the history (RFC 3339; default: the last --span of it)")
	fs.StringVar(&to, "to", "", "--from-store: end of the history (RFC 3339; default after the last stored bin)")
	fs.DurationVar(&span, "span", rule.DefaultSpan, "--from-store without --from: how much of the most recent stored history to read")
	fs.StringVar(&until, "train-until", "", "end of the training data, RFC 3339; evaluation runs from here to the end (default: the last fifth is held out)")
	fs.StringVar(&status, "status", "auto", "registry status: auto, champion or candidate")
	fs.StringVar(&vers, "version", "", "model version name (default demand-<UTC time>)")
	fs.StringVar(&out, "out", "", "also write the ONNX file here")
	fs.BoolVar(&noPublish, "no-publish", false, "train and report only; do not touch the registry")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.IntVar(&hidden, "hidden", 0, "LSTM hidden size (0 = default 32)")
	fs.IntVar(&seq, "seq-len", 0, "bins per input sequence (0 = default 64)")
	return cmd
}

func useORT(mf modelFlags) bool { return !mf.NoORT }

// publishTrained stores a trained model in the registry and publishes it by
// the lifecycle's decision, or by the status the operator asked for
// (--status champion or candidate; auto keeps the decision). It returns the
// model's status and why.
func publishTrained(ctx context.Context, st *store.Store, status, version, kind, meta string, onnx []byte, metrics map[string]float64, d rule.Decision) (string, string, error) {
	switch status {
	case store.StatusChampion:
		d = rule.Decision{Publish: true, Reason: "status champion requested"}
	case store.StatusCandidate:
		d = rule.Decision{Reason: "status candidate requested"}
	}
	if err := lifecycle.StoreCandidate(ctx, st, version, kind, meta, onnx, metrics); err != nil {
		return "", "", err
	}
	s, err := lifecycle.Publish(ctx, st, version, d)
	return s, d.Reason, err
}

// writeONNX writes the exported model where --out asks ("": nowhere).
func writeONNX(path string, onnx []byte) (string, error) {
	if path == "" {
		return "", nil
	}
	if err := os.WriteFile(path, onnx, 0o644); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	return path, nil
}

// storedTrace reads history from ClickHouse: from..to, or (without them)
// the last span of it, chosen the way the training workflow chooses.
func storedTrace(ctx context.Context, open func() (*store.Store, error), fromS, toS string, span, bin time.Duration) (*trace.Trace, string, error) {
	from, err := parseTimeFlag("--from", fromS)
	if err != nil {
		return nil, "", err
	}
	to, err := parseTimeFlag("--to", toS)
	if err != nil {
		return nil, "", err
	}
	if bin <= 0 {
		return nil, "", usageErr("--bin %v: must be positive", bin)
	}
	if span < 0 {
		return nil, "", usageErr("--span %v: must be positive", span)
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return nil, "", usageErr("--to %s must be after --from %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	s, err := open()
	if err != nil {
		return nil, "", err
	}
	stats, err := s.Stats(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("read stored history: %w", err)
	}
	if stats.Bins == 0 && (from.IsZero() || to.IsZero()) {
		return nil, "", errors.New("the store holds no activity: load some with `starter history load`")
	}
	r, err := lifecycle.ChooseRange(stats.First, stats.Last, from, to, span, bin)
	if err != nil {
		return nil, "", usageErr("--from/--to/--span: %v", err)
	}
	tr, err := s.Trace(ctx, r.From, r.To, bin)
	if errors.Is(err, store.ErrTooLarge) {
		return nil, "", usageErr("stored history %s – %s at --bin %v: %v; choose a shorter --span (or --from and --to), or a wider --bin",
			r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), bin, err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read stored history: %w", err)
	}
	if len(tr.Apps) == 0 {
		return nil, "", fmt.Errorf("no stored activity between %s and %s", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	}
	return tr, fmt.Sprintf("stored history %s – %s (%d apps; %s)", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), len(tr.Apps), r.Chosen), nil
}

func printTrainReport(w io.Writer, o modelTrainOutput) error {
	fmt.Fprintf(w, "model %s trained on %s up to %s\n", o.Version, o.Source, o.TrainUntil.Format(time.RFC3339))
	fmt.Fprintf(w, "  %d epochs (best %d), %d sequences, %.0f seq/s, %.0f s; T=%d hidden=%d; predicts the next bin\n",
		o.Epochs, o.BestEpoch, o.TrainSeqs, o.SeqPerSec, o.TrainSeconds, o.Spec.SeqLen, o.Spec.Hidden)
	fmt.Fprintf(w, "held out: %s – %s, %d points, %.1f%% positive, run by %s\n\n",
		o.EvalFrom.Format(time.RFC3339), o.EvalTo.Format(time.RFC3339), o.Model.N, 100*o.Model.Positive, o.Runtime)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []string{demand.BaselineLastBin, demand.BaselineFraction, demand.BaselineRecency}
	fmt.Fprintf(tw, "metric\tmodel\t%s\t\n", strings.Join(cols, "\t"))
	row := func(name string, f func(models.Metrics) float64) {
		fmt.Fprintf(tw, "%s\t%.4f", name, f(o.Model))
		for _, c := range cols {
			fmt.Fprintf(tw, "\t%.4f", f(o.Baselines[c]))
		}
		fmt.Fprintln(tw, "\t")
	}
	row("ROC AUC", func(m models.Metrics) float64 { return m.AUC })
	row("log loss", func(m models.Metrics) float64 { return m.LogLoss })
	row("Brier", func(m models.Metrics) float64 { return m.Brier })
	row("ECE", func(m models.Metrics) float64 { return m.ECE })
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if o.BeatsAll {
		fmt.Fprintln(w, "beats all three baselines on log loss")
	} else {
		fmt.Fprintln(w, "does NOT beat all three baselines on log loss")
	}
	if o.ChampionEval != nil {
		fmt.Fprintf(w, "previous champion %s on the same points: ROC AUC %.4f, log loss %.4f, Brier %.4f\n", o.Champion, o.ChampionEval.AUC, o.ChampionEval.LogLoss, o.ChampionEval.Brier)
	}
	if o.Published {
		fmt.Fprintf(w, "published as %s: %s\n", o.Status, o.Reason)
	} else {
		fmt.Fprintln(w, o.Reason)
	}
	if o.ONNXFile != "" {
		fmt.Fprintf(w, "wrote %s (%d bytes)\n", o.ONNXFile, o.ONNXBytes)
	}
	return nil
}

func newModelListCmd(g *globals) *cobra.Command {
	var (
		asJSON bool
		kind   string
	)
	cmd := &cobra.Command{
		Use:   "list [--kind demand|affinity] [--json]",
		Short: "List the model versions in the registry with their status and key metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kind != "" && kind != models.KindDemand && kind != models.KindAffinity {
				return usageErr("--kind %q: expected demand or affinity", kind)
			}
			s, err := store.Open(cmd.Context(), g.ClickHouse)
			if err != nil {
				return fmt.Errorf("open the model registry: %w", err)
			}
			defer s.Close()
			ms, err := s.ListModels(cmd.Context())
			if err != nil {
				return err
			}
			ms = slices.DeleteFunc(ms, func(m store.ModelRecord) bool { return kind != "" && m.Kind != kind })
			w := cmd.OutOrStdout()
			if asJSON {
				if ms == nil {
					ms = []store.ModelRecord{}
				}
				return emitJSON(w, ms)
			}
			if len(ms) == 0 {
				fmt.Fprintln(w, "no models in the registry yet: `starter model train` publishes one")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tKIND\tSTATUS\tCREATED\tKEY METRICS")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Version, m.Kind, m.Status, m.Created.Format(time.RFC3339), keyMetrics(m))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&kind, "kind", "", "only this kind: demand or affinity")
	return cmd
}

// keyMetrics summarises a record's metrics for the table.
func keyMetrics(m store.ModelRecord) string {
	var parts []string
	for _, k := range []struct{ key, label string }{
		{"model.roc_auc", "auc"}, {"model.log_loss", "logloss"}, {"model.brier", "brier"},
		{demand.BaselineRecency + ".roc_auc", "recency-auc"}, {"mse", "mse"}, {"default.mse", "heuristic-mse"},
	} {
		if v, ok := m.Metrics[k.key]; ok && !math.IsNaN(v) {
			parts = append(parts, fmt.Sprintf("%s=%.4f", k.label, v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// affinityTrainOutput is what `model train-affinity --json` prints.
type affinityTrainOutput struct {
	Version     string             `json:"version"`
	Source      string             `json:"source"`
	Samples     int                `json:"samples"`
	Metrics     map[string]float64 `json:"metrics"`
	Champion    string             `json:"previous_champion,omitempty"`
	ChampionMSE *float64           `json:"previous_champion_mse,omitempty"`
	Published   bool               `json:"published"`
	Status      string             `json:"status,omitempty"`
	Reason      string             `json:"reason"`
	ONNXFile    string             `json:"onnx_file,omitempty"`
}

func newModelTrainAffinityCmd(g *globals) *cobra.Command {
	var (
		from, to, status, out, vers string
		synthetic, epochs           int
		seed                        uint64
		noPublish, asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "train-affinity (--from-store [--from T --to T] | --synthetic N)",
		Short: "Train the host affinity model on served requests and publish it",
		Long: `Train the affinity MLP on the requests recorded in ClickHouse (each joined
with its host and the host's metrics at that moment; the target is
min(1, the app's usual work time / this request's work time)), or on N
synthetic samples for a demo. The latest 20% of the samples are held out;
the exported model, loaded back, is compared there with the heuristic, with
predicting the mean and with the current champion. --status auto publishes
it by the one rule every trainer uses: its held-out mean squared error
beats every baseline's and the champion's (by 1%).`,
		Example: `  starter model train-affinity --from-store
  starter model train-affinity --synthetic 3000 --no-publish --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !slices.Contains([]string{"auto", store.StatusChampion, store.StatusCandidate}, status) {
				return usageErr("--status %q: expected auto, champion or candidate", status)
			}
			fromT, err := parseTimeFlag("--from", from)
			if err != nil {
				return err
			}
			toT, err := parseTimeFlag("--to", to)
			if err != nil {
				return err
			}
			if synthetic < 0 || epochs < 0 {
				return usageErr("--synthetic and --epochs must not be negative")
			}
			fromStore := synthetic == 0
			if !fromStore && cmd.Flags().Changed("from-store") {
				return usageErr("--from-store and --synthetic exclude each other")
			}
			if !fromStore && (from != "" || to != "") {
				return usageErr("--from and --to select stored requests: drop them with --synthetic")
			}
			var st *store.Store
			if fromStore || !noPublish {
				if st, err = store.Open(ctx, g.ClickHouse); err != nil {
					return fmt.Errorf("open the store: %w", err)
				}
				defer st.Close()
			}
			var samples []affinity.Sample
			var source string
			if fromStore {
				if toT.IsZero() {
					toT = time.Now().UTC()
				}
				if fromT.IsZero() {
					fromT = toT.Add(-rule.AffinityWindow)
				}
				if samples, err = affinitydata.Samples(ctx, st, fromT, toT); err != nil {
					return err
				}
				source = fmt.Sprintf("stored requests %s – %s", fromT.Format(time.RFC3339), toT.Format(time.RFC3339))
			} else {
				samples = affinity.SynthSamples(synthetic, seed)
				source = fmt.Sprintf("%d synthetic samples (seed %d)", synthetic, seed)
			}
			cand, err := lifecycle.TrainAffinity(ctx, samples, affinity.TrainOptions{Epochs: epochs, Seed: seed, Version: vers}, false)
			if errors.Is(err, lifecycle.ErrTooFewOutcomes) {
				return fmt.Errorf("%s: %w (serve requests with `starter replay` or `starter request`, or use --synthetic)", source, err)
			}
			if err != nil {
				return fmt.Errorf("train on %s: %w", source, err)
			}
			defer cand.Close()
			res, onnx := cand.Result, cand.ONNX
			var champs lifecycle.ChampionSource
			if !noPublish {
				champs = st
			}
			cmp, err := lifecycle.CompareAffinity(ctx, champs, cand, false)
			if err != nil {
				return err
			}
			o := affinityTrainOutput{Version: res.Version, Source: source, Samples: len(samples), Metrics: res.Metrics(), Champion: cmp.Champion}
			if mse, ok := cmp.ChampionMetrics[rule.AffinityMetric]; ok {
				o.ChampionMSE = &mse
			}
			decision := rule.Decide(cmp, 0)
			if o.ONNXFile, err = writeONNX(out, onnx); err != nil {
				return err
			}
			if noPublish {
				o.Reason = "not published (--no-publish): " + decision.Reason
			} else {
				if o.Status, o.Reason, err = publishTrained(ctx, st, status, res.Version, models.KindAffinity, res.Meta(), onnx, o.Metrics, decision); err != nil {
					return err
				}
				o.Published = true
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return emitJSON(w, o)
			}
			fmt.Fprintf(w, "affinity model %s trained on %s\n", o.Version, o.Source)
			fmt.Fprintf(w, "held-out MSE: model %.4f, heuristic %.4f, mean %.4f (%d held out)\n",
				cmp.Metrics[rule.AffinityMetric], res.DefaultMSE, res.MeanMSE, res.ValN)
			if o.ChampionMSE != nil {
				fmt.Fprintf(w, "previous champion %s: %.4f\n", o.Champion, *o.ChampionMSE)
			}
			if o.Published {
				fmt.Fprintf(w, "published as %s: %s\n", o.Status, o.Reason)
			} else {
				fmt.Fprintln(w, o.Reason)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.Bool("from-store", true, "train on stored request outcomes (the default unless --synthetic)")
	fs.StringVar(&from, "from", "", "start of the stored requests (RFC 3339; default 30 days before --to)")
	fs.StringVar(&to, "to", "", "end of the stored requests (RFC 3339; default now)")
	fs.IntVar(&synthetic, "synthetic", 0, "train on this many synthetic samples instead (demo and tests)")
	fs.IntVar(&epochs, "epochs", 0, "training epochs (0 = default 60)")
	fs.Uint64Var(&seed, "train-seed", 1, "training seed")
	fs.StringVar(&status, "status", "auto", "registry status: auto, champion or candidate")
	fs.StringVar(&vers, "version", "", "model version name (default affinity-<UTC time>)")
	fs.StringVar(&out, "out", "", "also write the ONNX file here")
	fs.BoolVar(&noPublish, "no-publish", false, "train and report only")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
