package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
)

func newPrepEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	env.SetStartTime(t0)
	RegisterPrediction(env)
	return env
}

var prepIn = PrepareInput{App: "app-p", Profile: wire.AppProfile{MemoryMB: 128, DiskMB: 64, ReadRatio: 0.5}, TopN: 1, TTL: 30 * time.Second, MaxShadowMS: 100}

func TestPreparationFallsBackToNextHostAndReleasesTheFailedOne(t *testing.T) {
	env := newPrepEnv()
	fh := newFakeHosts("slow", "good", "spare")
	fh.badShadow["slow"] = true
	fh.mock(env)
	env.ExecuteWorkflow(PreparationWorkflowName, prepIn)
	require.NoError(t, env.GetWorkflowError())
	var res PrepareResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Len(t, res.Leases, 1)
	require.Equal(t, "good", res.Leases[0].Host)
	require.Equal(t, t0.Add(30*time.Second), res.Leases[0].Expires)
	require.Equal(t, []PrepareAttempt{
		{Host: "slow", Score: 0.9, Outcome: "shadow-failed", ShadowMS: 900, Reason: "too slow"},
		{Host: "good", Score: 0.8, Outcome: "prepared", ShadowMS: 12},
	}, res.Attempts)
	rel := fh.releases()
	require.Len(t, rel, 1)
	require.Equal(t, "failed", rel[0].Event)
	require.Contains(t, rel[0].LeaseID, ".slow")
	require.Equal(t, []string{res.Leases[0].LeaseID}, fh.held(), "only the validated lease stays reserved")
}

func TestPreparationReleasesWhenReserveFailsForGood(t *testing.T) {
	env := newPrepEnv()
	fh := newFakeHosts("full", "ok")
	// "full" refuses (over capacity): not retried, released just in case, next host.
	// (Specific mocks first: the first matching expectation wins.)
	env.OnActivity(hosts.Reserve, mock.Anything, mock.MatchedBy(func(in wire.ReserveInput) bool { return in.Candidate.Host == "full" })).
		Return(wire.ReserveResult{}, temporal.NewNonRetryableApplicationError("over capacity", wire.ErrHostRejected, nil)).Once()
	fh.mock(env)
	env.ExecuteWorkflow(PreparationWorkflowName, prepIn)
	require.NoError(t, env.GetWorkflowError())
	var res PrepareResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "reserve-failed", res.Attempts[0].Outcome)
	require.Contains(t, res.Attempts[0].Reason, "over capacity")
	require.Equal(t, "ok", res.Leases[0].Host)
}

func TestPreparationCancelledReleasesWhatItHolds(t *testing.T) {
	env := newPrepEnv()
	fh := newFakeHosts("h1")
	// The shadow request hangs until the workflow is cancelled.
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ wire.ShadowInput) (wire.ShadowResult, error) {
			<-ctx.Done()
			return wire.ShadowResult{}, ctx.Err()
		})
	fh.mock(env)
	env.RegisterDelayedCallback(env.CancelWorkflow, 2*time.Second)
	env.ExecuteWorkflow(PreparationWorkflowName, prepIn)
	err := env.GetWorkflowError()
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "want cancelled, got %v", err)
	require.Empty(t, fh.held(), "a cancelled preparation leaks no lease")
	rel := fh.releases()
	require.Len(t, rel, 1)
	require.Equal(t, "preparation cancelled", rel[0].Reason)
}

func TestPreparationWithoutHosts(t *testing.T) {
	env := newPrepEnv()
	env.OnActivity(hosts.RankHosts, mock.Anything, mock.Anything).Return(wire.RankResult{},
		temporal.NewNonRetryableApplicationError("no live host agent", wire.ErrNoHosts, nil))
	env.ExecuteWorkflow(PreparationWorkflowName, prepIn)
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "no live host agent")
}
