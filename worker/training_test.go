package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

// TestTrainingWithTracesOfDifferentYears: a store holding a trace of 2019
// and one of 2024 (as a new user who loads the Azure sample and then a
// synthetic workload has) trains through the workflow on the recent one by
// default, says so, and refuses a range too large to read at once without
// retrying, naming the flag that narrows it.
func TestTrainingWithTracesOfDifferentYears(t *testing.T) {
	k := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	y2019 := time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)
	y2024 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	for i, start := range []time.Time{y2019, y2024} {
		tr := trace.Synth(trace.SynthOptions{Apps: 20, Days: 2, Seed: int64(i + 1), Start: start, Mix: trace.Mix{Timer: 1}})
		_, err := k.st.LoadTrace(ctx, tr, store.LoadOptions{Format: "synth", Source: start.Format("2006")})
		require.NoError(t, err)
	}
	k.startWorker()

	res := k.trainWith("train/"+k.prefix+"-recent", workflows.TrainingInput{Bin: time.Minute, Epochs: 1, Seed: 3})
	t.Logf("dataset: %+v; demand: %s", res.Dataset, res.Demand.Reason)
	require.False(t, res.Dataset.From.Before(y2024), "trained from %v: the 2019 trace and the years between were read", res.Dataset.From)
	require.Equal(t, 20, res.Dataset.Apps)
	require.Equal(t, 2*24*60, res.Dataset.Bins)
	require.Contains(t, res.Dataset.Chosen, "of stored history")
	require.NotEmpty(t, res.Demand.Candidate)

	// Both years at once, at 10 s bins, can never fit one read.
	id := "train/" + k.prefix + "-both"
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: k.s.TrainingQueue}, workflows.TrainingWorkflowName,
		workflows.TrainingInput{From: y2019, To: y2024.Add(48 * time.Hour), Bin: 10 * time.Second, Epochs: 1})
	require.NoError(t, err)
	err = run.Get(ctx, nil)
	var refusal *temporal.ApplicationError
	for e := err; e != nil; e = errors.Unwrap(e) {
		if a, ok := e.(*temporal.ApplicationError); ok && a.Type() == wire.ErrBadInput {
			refusal = a
		}
	}
	require.NotNil(t, refusal, "no %s refusal in %v", wire.ErrBadInput, err)
	require.True(t, refusal.NonRetryable())
	require.Contains(t, err.Error(), "too large")
	require.Contains(t, err.Error(), "starter train --span")
	// One attempt: the refusal was not retried.
	it := k.c.GetWorkflowHistory(ctx, id, "", false, 0)
	attempts := 0
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			attempts = max(attempts, int(a.GetAttempt()))
		}
	}
	require.Equal(t, 1, attempts, "the describe activity was retried")
}
