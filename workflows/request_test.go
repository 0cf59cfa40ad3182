package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/store/records"
)

func TestNextAdjustment(t *testing.T) {
	next, ok := NextAdjustment(0, 0.9, 0.85, 0.15, 0.5)
	require.False(t, ok, "within tolerance")
	require.Equal(t, 0.0, next)
	next, ok = NextAdjustment(0.1, 0.9, 0.4, 0.15, 0.5)
	require.True(t, ok)
	require.InDelta(t, -0.15, next, 1e-12, "lowered at once by half the gap")
	next, _ = NextAdjustment(0.4, 0.2, 1, 0.15, 0.5)
	require.Equal(t, 0.5, next, "clamped")
	require.Equal(t, 0.5, PerformanceScore(100, 200))
	require.Equal(t, 1.0, PerformanceScore(100, 50))
}

func newRequestEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	env.SetStartTime(t0)
	RegisterPrediction(env)
	return env
}

var reqIn = RequestInput{RequestID: "r-1", App: "app-r", MemoryMB: 128, DiskMB: 64, ReadRatio: 0.6, WorkMS: 100, VolumeType: "ssd"}

func TestServeRequestWarmSlowHostLowersAffinity(t *testing.T) {
	env := newRequestEnv()
	lease := wire.Lease{LeaseID: "app-r.1.h1", App: "app-r", Host: "h1", HostURL: "http://h1", MemoryMB: 128, Score: 0.9, Adjusted: 0.1, Reserved: t0.Add(-5 * time.Second)}
	env.OnActivity(requests.ClaimLease, mock.Anything, wire.ClaimInput{App: "app-r", RequestID: "r-1", CountArrival: true, SizeMB: 128}).
		Return(wire.ClaimResult{Found: true, LoopRunning: true, Lease: lease}, nil)
	env.OnActivity(hosts.Serve, mock.Anything, mock.MatchedBy(func(in wire.ServeInput) bool { return in.LeaseID == lease.LeaseID && in.HostURL == "http://h1" })).
		Return(wire.ServeResult{Warm: true, SetupMS: 1, WorkMS: 250, TotalMS: 251}, nil)
	var recorded wire.RecordRequestInput
	env.OnActivity(requests.RecordRequest, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.RecordRequestInput) (wire.RecordRequestResult, error) {
			recorded = in
			return wire.RecordRequestResult{}, nil
		})
	var obs ObservationSignal
	env.OnSignalExternalWorkflow(mock.Anything, "predict/app-r", "", SignalObservation, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error { obs = arg.(ObservationSignal); return nil })

	env.ExecuteWorkflow(RequestWorkflowName, reqIn)
	require.NoError(t, env.GetWorkflowError())
	var res RequestResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Warm)
	require.Equal(t, "warm", res.Outcome)
	require.Equal(t, 0.4, res.Actual)
	require.True(t, res.Adjusted)
	require.InDelta(t, 0.1+0.5*(0.4-0.9), res.NewAdjustment, 1e-12)

	require.Equal(t, "h1", recorded.Request.Host)
	require.True(t, recorded.Request.Warm)
	require.NotNil(t, recorded.Claimed)
	require.Equal(t, records.EventClaimed, recorded.Claimed.Event)
	require.InDelta(t, 5, recorded.Claimed.HeldSeconds, 1e-9)
	require.NotNil(t, recorded.Adjustment)
	require.Equal(t, res.NewAdjustment, recorded.Adjustment.NewAdjustment)

	require.True(t, obs.Warm)
	require.True(t, obs.Claimed, "the claim already counted the arrival")
	require.Equal(t, "h1", obs.Host)
	require.NotNil(t, obs.Adjustment)
	require.Equal(t, res.NewAdjustment, *obs.Adjustment)
}

func TestServeRequestColdWithoutLoop(t *testing.T) {
	env := newRequestEnv()
	env.OnActivity(requests.ClaimLease, mock.Anything, mock.Anything).Return(wire.ClaimResult{}, nil)
	env.OnActivity(hosts.RankHosts, mock.Anything, mock.Anything).Return(wire.RankResult{Candidates: []wire.HostCandidate{
		{Host: "down", URL: "http://down", Score: 0.9}, {Host: "h2", URL: "http://h2", Score: 0.7}}}, nil)
	env.OnActivity(hosts.Serve, mock.Anything, mock.MatchedBy(func(in wire.ServeInput) bool { return in.Host == "down" })).
		Return(wire.ServeResult{}, errTransient)
	env.OnActivity(hosts.Serve, mock.Anything, mock.MatchedBy(func(in wire.ServeInput) bool { return in.Host == "h2" && in.LeaseID == "" })).
		Return(wire.ServeResult{Warm: false, SetupMS: 40, WorkMS: 140, TotalMS: 180}, nil)
	env.OnActivity(requests.RecordRequest, mock.Anything, mock.Anything).Return(wire.RecordRequestResult{}, nil)
	env.OnSignalExternalWorkflow(mock.Anything, "predict/app-r", "", SignalObservation, mock.Anything).
		Return(serviceerror.NewNotFound("workflow not found"))
	env.ExecuteWorkflow(RequestWorkflowName, reqIn)
	require.NoError(t, env.GetWorkflowError(), "no loop is not an error")
	var res RequestResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.False(t, res.Warm)
	require.Equal(t, "cold", res.Outcome)
	require.Equal(t, "h2", res.Host)
	require.False(t, res.Adjusted, "0.714 vs 0.7 is within tolerance")
}

var errTransient = errorString("connection refused")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestServeRequestCountedByClaimSendsNoSignalWithoutAdjustment(t *testing.T) {
	env := newRequestEnv()
	lease := wire.Lease{LeaseID: "app-r.1.h1", App: "app-r", Host: "h1", HostURL: "http://h1", Score: 0.9}
	env.OnActivity(requests.ClaimLease, mock.Anything, mock.Anything).Return(wire.ClaimResult{Found: true, LoopRunning: true, Lease: lease}, nil)
	env.OnActivity(hosts.Serve, mock.Anything, mock.Anything).Return(wire.ServeResult{Warm: true, WorkMS: 105, TotalMS: 106}, nil)
	env.OnActivity(requests.RecordRequest, mock.Anything, mock.Anything).Return(wire.RecordRequestResult{}, nil)
	// No OnSignalExternalWorkflow: a signal would fail the test.
	env.ExecuteWorkflow(RequestWorkflowName, reqIn)
	require.NoError(t, env.GetWorkflowError())
	var res RequestResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Warm)
	require.False(t, res.Adjusted)
}
