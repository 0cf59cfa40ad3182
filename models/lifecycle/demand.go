package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
)

// DemandCandidate is a trained demand model, exported, and loaded back
// from its ONNX bytes the way a worker loads it.
type DemandCandidate struct {
	Result *demand.Result
	ONNX   []byte
	Model  demand.Model // from the ONNX bytes (ONNX Runtime when asked)
}

// Close frees the loaded model's ONNX Runtime session, if any.
func (c *DemandCandidate) Close() error { return closeModel(c.Model) }

func closeModel(m any) error {
	if c, ok := m.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// TrainDemand trains the demand model on tr (opt.TrainUntil ends the
// training data), exports it and loads the exported bytes back: a
// candidate proves its file, not its in-memory weights.
func TrainDemand(ctx context.Context, tr *trace.Trace, opt demand.TrainOptions, useORT bool, progress func(demand.Progress)) (*DemandCandidate, error) {
	res, err := demand.Train(ctx, tr, opt, progress)
	if err != nil {
		return nil, err
	}
	onnx, err := res.ONNX()
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", res.Version, err)
	}
	m, err := demand.Load(onnx, res.Meta(), useORT)
	if err != nil {
		return nil, fmt.Errorf("load the exported %s back: %w", res.Version, err)
	}
	return &DemandCandidate{Result: res, ONNX: onnx, Model: m}, nil
}

// HeldOutFrom is where evaluation starts when none is given: the last
// HoldoutFraction of tr.
func HeldOutFrom(tr *trace.Trace, fraction float64) time.Time {
	if fraction <= 0 || fraction >= 1 {
		fraction = rule.HoldoutFraction
	}
	return tr.BinStart(int(float64(tr.Bins) * (1 - fraction)))
}

// ChampionSource finds the champion of a kind (*store.Store does).
type ChampionSource interface {
	Champion(ctx context.Context, kind string) (store.ModelRecord, error)
}

// DemandComparison is a demand candidate's Comparison and the evaluation
// it comes from (points, positive rate, the champion's full metrics).
type DemandComparison struct {
	rule.Comparison
	Eval          *demand.Evaluation
	ChampionEval  *models.Metrics
	HeldOut       Range
	CandidateFlat map[string]float64 // registry metrics of the candidate
}

// CompareDemand evaluates the candidate, the baselines and the champion on
// tr from `from` to its end: the same points for each.
func CompareDemand(ctx context.Context, champs ChampionSource, c *DemandCandidate, tr *trace.Trace, from time.Time, useORT bool) (*DemandComparison, error) {
	ev, err := demand.Evaluate(ctx, tr, c.Model, demand.EvalOptions{From: from})
	if err != nil {
		return nil, fmt.Errorf("evaluate candidate %s: %w", c.Result.Version, err)
	}
	out := &DemandComparison{
		Comparison: rule.Comparison{Version: c.Result.Version, Kind: models.KindDemand, Samples: c.Result.TrainSeqs,
			Metrics: metricMap(*ev.Model), Baselines: map[string]map[string]float64{}},
		Eval: ev, HeldOut: Range{From: ev.From, To: ev.To, Chosen: "held out"}, CandidateFlat: ev.Flat(),
	}
	for name, m := range ev.Baselines {
		out.Baselines[name] = metricMap(m)
	}
	if champs == nil {
		return out, nil
	}
	champ, err := champs.Champion(ctx, models.KindDemand)
	switch {
	case errors.Is(err, store.ErrNoModel):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("read the demand champion: %w", err)
	}
	out.Champion = champ.Version
	cm, err := demand.Load(champ.ONNX, champ.Meta, useORT)
	if err != nil {
		out.ChampionNote = "it fails to load: " + err.Error()
		return out, nil
	}
	defer closeModel(cm)
	ce, err := demand.Evaluate(ctx, tr, cm, demand.EvalOptions{From: from})
	if err != nil {
		out.ChampionNote = "it cannot be evaluated on this data: " + err.Error()
		return out, nil
	}
	out.ChampionMetrics = metricMap(*ce.Model)
	out.ChampionEval = ce.Model
	return out, nil
}

// metricMap keeps the finite metrics: an AUC over a range with one class
// only is NaN, which neither JSON nor a comparison can use.
func metricMap(m models.Metrics) map[string]float64 {
	out := map[string]float64{}
	for k, v := range map[string]float64{"log_loss": m.LogLoss, "brier": m.Brier, "roc_auc": m.AUC, "ece": m.ECE} {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	return out
}
