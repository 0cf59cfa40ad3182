package main

import (
	"context"
	"errors"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/workflows"
)

// claimer claims leases through the loop's Update. The request ID is the
// update ID, so a retried claim activity gets the same answer back instead
// of claiming a second lease.
type claimer struct{ c client.Client }

func (cl claimer) Claim(ctx context.Context, in activities.ClaimInput) (activities.ClaimResult, error) {
	h, err := cl.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.LoopWorkflowID(in.App),
		UpdateID:     "claim-" + in.RequestID,
		UpdateName:   workflows.UpdateClaim,
		Args:         []any{workflows.ClaimUpdate{RequestID: in.RequestID, CountArrival: in.CountArrival, SizeMB: in.SizeMB, ArrivedAt: in.ArrivedAt}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return activities.ClaimResult{}, nil // no loop: cold
	}
	if err != nil {
		return activities.ClaimResult{}, err
	}
	var res workflows.ClaimUpdateResult
	if err := h.Get(ctx, &res); err != nil {
		if errors.As(err, &nf) {
			return activities.ClaimResult{}, nil
		}
		return activities.ClaimResult{}, err
	}
	res.LoopRunning = true
	return res, nil
}
