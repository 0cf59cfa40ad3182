package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/forewarm/forewarm/activities/wire"
)

// Trainer is what the training activities need from the models and the
// registry: describe a data set, train a candidate (evaluated on a held-out
// range against the champion and the baselines, stored as a candidate), and
// promote a candidate to champion.
type Trainer interface {
	Describe(ctx context.Context, in wire.DescribeInput) (wire.DatasetSummary, error)
	TrainDemand(ctx context.Context, spec wire.TrainSpec, resume []byte, progress func(TrainProgress)) (wire.TrainedModel, error)
	TrainAffinity(ctx context.Context, spec wire.TrainSpec, progress func(TrainProgress)) (wire.TrainedModel, error)
	Promote(ctx context.Context, version string) error
}

// ErrNotEnoughData is returned by a Trainer when the range holds too little.
var ErrNotEnoughData = errors.New("not enough data")

// ErrTooLarge is returned by a Trainer when the range holds more than one
// run can read: a retry cannot help, a narrower range can.
var ErrTooLarge = errors.New("too large to train on at once")

// RangeHint names the settings that choose a training run's range; every
// refusal of a range ends with it.
const RangeHint = "choose a shorter range with `starter train --span` (or --from and --to), or a wider --bin"

// TrainProgress is heartbeated; Checkpoint lets a retried attempt resume.
type TrainProgress struct {
	Epoch, Epochs int
	Loss          float64
	Checkpoint    []byte
}

// Training runs the CPU-heavy work on the training task queue.
type Training struct {
	Trainer Trainer
}

// Describe extracts the data set summary (the rows stay in ClickHouse; the
// training activity reads them itself rather than through Temporal's history).
func (t *Training) Describe(ctx context.Context, in wire.DescribeInput) (wire.DescribeResult, error) {
	bounded := !in.From.IsZero() && !in.To.IsZero()
	if (bounded && !in.To.After(in.From)) || in.Bin <= 0 || in.Span < 0 {
		return wire.DescribeResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("describe: range %v..%v, span %v, bin %v: need from < to (or neither: the recent span) and a bin; %s", in.From, in.To, in.Span, in.Bin, RangeHint))
	}
	d, err := t.Trainer.Describe(ctx, in)
	if err != nil {
		return wire.DescribeResult{}, classifyTrainErr("describe stored history", err)
	}
	return wire.DescribeResult{Dataset: d}, nil
}

// TrainDemand trains the demand model, heartbeating progress with a
// checkpoint; a retried attempt resumes from the last heartbeat's checkpoint.
func (t *Training) TrainDemand(ctx context.Context, in wire.TrainInput) (wire.TrainResult, error) {
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
		return wire.TrainResult{}, classifyTrainErr("train demand", err)
	}
	return wire.TrainResult{Model: m, Resumed: resume != nil}, nil
}

// TrainAffinity trains the affinity model from served requests.
func (t *Training) TrainAffinity(ctx context.Context, in wire.TrainInput) (wire.TrainResult, error) {
	stop := heartbeatEvery(ctx, 5*time.Second, TrainProgress{})
	defer stop()
	m, err := t.Trainer.TrainAffinity(ctx, in.Spec, func(p TrainProgress) { activity.RecordHeartbeat(ctx, p) })
	if err != nil {
		return wire.TrainResult{}, classifyTrainErr("train affinity", err)
	}
	return wire.TrainResult{Model: m}, nil
}

// Promote makes the candidate the champion (the registry retires the old one).
func (t *Training) Promote(ctx context.Context, in wire.PromoteInput) (wire.PromoteResult, error) {
	if in.Version == "" {
		return wire.PromoteResult{}, nonRetryable(wire.ErrBadInput, errors.New("promote: no version"))
	}
	if err := t.Trainer.Promote(ctx, in.Version); err != nil {
		return wire.PromoteResult{}, fmt.Errorf("promote %s: %w", in.Version, err)
	}
	return wire.PromoteResult{}, nil
}

// classifyTrainErr makes the failures a retry cannot fix non-retryable:
// too little data, and a range too large to read (with the hint).
func classifyTrainErr(what string, err error) error {
	switch {
	case errors.Is(err, ErrNotEnoughData):
		return nonRetryable(wire.ErrNotEnough, fmt.Errorf("%s: %w", what, err))
	case errors.Is(err, ErrTooLarge):
		return nonRetryable(wire.ErrBadInput, fmt.Errorf("%s: %w; %s", what, err, RangeHint))
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
