package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
)

// Trainer is what the training activities need from the models and the
// registry: describe a data set, train a candidate (evaluated on a held-out
// range against the champion and the baselines, stored as a candidate), and
// promote a candidate to champion.
type Trainer interface {
	Describe(ctx context.Context, from, to time.Time, bin time.Duration) (DatasetSummary, error)
	TrainDemand(ctx context.Context, spec TrainSpec, resume []byte, progress func(TrainProgress)) (TrainedModel, error)
	TrainAffinity(ctx context.Context, spec TrainSpec, progress func(TrainProgress)) (TrainedModel, error)
	Promote(ctx context.Context, version string) error
}

// ErrNotEnoughData is returned by a Trainer when the range holds too little.
var ErrNotEnoughData = errors.New("not enough data")

// DatasetSummary describes the stored history a training run will use.
type DatasetSummary struct {
	From, To         time.Time
	Bin              time.Duration
	Apps             int
	Bins             int
	Requests         float64 // total requests in the activity history
	RequestOutcomes  int     // served requests with a host outcome (affinity samples)
	HostMetricsCount int
}

// TrainSpec is what to train on.
type TrainSpec struct {
	From, To time.Time
	Bin      time.Duration
	Epochs   int
	Seed     int64
}

// TrainProgress is heartbeated; Checkpoint lets a retried attempt resume.
type TrainProgress struct {
	Epoch, Epochs int
	Loss          float64
	Checkpoint    []byte
}

// TrainedModel is a stored candidate and how it compares.
type TrainedModel struct {
	Version         string
	Kind            string
	Samples         int
	Metrics         map[string]float64            // on the held-out range
	Baselines       map[string]map[string]float64 // baseline -> metrics, same range
	Champion        string                        // current champion's version ("" when none)
	ChampionMetrics map[string]float64            // champion on the same range
}

// DescribeInput / DescribeResult: the data set a training run extracts.
type DescribeInput struct {
	From, To time.Time
	Bin      time.Duration
}
type DescribeResult struct{ Dataset DatasetSummary }

// TrainInput / TrainResult: one model trained into a candidate.
type TrainInput struct{ Spec TrainSpec }
type TrainResult struct {
	Model   TrainedModel
	Resumed bool // the attempt started from a heartbeat checkpoint
}

// PromoteInput / PromoteResult: make a candidate the champion.
type PromoteInput struct{ Version string }
type PromoteResult struct{}

// Training runs the CPU-heavy work on the training task queue.
type Training struct {
	Trainer Trainer
}

// Describe extracts the data set summary (the rows stay in ClickHouse; the
// training activity reads them itself rather than through Temporal's history).
func (t *Training) Describe(ctx context.Context, in DescribeInput) (DescribeResult, error) {
	bounded := !in.From.IsZero() || !in.To.IsZero()
	if (bounded && !in.To.After(in.From)) || in.Bin <= 0 {
		return DescribeResult{}, nonRetryable(ErrBadInput, fmt.Errorf("describe: range %v..%v, bin %v: need from < to (or both zero: everything stored) and a bin", in.From, in.To, in.Bin))
	}
	d, err := t.Trainer.Describe(ctx, in.From, in.To, in.Bin)
	if err != nil {
		return DescribeResult{}, fmt.Errorf("describe stored history %v..%v: %w", in.From, in.To, err)
	}
	return DescribeResult{Dataset: d}, nil
}

// TrainDemand trains the demand model, heartbeating progress with a
// checkpoint; a retried attempt resumes from the last heartbeat's checkpoint.
func (t *Training) TrainDemand(ctx context.Context, in TrainInput) (TrainResult, error) {
	var resume []byte
	if activity.HasHeartbeatDetails(ctx) {
		var last TrainProgress
		if err := activity.GetHeartbeatDetails(ctx, &last); err == nil {
			resume = last.Checkpoint
		}
	}
	last := resume
	m, err := t.Trainer.TrainDemand(ctx, in.Spec, resume, func(p TrainProgress) {
		// Checkpoints come at epoch ends; every heartbeat carries the
		// latest so the next attempt resumes from it.
		if p.Checkpoint == nil {
			p.Checkpoint = last
		} else {
			last = p.Checkpoint
		}
		activity.RecordHeartbeat(ctx, p)
	})
	if err != nil {
		return TrainResult{}, classifyTrainErr("demand", err)
	}
	return TrainResult{Model: m, Resumed: resume != nil}, nil
}

// TrainAffinity trains the affinity model from served requests.
func (t *Training) TrainAffinity(ctx context.Context, in TrainInput) (TrainResult, error) {
	stop := heartbeatEvery(ctx, 5*time.Second, TrainProgress{})
	defer stop()
	m, err := t.Trainer.TrainAffinity(ctx, in.Spec, func(p TrainProgress) { activity.RecordHeartbeat(ctx, p) })
	if err != nil {
		return TrainResult{}, classifyTrainErr("affinity", err)
	}
	return TrainResult{Model: m}, nil
}

// Promote makes the candidate the champion (the registry retires the old one).
func (t *Training) Promote(ctx context.Context, in PromoteInput) (PromoteResult, error) {
	if in.Version == "" {
		return PromoteResult{}, nonRetryable(ErrBadInput, errors.New("promote: no version"))
	}
	if err := t.Trainer.Promote(ctx, in.Version); err != nil {
		return PromoteResult{}, fmt.Errorf("promote %s: %w", in.Version, err)
	}
	return PromoteResult{}, nil
}

func classifyTrainErr(kind string, err error) error {
	if errors.Is(err, ErrNotEnoughData) {
		return nonRetryable(ErrNotEnough, fmt.Errorf("train %s: %w", kind, err))
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("train %s: %w", kind, err)
}
