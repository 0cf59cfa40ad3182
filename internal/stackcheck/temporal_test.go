package stackcheck

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/internal/testenv"
)

type echoInput struct{ Text string }
type echoResult struct{ Text string }

func echoActivity(_ context.Context, in echoInput) (echoResult, error) {
	return echoResult{Text: "echo: " + in.Text}, nil
}

func echoWorkflow(ctx workflow.Context, in echoInput) (echoResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out echoResult
	err := workflow.ExecuteActivity(ctx, echoActivity, in).Get(ctx, &out)
	return out, err
}

// A workflow runs on the dev server through a real worker and its activity
// result comes back.
func TestTemporalWorkflowRunsThroughWorker(t *testing.T) {
	tc := testenv.Temporal(t)
	c, err := tc.Dial(nil)
	if err != nil {
		testenv.Missing(t, "Temporal", err)
	}
	defer c.Close()

	queue := "stackcheck-" + uuid.NewString()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(echoWorkflow)
	w.RegisterActivity(echoActivity)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	defer w.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "stackcheck/" + queue, TaskQueue: queue}, echoWorkflow, echoInput{Text: "ready"})
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var out echoResult
	if err := run.Get(ctx, &out); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	if want := "echo: ready"; out.Text != want {
		t.Fatalf("result %q, want %q", out.Text, want)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if got := desc.WorkflowExecutionInfo.Status.String(); got != "Completed" {
		t.Fatalf("status %s, want Completed", got)
	}
	fmt.Println("workflow", run.GetID(), "completed on", tc.Address)
}
