package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/store"
)

// ErrTooFewOutcomes is returned when there are fewer than
// MinAffinityOutcomes samples to train the affinity model on.
var ErrTooFewOutcomes = errors.New("too few request outcomes")

// AffinityCandidate is a trained affinity model, exported and loaded back.
type AffinityCandidate struct {
	Result  *affinity.Result
	ONNX    []byte
	Model   affinity.Model // from the ONNX bytes
	HeldOut []affinity.Sample
}

// Close frees the loaded model's ONNX Runtime session, if any.
func (c *AffinityCandidate) Close() error { return closeModel(c.Model) }

// TrainAffinity trains the affinity model on samples (in time order; the
// latest part is held out), exports it and loads the exported bytes back.
func TrainAffinity(ctx context.Context, samples []affinity.Sample, opt affinity.TrainOptions, useORT bool) (*AffinityCandidate, error) {
	if len(samples) < rule.MinAffinityOutcomes {
		return nil, fmt.Errorf("%w: %d usable request outcomes, %d needed", ErrTooFewOutcomes, len(samples), rule.MinAffinityOutcomes)
	}
	res, err := affinity.Train(ctx, samples, opt)
	if err != nil {
		return nil, err
	}
	onnx, err := res.ONNX()
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", res.Version, err)
	}
	m, err := affinity.Load(onnx, res.Meta(), useORT)
	if err != nil {
		return nil, fmt.Errorf("load the exported %s back: %w", res.Version, err)
	}
	return &AffinityCandidate{Result: res, ONNX: onnx, Model: m, HeldOut: samples[res.TrainN:]}, nil
}

// CompareAffinity scores the loaded candidate, the heuristic, the mean and
// the champion on the same held-out samples.
func CompareAffinity(ctx context.Context, champs ChampionSource, c *AffinityCandidate, useORT bool) (rule.Comparison, error) {
	mse, err := heldOutMSE(c.Model, c.HeldOut)
	if err != nil {
		return rule.Comparison{}, fmt.Errorf("score candidate %s: %w", c.Result.Version, err)
	}
	out := rule.Comparison{Version: c.Result.Version, Kind: models.KindAffinity, Samples: c.Result.TrainN,
		Metrics: map[string]float64{rule.AffinityMetric: mse},
		Baselines: map[string]map[string]float64{
			"heuristic": {rule.AffinityMetric: c.Result.DefaultMSE},
			"mean":      {rule.AffinityMetric: c.Result.MeanMSE},
		}}
	if champs == nil {
		return out, nil
	}
	champ, err := champs.Champion(ctx, models.KindAffinity)
	switch {
	case errors.Is(err, store.ErrNoModel):
		return out, nil
	case err != nil:
		return rule.Comparison{}, fmt.Errorf("read the affinity champion: %w", err)
	}
	out.Champion = champ.Version
	cm, err := affinity.Load(champ.ONNX, champ.Meta, useORT)
	if err != nil {
		out.ChampionNote = "it fails to load: " + err.Error()
		return out, nil
	}
	defer closeModel(cm)
	cmse, err := heldOutMSE(cm, c.HeldOut)
	if err != nil {
		out.ChampionNote = "it cannot score these samples: " + err.Error()
		return out, nil
	}
	out.ChampionMetrics = map[string]float64{rule.AffinityMetric: cmse}
	return out, nil
}

// heldOutMSE is m's mean squared error on held.
func heldOutMSE(m affinity.Model, held []affinity.Sample) (float64, error) {
	if len(held) == 0 {
		return 0, errors.New("no held-out samples")
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
