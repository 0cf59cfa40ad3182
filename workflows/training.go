package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
)

// TrainingInput says what to train on. Zero From/To: everything stored.
type TrainingInput struct {
	From, To time.Time
	Bin      time.Duration // default 1 min
	Epochs   int           // 0: the trainer's default
	Seed     int64
	// MinAffinitySamples is how many served requests with outcomes are
	// needed before the affinity model is trained (default 200).
	MinAffinitySamples int
	// MinImprovement is the relative improvement of the primary metric a
	// candidate needs over the champion to replace it (default 0.01 = 1 %).
	MinImprovement float64
	// TrainTimeout bounds one training activity (default 2 h).
	TrainTimeout time.Duration
}

// ModelDecision says whether a candidate was published and why.
type ModelDecision struct {
	Kind            string
	Candidate       string
	Champion        string // champion before this run
	Published       bool
	Reason          string
	Metric          string
	Metrics         map[string]float64
	ChampionMetrics map[string]float64
	Baselines       map[string]map[string]float64
	Resumed         bool
}

// TrainingResult is the data set and the decision for each model.
type TrainingResult struct {
	Dataset  activities.DatasetSummary
	Demand   ModelDecision
	Affinity ModelDecision
}

// TrainingProgressQuery asks what the run is doing (no fields yet).
type TrainingProgressQuery struct{}

// TrainingProgress is the answer to QueryTrainingProgress.
type TrainingProgress struct{ Stage string }

// Primary metrics (lower is better) the publish decision compares.
const (
	DemandMetric   = "log_loss"
	AffinityMetric = "mse"
)

// Training extracts the data set, trains the demand model (and the affinity
// model once enough outcomes exist), compares each candidate with the
// champion and the baselines on the same held-out range, and publishes only
// a candidate that is better — saying why either way.
func Training(ctx workflow.Context, in TrainingInput) (TrainingResult, error) {
	var res TrainingResult
	if in.Bin <= 0 {
		in.Bin = time.Minute
	}
	if in.MinAffinitySamples <= 0 {
		in.MinAffinitySamples = 200
	}
	if in.MinImprovement <= 0 {
		in.MinImprovement = 0.01
	}
	if in.TrainTimeout <= 0 {
		in.TrainTimeout = 2 * time.Hour
	}
	progress := TrainingProgress{Stage: "extracting the data set"}
	if err := workflow.SetQueryHandler(ctx, QueryTrainingProgress, func(TrainingProgressQuery) (TrainingProgress, error) { return progress, nil }); err != nil {
		return res, err
	}
	stage := func(s string) {
		progress.Stage = s
		workflow.SetCurrentDetails(ctx, s)
	}
	stage(progress.Stage)

	quick := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{activities.ErrBadInput}},
	})
	var d activities.DescribeResult
	if err := workflow.ExecuteActivity(quick, training.Describe, activities.DescribeInput{From: in.From, To: in.To, Bin: in.Bin}).Get(ctx, &d); err != nil {
		return res, fmt.Errorf("extract the data set: %w", err)
	}
	res.Dataset = d.Dataset
	spec := activities.TrainSpec{From: d.Dataset.From, To: d.Dataset.To, Bin: in.Bin, Epochs: in.Epochs, Seed: in.Seed}

	long := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: in.TrainTimeout,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{activities.ErrBadInput, activities.ErrNotEnough}},
	})

	stage(fmt.Sprintf("training the demand model on %d apps × %d bins", d.Dataset.Apps, d.Dataset.Bins))
	var dr activities.TrainResult
	if err := workflow.ExecuteActivity(withSummary(long, "train demand model"), training.TrainDemand, activities.TrainInput{Spec: spec}).Get(ctx, &dr); err != nil {
		return res, fmt.Errorf("train the demand model: %w", err)
	}
	res.Demand = judge(dr.Model, DemandMetric, in.MinImprovement)
	res.Demand.Resumed = dr.Resumed

	if d.Dataset.RequestOutcomes >= in.MinAffinitySamples {
		stage(fmt.Sprintf("training the affinity model on %d request outcomes", d.Dataset.RequestOutcomes))
		var ar activities.TrainResult
		if err := workflow.ExecuteActivity(withSummary(long, "train affinity model"), training.TrainAffinity, activities.TrainInput{Spec: spec}).Get(ctx, &ar); err != nil {
			// The demand decision stands on its own.
			res.Affinity = ModelDecision{Kind: "affinity", Reason: "training failed: " + rootMessage(err)}
		} else {
			res.Affinity = judge(ar.Model, AffinityMetric, in.MinImprovement)
		}
	} else {
		res.Affinity = ModelDecision{Kind: "affinity", Reason: fmt.Sprintf("not trained: %d request outcomes, %d needed", d.Dataset.RequestOutcomes, in.MinAffinitySamples)}
	}

	for _, m := range []*ModelDecision{&res.Demand, &res.Affinity} {
		if !m.Published {
			continue
		}
		stage("publishing " + m.Candidate)
		if err := workflow.ExecuteActivity(withSummary(quick, "publish "+m.Candidate), training.Promote, activities.PromoteInput{Version: m.Candidate}).Get(ctx, nil); err != nil {
			return res, fmt.Errorf("publish %s: %w", m.Candidate, err)
		}
	}
	stage(fmt.Sprintf("done — demand: %s; affinity: %s", res.Demand.Reason, res.Affinity.Reason))
	return res, nil
}

// judge decides whether a candidate replaces the champion: it must beat
// every baseline, and the champion by at least minImprovement (relative),
// on the primary metric over the same held-out range.
func judge(m activities.TrainedModel, metric string, minImprovement float64) ModelDecision {
	d := ModelDecision{Kind: m.Kind, Candidate: m.Version, Champion: m.Champion, Metric: metric,
		Metrics: m.Metrics, ChampionMetrics: m.ChampionMetrics, Baselines: m.Baselines}
	cand, ok := m.Metrics[metric]
	if !ok {
		d.Reason = fmt.Sprintf("candidate %s has no %s metric; not published", m.Version, metric)
		return d
	}
	var lost []string
	for _, name := range slices.Sorted(maps.Keys(m.Baselines)) {
		if b, ok := m.Baselines[name][metric]; ok && cand >= b {
			lost = append(lost, fmt.Sprintf("%s %.4f", name, b))
		}
	}
	if len(lost) > 0 {
		d.Reason = fmt.Sprintf("candidate %s %s %.4f does not beat baseline(s) %s; not published", m.Version, metric, cand, strings.Join(lost, ", "))
		return d
	}
	champ, hasChamp := m.ChampionMetrics[metric]
	switch {
	case m.Champion == "" || !hasChamp:
		d.Published = true
		d.Reason = fmt.Sprintf("no champion yet; candidate %s %s %.4f beats every baseline: published", m.Version, metric, cand)
	case cand < champ*(1-minImprovement):
		d.Published = true
		d.Reason = fmt.Sprintf("candidate %s %s %.4f beats champion %s %.4f by %.1f%%: published", m.Version, metric, cand, m.Champion, champ, 100*(champ-cand)/champ)
	default:
		d.Reason = fmt.Sprintf("candidate %s %s %.4f is not %.0f%% better than champion %s %.4f; champion kept", m.Version, metric, cand, 100*minImprovement, m.Champion, champ)
	}
	return d
}
