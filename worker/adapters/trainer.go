package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/affinitydata"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/models/lifecycle"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/store"
)

// Trainer implements activities.Trainer with the model lifecycle and the
// store's registry: data from ClickHouse, candidates stored as
// "candidate", evaluation on the last HoldoutFraction of the range.
type Trainer struct {
	St              *store.Store
	HoldoutFraction float64 // 0: rule.HoldoutFraction
	Samples         int     // training sequences per run (0: the trainer's default)
	UseORT          bool    // evaluate through the runtime the loops use
	Log             *slog.Logger
}

func (t *Trainer) Describe(ctx context.Context, in wire.DescribeInput) (wire.DatasetSummary, error) {
	s, err := t.St.Stats(ctx)
	if err != nil {
		return wire.DatasetSummary{}, err
	}
	if s.Bins == 0 && (in.From.IsZero() || in.To.IsZero()) {
		return wire.DatasetSummary{}, fmt.Errorf("%w: the store holds no activity; load a trace with `starter history load`", activities.ErrNotEnoughData)
	}
	r, err := lifecycle.ChooseRange(s.First, s.Last, in.From, in.To, in.Span, in.Bin)
	if err != nil {
		return wire.DatasetSummary{}, fmt.Errorf("%w: %v", activities.ErrNotEnoughData, err)
	}
	tr, err := t.St.Trace(ctx, r.From, r.To, in.Bin)
	if err != nil {
		return wire.DatasetSummary{}, storeErr(err)
	}
	if in.From.IsZero() {
		// A recent span that begins before the data does starts where the
		// data does: the idle bins before it would teach nothing.
		if first := lifecycle.FirstActiveBin(tr); first > 0 {
			r.From = tr.BinStart(first)
			r.Chosen += ", from where its activity begins"
		}
	}
	now := time.Now()
	reqs, err := t.St.Requests(ctx, now.Add(-rule.AffinityWindow), now)
	if err != nil {
		return wire.DatasetSummary{}, err
	}
	// The gateway's requests on a host are outcomes too (affinitydata).
	gw, err := t.St.GatewayOutcomes(ctx, now.Add(-rule.AffinityWindow), now)
	if err != nil {
		return wire.DatasetSummary{}, err
	}
	return wire.DatasetSummary{From: r.From, To: r.To, Chosen: r.Chosen, Bin: in.Bin, Apps: len(tr.Apps), Bins: int(r.To.Sub(r.From) / in.Bin),
		Requests: float64(tr.Total()), RequestOutcomes: len(reqs) + int(gw)}, nil
}

// storeErr marks a read the store refused as too large.
func storeErr(err error) error {
	if errors.Is(err, store.ErrTooLarge) {
		return fmt.Errorf("%w: %v", activities.ErrTooLarge, err)
	}
	return err
}

func (t *Trainer) TrainDemand(ctx context.Context, spec wire.TrainSpec, resume []byte, progress func(activities.TrainProgress)) (wire.TrainedModel, error) {
	tr, err := t.St.Trace(ctx, spec.From, spec.To, spec.Bin)
	if err != nil {
		return wire.TrainedModel{}, fmt.Errorf("read history: %w", storeErr(err))
	}
	if len(tr.Apps) == 0 || tr.Bins < 32 {
		return wire.TrainedModel{}, fmt.Errorf("%w: %d apps × %d bins in %v..%v", activities.ErrNotEnoughData, len(tr.Apps), tr.Bins, spec.From, spec.To)
	}
	heldOut := lifecycle.HeldOutFrom(tr, t.HoldoutFraction)
	opt := demand.TrainOptions{TrainUntil: heldOut, Epochs: spec.Epochs, Seed: uint64(spec.Seed), Checkpoint: resume, Samples: t.Samples, Logger: t.Log}
	cand, err := lifecycle.TrainDemand(ctx, tr, opt, t.UseORT, func(p demand.Progress) {
		loss := p.TrainLoss
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			loss = 0
		}
		progress(activities.TrainProgress{Epoch: p.Epoch, Epochs: p.Epochs, Loss: loss, Checkpoint: p.Checkpoint})
	})
	if err != nil {
		return wire.TrainedModel{}, err
	}
	defer cand.Close()
	cmp, err := lifecycle.CompareDemand(ctx, t.St, cand, tr, heldOut, t.UseORT)
	if err != nil {
		return wire.TrainedModel{}, err
	}
	if cmp.ChampionNote != "" {
		t.Log.Warn("champion not compared; comparing with the baselines only", "champion", cmp.Champion, "why", cmp.ChampionNote)
	}
	res := cand.Result
	if err := lifecycle.StoreCandidate(ctx, t.St, res.Version, models.KindDemand, res.Meta(), cand.ONNX, cmp.CandidateFlat); err != nil {
		return wire.TrainedModel{}, err
	}
	if err := t.St.RecordTrainingRun(ctx, store.TrainingRun{RunID: res.Version, Kind: models.KindDemand, Version: res.Version, Status: store.StatusCandidate,
		Samples: int64(res.TrainSeqs), Metrics: cmp.CandidateFlat, Message: fmt.Sprintf("%d epochs, best %d, resumed %v", res.Epochs, res.BestEpoch, res.Resumed)}); err != nil {
		return wire.TrainedModel{}, fmt.Errorf("record the training run: %w", err)
	}
	return cmp.Comparison, nil
}

// TrainAffinity trains the affinity model on the served requests of the
// last rule.AffinityWindow (joined with their hosts' metrics at the
// time); the latest part is held out and the candidate compared there with
// the heuristic, the mean and the champion.
func (t *Trainer) TrainAffinity(ctx context.Context, spec wire.TrainSpec, progress func(activities.TrainProgress)) (wire.TrainedModel, error) {
	now := time.Now()
	samples, err := affinitydata.Samples(ctx, t.St, now.Add(-rule.AffinityWindow), now)
	if err != nil {
		return wire.TrainedModel{}, err
	}
	cand, err := lifecycle.TrainAffinity(ctx, samples, affinity.TrainOptions{Seed: uint64(spec.Seed)}, t.UseORT)
	if errors.Is(err, lifecycle.ErrTooFewOutcomes) {
		return wire.TrainedModel{}, fmt.Errorf("%w: %v", activities.ErrNotEnoughData, err)
	}
	if err != nil {
		return wire.TrainedModel{}, err
	}
	defer cand.Close()
	cmp, err := lifecycle.CompareAffinity(ctx, t.St, cand, t.UseORT)
	if err != nil {
		return wire.TrainedModel{}, err
	}
	if cmp.ChampionNote != "" {
		t.Log.Warn("affinity champion not compared; comparing with the baselines only", "champion", cmp.Champion, "why", cmp.ChampionNote)
	}
	res := cand.Result
	if err := lifecycle.StoreCandidate(ctx, t.St, res.Version, models.KindAffinity, res.Meta(), cand.ONNX, res.Metrics()); err != nil {
		return wire.TrainedModel{}, err
	}
	return cmp, nil
}

func (t *Trainer) Promote(ctx context.Context, version string) error {
	return lifecycle.Promote(ctx, t.St, version)
}
