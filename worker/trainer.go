package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/demand"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinitydata"
	"github.com/forewarm/forewarm/store"
)

// trainer implements activities.Trainer with the models package and the
// store's registry: data from ClickHouse, candidates stored as
// "candidate", evaluation on the last HoldoutFraction of the range.
type trainer struct {
	st              *store.Store
	holdoutFraction float64
	samples         int
	useORT          bool // evaluate through the runtime the loops use
	log             *slog.Logger
}

func (t *trainer) Describe(ctx context.Context, from, to time.Time, bin time.Duration) (activities.DatasetSummary, error) {
	if from.IsZero() && to.IsZero() {
		s, err := t.st.Stats(ctx)
		if err != nil {
			return activities.DatasetSummary{}, err
		}
		if s.Bins == 0 {
			return activities.DatasetSummary{}, fmt.Errorf("%w: the store holds no activity; load a trace with `starter history load`", activities.ErrNotEnoughData)
		}
		from, to = s.First.Truncate(bin), s.Last.Truncate(bin).Add(bin)
	}
	tr, err := t.st.Trace(ctx, from, to, bin)
	if err != nil {
		return activities.DatasetSummary{}, err
	}
	reqs, err := t.st.Requests(ctx, time.Now().Add(-30*24*time.Hour), time.Now())
	if err != nil {
		return activities.DatasetSummary{}, err
	}
	return activities.DatasetSummary{From: from, To: to, Bin: bin, Apps: len(tr.Apps), Bins: tr.Bins,
		Requests: float64(tr.Total()), RequestOutcomes: len(reqs)}, nil
}

func (t *trainer) TrainDemand(ctx context.Context, spec activities.TrainSpec, resume []byte, progress func(activities.TrainProgress)) (activities.TrainedModel, error) {
	tr, err := t.st.Trace(ctx, spec.From, spec.To, spec.Bin)
	if err != nil {
		return activities.TrainedModel{}, fmt.Errorf("read history: %w", err)
	}
	if len(tr.Apps) == 0 || tr.Bins < 32 {
		return activities.TrainedModel{}, fmt.Errorf("%w: %d apps × %d bins in %v..%v", activities.ErrNotEnoughData, len(tr.Apps), tr.Bins, spec.From, spec.To)
	}
	holdout := tr.BinStart(int(float64(tr.Bins) * (1 - t.holdoutFraction)))
	opt := demand.TrainOptions{TrainUntil: holdout, Epochs: spec.Epochs, Seed: uint64(spec.Seed), Checkpoint: resume, Samples: t.samples, Logger: t.log}
	res, err := demand.Train(ctx, tr, opt, func(p demand.Progress) {
		loss := p.TrainLoss
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			loss = 0
		}
		progress(activities.TrainProgress{Epoch: p.Epoch, Epochs: p.Epochs, Loss: loss, Checkpoint: p.Checkpoint})
	})
	if err != nil {
		return activities.TrainedModel{}, err
	}
	// Evaluate the exported file through the runtime the loops will use:
	// it checks the artifact, and ONNX Runtime is ~5x the Go forward pass.
	onnx, err := res.ONNX()
	if err != nil {
		return activities.TrainedModel{}, fmt.Errorf("export %s: %w", res.Version, err)
	}
	cand, err := demand.Load(onnx, res.Meta(), t.useORT)
	if err != nil {
		return activities.TrainedModel{}, fmt.Errorf("load the exported %s: %w", res.Version, err)
	}
	eval, err := demand.Evaluate(ctx, tr, cand, demand.EvalOptions{From: holdout})
	if err != nil {
		return activities.TrainedModel{}, fmt.Errorf("evaluate candidate %s: %w", res.Version, err)
	}
	out := activities.TrainedModel{Version: res.Version, Kind: "demand", Samples: res.TrainSeqs,
		Metrics: metricMap(*eval.Model), Baselines: map[string]map[string]float64{}}
	for name, m := range eval.Baselines {
		out.Baselines[name] = metricMap(m)
	}
	// The champion, on the same held-out range.
	champ, err := t.st.Champion(ctx, "demand")
	switch {
	case errors.Is(err, store.ErrNoModel):
	case err != nil:
		return activities.TrainedModel{}, fmt.Errorf("read the champion: %w", err)
	default:
		out.Champion = champ.Version
		cm, lerr := demand.Load(champ.ONNX, champ.Meta, t.useORT)
		if lerr == nil {
			ce, eerr := demand.Evaluate(ctx, tr, cm, demand.EvalOptions{From: holdout})
			if eerr == nil {
				out.ChampionMetrics = metricMap(*ce.Model)
			} else {
				t.log.Warn("champion cannot be evaluated on this data; comparing with baselines only", "champion", champ.Version, "err", eerr)
			}
		} else {
			t.log.Warn("champion fails to load; comparing with baselines only", "champion", champ.Version, "err", lerr)
		}
	}
	if err := t.st.PublishModel(ctx, store.ModelRecord{Version: res.Version, Kind: "demand", Created: time.Now().UTC(),
		Metrics: eval.Flat(), Status: store.StatusCandidate, Meta: res.Meta(), ONNX: onnx}); err != nil {
		return activities.TrainedModel{}, fmt.Errorf("store candidate %s: %w", res.Version, err)
	}
	_ = t.st.RecordTrainingRun(ctx, store.TrainingRun{RunID: res.Version, Kind: "demand", Version: res.Version, Status: "candidate",
		Samples: int64(res.TrainSeqs), Metrics: eval.Flat(), Message: fmt.Sprintf("%d epochs, best %d, resumed %v", res.Epochs, res.BestEpoch, res.Resumed)})
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

// TrainAffinity trains the affinity MLP on the served requests of the last
// 30 days (joined with their hosts' metrics at the time), held out: the
// latest 20 %, compared with the heuristic, the mean and the champion.
func (t *trainer) TrainAffinity(ctx context.Context, spec activities.TrainSpec, progress func(activities.TrainProgress)) (activities.TrainedModel, error) {
	now := time.Now()
	samples, err := affinitydata.Samples(ctx, t.st, now.Add(-30*24*time.Hour), now)
	if err != nil {
		return activities.TrainedModel{}, err
	}
	if len(samples) < 50 {
		return activities.TrainedModel{}, fmt.Errorf("%w: %d affinity samples (served requests on known hosts), 50 needed", activities.ErrNotEnoughData, len(samples))
	}
	res, err := affinity.Train(ctx, samples, affinity.TrainOptions{Seed: uint64(spec.Seed)})
	if err != nil {
		return activities.TrainedModel{}, err
	}
	out := activities.TrainedModel{Version: res.Version, Kind: store.KindAffinity, Samples: res.TrainN,
		Metrics:   map[string]float64{"mse": res.ValMSE},
		Baselines: map[string]map[string]float64{"heuristic": {"mse": res.DefaultMSE}, "mean": {"mse": res.MeanMSE}}}
	held := samples[len(samples)-res.ValN:]
	champ, err := t.st.Champion(ctx, store.KindAffinity)
	switch {
	case errors.Is(err, store.ErrNoModel):
	case err != nil:
		return activities.TrainedModel{}, fmt.Errorf("read the affinity champion: %w", err)
	default:
		out.Champion = champ.Version
		if mse, err := heldOutMSE(champ, held); err == nil {
			out.ChampionMetrics = map[string]float64{"mse": mse}
		} else {
			t.log.Warn("affinity champion cannot be scored on these samples; comparing with baselines only", "champion", champ.Version, "err", err)
		}
	}
	onnx, err := res.ONNX()
	if err != nil {
		return activities.TrainedModel{}, fmt.Errorf("export %s: %w", res.Version, err)
	}
	if err := t.st.PublishModel(ctx, store.ModelRecord{Version: res.Version, Kind: store.KindAffinity, Created: time.Now().UTC(),
		Metrics: res.Metrics(), Status: store.StatusCandidate, Meta: res.Meta(), ONNX: onnx}); err != nil {
		return activities.TrainedModel{}, fmt.Errorf("store candidate %s: %w", res.Version, err)
	}
	return out, nil
}

func heldOutMSE(champ store.ModelRecord, held []affinity.Sample) (float64, error) {
	m, err := affinity.Load(champ.ONNX, champ.Meta, false)
	if err != nil {
		return 0, err
	}
	in := make([]affinity.Input, len(held))
	for i, h := range held {
		in[i] = h.Input
	}
	p, err := m.Score(in)
	if err != nil {
		return 0, err
	}
	var mse float64
	for i, h := range held {
		mse += (p[i] - h.Target) * (p[i] - h.Target) / float64(len(held))
	}
	return mse, nil
}

func (t *trainer) Promote(ctx context.Context, version string) error {
	return t.st.SetModelStatus(ctx, version, store.StatusChampion)
}
