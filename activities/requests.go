package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// Requests claims leases from the prediction loops and records served
// requests (with their affinity adjustments) in the metric store.
type Requests struct {
	Claimer  LeaseClaimer
	Recorder Recorder
}

// ClaimLease asks the application's loop for a live lease (an Update, so two
// requests can never claim the same lease). No loop or no lease: cold.
func (r *Requests) ClaimLease(ctx context.Context, in wire.ClaimInput) (wire.ClaimResult, error) {
	if in.App == "" || in.RequestID == "" {
		return wire.ClaimResult{}, nonRetryable(wire.ErrBadInput, fmt.Errorf("claim: app %q and request ID %q are required", in.App, in.RequestID))
	}
	res, err := r.Claimer.Claim(ctx, in)
	if err != nil {
		return wire.ClaimResult{}, fmt.Errorf("claim a lease from the loop of %s: %w", in.App, err)
	}
	return res, nil
}

// RecordRequest writes the request outcome, the claimed-lease event and the
// affinity adjustment. A retry (the first attempt's write may have landed
// before its answer was lost: a worker killed, ClickHouse cut) first asks
// whether the request is already recorded, when the Recorder can tell
// (RequestChecker), so the request row is written once.
func (r *Requests) RecordRequest(ctx context.Context, in wire.RecordRequestInput) (wire.RecordRequestResult, error) {
	write := true
	if c, ok := r.Recorder.(RequestChecker); ok && attempt(ctx) > 1 && in.Request.RequestID != "" {
		done, err := c.RecordedRequests(ctx, []records.Request{in.Request})
		if err != nil {
			return wire.RecordRequestResult{}, fmt.Errorf("check whether request %s is recorded: %w", in.Request.RequestID, err)
		}
		if write = !done[in.Request.RequestID]; !write {
			activity.GetLogger(ctx).Warn("request already recorded by an earlier attempt; not written again", "request", in.Request.RequestID)
		}
	}
	if write {
		if err := r.Recorder.RecordRequests(ctx, []records.Request{in.Request}); err != nil {
			return wire.RecordRequestResult{}, fmt.Errorf("record request %s: %w", in.Request.RequestID, err)
		}
	}
	if in.Claimed != nil {
		if err := r.Recorder.RecordPreparationEvents(ctx, []records.PreparationEvent{*in.Claimed}); err != nil {
			return wire.RecordRequestResult{}, fmt.Errorf("record claim of %s: %w", in.Claimed.PreparationID, err)
		}
	}
	if in.Adjustment != nil {
		if err := r.Recorder.RecordAdjustments(ctx, []records.Adjustment{*in.Adjustment}); err != nil {
			return wire.RecordRequestResult{}, fmt.Errorf("record adjustment %s/%s: %w", in.Adjustment.App, in.Adjustment.Host, err)
		}
	}
	return wire.RecordRequestResult{}, nil
}

// RequestChecker is what a Recorder may also do: say which of rows are
// already recorded (by request ID).
type RequestChecker interface {
	RecordedRequests(ctx context.Context, rows []records.Request) (map[string]bool, error)
}

// attempt is the activity's attempt number (1 outside an activity).
func attempt(ctx context.Context) int32 {
	if !activity.IsActivity(ctx) {
		return 1
	}
	return activity.GetInfo(ctx).Attempt
}
