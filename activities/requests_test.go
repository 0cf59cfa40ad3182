package activities

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/store/records"
)

// lossyRecorder stores request rows, but the first write's answer is lost
// after the row landed (a worker killed, a connection cut mid-reply).
type lossyRecorder struct {
	mu     sync.Mutex
	rows   []records.Request
	writes int
}

func (r *lossyRecorder) RecordRequests(_ context.Context, rows []records.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, rows...)
	r.writes++
	if r.writes == 1 {
		return errors.New("read tcp 127.0.0.1:19000: connection reset by peer")
	}
	return nil
}

func (r *lossyRecorder) RecordedRequests(_ context.Context, rows []records.Request) (map[string]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, q := range rows {
		for _, have := range r.rows {
			if have.RequestID == q.RequestID {
				out[q.RequestID] = true
			}
		}
	}
	return out, nil
}

func (r *lossyRecorder) RecordPredictions(context.Context, []records.Prediction) error { return nil }
func (r *lossyRecorder) RecordPreparationEvents(context.Context, []records.PreparationEvent) error {
	return nil
}
func (r *lossyRecorder) RecordAdjustments(context.Context, []records.Adjustment) error { return nil }

// A record whose first write landed but whose answer was lost is retried
// without writing the request a second time.
func TestRecordRequestRetriedAfterALostAnswerWritesOnce(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	rec := &lossyRecorder{}
	reqs := &Requests{Recorder: rec}
	env.RegisterActivity(reqs)
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in wire.RecordRequestInput) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Second,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Millisecond, MaximumAttempts: 5}})
		return workflow.ExecuteActivity(ctx, reqs.RecordRequest, in).Get(ctx, nil)
	}, workflow.RegisterOptions{Name: "record"})
	in := wire.RecordRequestInput{Request: records.Request{Time: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC), RequestID: "r-1", App: "a"}}
	env.ExecuteWorkflow("record", in)
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, rec.rows, 1, "recorded once")
	require.Equal(t, 1, rec.writes, "the retry saw the row and did not write it again")
}
