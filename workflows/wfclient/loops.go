// Package wfclient holds what a client of Forewarm's workflows does, beside
// the workflows it drives (as a reference application keeps each domain's
// client helpers next to its workflows): the options a loop starts with,
// the inputs of loops seeded from stored history, the loop's query and
// updates, on-demand training. The starter CLI and the worker call it; it
// keeps no flags and prints nothing.
package wfclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/workflows"
)

// ErrNoLoop is returned when no prediction loop runs for the application.
var ErrNoLoop = errors.New("no prediction loop runs")

// StartLoopOptions are the options a loop starts with: its fixed ID, the
// search attributes operators filter on, the memo, and the summary and
// details the Web UI shows on its page.
func StartLoopOptions(taskQueue string, in workflows.LoopInput) client.StartWorkflowOptions {
	state := workflows.LoopStateRunning
	switch {
	case in.Policy.Paused:
		state = workflows.LoopStatePaused
	case in.Policy.DryRun:
		state = workflows.LoopStateDryRun
	}
	return client.StartWorkflowOptions{
		ID:                       workflows.LoopWorkflowID(in.App),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK hands back the running loop silently.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.AttrApp.ValueSet(in.App),
			workflows.AttrLoopState.ValueSet(state),
			workflows.AttrThreshold.ValueSet(in.Policy.Threshold)),
		Memo:          map[string]any{workflows.MemoBin: in.Bin.String(), workflows.MemoProfile: in.Profile},
		StaticSummary: fmt.Sprintf("prediction loop of %s", in.App),
		StaticDetails: fmt.Sprintf("Bins of %v. Holds a warm instance of the app on its best host(s) (top %d) through a bin when P(request in it) "+
			"is worth the idle memory: threshold %.3g for a %.0f MB app, scaled by the app's size; sleeps until the policy could act. "+
			"Current Details (this tab) say what it holds and decides now; query `state` for everything; signal `threshold` to change it.",
			in.Bin, in.Policy.TopN, in.Policy.Threshold, in.Policy.ReferenceMB),
	}
}

// StartLoop starts one loop; a loop already running for the application
// is a *serviceerror.WorkflowExecutionAlreadyStarted.
func StartLoop(ctx context.Context, c client.Client, taskQueue string, in workflows.LoopInput) (client.WorkflowRun, error) {
	return c.ExecuteWorkflow(ctx, StartLoopOptions(taskQueue, in), workflows.LoopWorkflowName, in)
}

// loopErr wraps "no such workflow" as ErrNoLoop.
func loopErr(app string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%w for %s (workflow %s): %w", ErrNoLoop, app, workflows.LoopWorkflowID(app), err)
	}
	return fmt.Errorf("loop %s: %w", workflows.LoopWorkflowID(app), err)
}

// QueryLoop asks a loop for its whole state.
func QueryLoop(ctx context.Context, c client.Client, app string) (workflows.LoopStatus, error) {
	var st workflows.LoopStatus
	v, err := c.QueryWorkflow(ctx, workflows.LoopWorkflowID(app), "", workflows.QueryState, workflows.StateQuery{})
	if err != nil {
		return st, loopErr(app, err)
	}
	return st, v.Get(&st)
}

// UpdatePolicy sends the set-policy Update and returns its answer (a
// validator refusal comes back as an error with the reason).
func UpdatePolicy(ctx context.Context, c client.Client, app string, change workflows.PolicyChange) (workflows.PolicyUpdateResult, error) {
	var res workflows.PolicyUpdateResult
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.LoopWorkflowID(app),
		UpdateName:   workflows.UpdatePolicy,
		Args:         []any{workflows.PolicyUpdate{Change: change}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		return res, loopErr(app, err)
	}
	return res, nil
}

// Claimer claims leases through the loops' claim-lease Update
// (activities.LeaseClaimer). The request ID is the update ID, so a retried
// claim gets the same answer back instead of claiming a second lease.
type Claimer struct{ C client.Client }

// Claim asks the application's loop for a lease; no loop: a cold answer.
func (cl Claimer) Claim(ctx context.Context, in wire.ClaimInput) (wire.ClaimResult, error) {
	h, err := cl.C.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.LoopWorkflowID(in.App),
		UpdateID:     "claim-" + in.RequestID,
		UpdateName:   workflows.UpdateClaim,
		Args:         []any{workflows.ClaimUpdate{RequestID: in.RequestID, CountArrival: in.CountArrival, SizeMB: in.SizeMB, ArrivedAt: in.ArrivedAt}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return wire.ClaimResult{}, nil // no loop: cold
	}
	if err != nil {
		return wire.ClaimResult{}, err
	}
	var res workflows.ClaimUpdateResult
	if err := h.Get(ctx, &res); err != nil {
		if errors.As(err, &nf) {
			return wire.ClaimResult{}, nil
		}
		return wire.ClaimResult{}, err
	}
	res.LoopRunning = true
	return res, nil
}

// StartTraining starts the training workflow on demand (ID train/<time>)
// and, with wait, returns its result.
func StartTraining(ctx context.Context, c client.Client, taskQueue string, in workflows.TrainingInput, wait bool) (string, *workflows.TrainingResult, error) {
	id := workflows.TrainingWorkflowID(time.Now())
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:            id,
		TaskQueue:     taskQueue,
		StaticSummary: "on-demand training: demand and affinity models",
	}, workflows.TrainingWorkflowName, in)
	if err != nil {
		return id, nil, fmt.Errorf("start training %s: %w", id, err)
	}
	if !wait {
		return id, nil, nil
	}
	var res workflows.TrainingResult
	if err := run.Get(ctx, &res); err != nil {
		return id, nil, fmt.Errorf("training %s: %w", id, err)
	}
	return id, &res, nil
}
