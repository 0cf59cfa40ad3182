package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/models/lifecycle/rule"
)

// TrainingInput says what to train on. Zero From and To: the most recent
// Span of stored history.
type TrainingInput struct {
	From, To time.Time
	Span     time.Duration // with no From and To (0: rule.DefaultSpan)
	Bin      time.Duration // default 1 min
	Epochs   int           // 0: the trainer's default
	Seed     int64
	// MinAffinitySamples is how many served requests with outcomes are
	// needed before the affinity model is trained (0:
	// rule.MinAffinityOutcomes).
	MinAffinitySamples int
	// MinImprovement is the relative improvement of the primary metric a
	// candidate needs over the champion to replace it (0:
	// rule.MinImprovement).
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
	Dataset  wire.DatasetSummary
	Demand   ModelDecision
	Affinity ModelDecision
}

// TrainingProgressQuery asks what the run is doing (no fields yet).
type TrainingProgressQuery struct{}

// TrainingProgress is the answer to QueryTrainingProgress.
type TrainingProgress struct{ Stage string }

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
		in.MinAffinitySamples = rule.MinAffinityOutcomes
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
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{wire.ErrBadInput}},
	})
	var d wire.DescribeResult
	if err := workflow.ExecuteActivity(withSummary(quick, "describe the data set, bins of "+in.Bin.String()), ActivityDescribe, wire.DescribeInput{From: in.From, To: in.To, Span: in.Span, Bin: in.Bin}).Get(ctx, &d); err != nil {
		return res, fmt.Errorf("extract the data set: %w", err)
	}
	res.Dataset = d.Dataset
	spec := wire.TrainSpec{From: d.Dataset.From, To: d.Dataset.To, Bin: in.Bin, Epochs: in.Epochs, Seed: in.Seed}

	long := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: in.TrainTimeout,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrNotEnough}},
	})

	stage(fmt.Sprintf("training the demand model on %d apps × %d bins, %s .. %s (%s)", d.Dataset.Apps, d.Dataset.Bins,
		d.Dataset.From.Format(time.RFC3339), d.Dataset.To.Format(time.RFC3339), d.Dataset.Chosen))
	var dr wire.TrainResult
	if err := workflow.ExecuteActivity(withSummary(long, "train demand model"), ActivityTrainDemand, wire.TrainInput{Spec: spec}).Get(ctx, &dr); err != nil {
		return res, fmt.Errorf("train the demand model: %w", err)
	}
	res.Demand = judge(dr.Model, in.MinImprovement)
	res.Demand.Resumed = dr.Resumed

	if d.Dataset.RequestOutcomes >= in.MinAffinitySamples {
		stage(fmt.Sprintf("training the affinity model on %d request outcomes", d.Dataset.RequestOutcomes))
		var ar wire.TrainResult
		if err := workflow.ExecuteActivity(withSummary(long, "train affinity model"), ActivityTrainAffinity, wire.TrainInput{Spec: spec}).Get(ctx, &ar); err != nil {
			// The demand decision stands on its own.
			res.Affinity = ModelDecision{Kind: "affinity", Reason: "training failed: " + rootMessage(err)}
		} else {
			res.Affinity = judge(ar.Model, in.MinImprovement)
		}
	} else {
		res.Affinity = ModelDecision{Kind: "affinity", Reason: fmt.Sprintf("not trained: %d request outcomes, %d needed", d.Dataset.RequestOutcomes, in.MinAffinitySamples)}
	}

	for _, m := range []*ModelDecision{&res.Demand, &res.Affinity} {
		if !m.Published {
			continue
		}
		stage("publishing " + m.Candidate)
		if err := workflow.ExecuteActivity(withSummary(quick, "publish "+m.Candidate), ActivityPromote, wire.PromoteInput{Version: m.Candidate}).Get(ctx, nil); err != nil {
			return res, fmt.Errorf("publish %s: %w", m.Candidate, err)
		}
	}
	stage(fmt.Sprintf("done — demand: %s; affinity: %s", res.Demand.Reason, res.Affinity.Reason))
	return res, nil
}

// judge is the lifecycle's one publish rule, applied in workflow code (it
// is pure) to what the training activity measured.
func judge(m wire.TrainedModel, minImprovement float64) ModelDecision {
	d := rule.Decide(m, minImprovement)
	return ModelDecision{Kind: m.Kind, Candidate: m.Version, Champion: m.Champion, Metric: rule.PrimaryMetric(m.Kind),
		Metrics: m.Metrics, ChampionMetrics: m.ChampionMetrics, Baselines: m.Baselines, Published: d.Publish, Reason: d.Reason}
}
