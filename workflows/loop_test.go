package workflows

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/store/records"
)

var t0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// fakeHosts is a scripted set of host agents behind the mocked activities.
type fakeHosts struct {
	mu         sync.Mutex
	candidates []activities.HostCandidate
	badShadow  map[string]bool // host -> shadow fails
	reserved   map[string]bool // lease ID -> held
	released   []activities.ReleaseInput
}

func newFakeHosts(names ...string) *fakeHosts {
	f := &fakeHosts{badShadow: map[string]bool{}, reserved: map[string]bool{}}
	for i, n := range names {
		f.candidates = append(f.candidates, activities.HostCandidate{Host: n, URL: "http://" + n, ModelScore: 0.9 - 0.1*float64(i), Score: 0.9 - 0.1*float64(i)})
	}
	return f
}

func (f *fakeHosts) mock(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(hosts.RankHosts, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RankInput) (activities.RankResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			out := make([]activities.HostCandidate, len(f.candidates))
			copy(out, f.candidates)
			for i := range out {
				out[i].Adjustment = in.Adjustments[out[i].Host]
				out[i].Score += out[i].Adjustment
			}
			return activities.RankResult{Candidates: out, ModelVersion: "aff-1"}, nil
		})
	env.OnActivity(hosts.Reserve, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReserveInput) (activities.ReserveResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reserved[in.LeaseID] = true
			// Activities run on the wall clock, not the test's: leave the
			// expiry to the workflow's clock.
			return activities.ReserveResult{}, nil
		})
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ShadowInput) (activities.ShadowResult, error) {
			if f.badShadow[in.Host] {
				return activities.ShadowResult{OK: false, ShadowMS: 900, Reason: "too slow"}, nil
			}
			return activities.ShadowResult{OK: true, ShadowMS: 12}, nil
		})
	env.OnActivity(hosts.Release, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ReleaseInput) (activities.ReleaseResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			held := f.reserved[in.LeaseID]
			delete(f.reserved, in.LeaseID)
			f.released = append(f.released, in)
			return activities.ReleaseResult{WasHeld: held}, nil
		})
}

func (f *fakeHosts) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, ok := range f.reserved {
		if ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func (f *fakeHosts) releases() []activities.ReleaseInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]activities.ReleaseInput(nil), f.released...)
}

func newLoopEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	RegisterPrediction(env)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	env.OnActivity(predictor.Seed, mock.Anything, mock.Anything).Return(activities.SeedResult{
		Counts: []float64{0, 1, 0}, Profile: activities.AppProfile{MemoryMB: 256, ReadRatio: 0.7}, ProfileKnown: true,
		Adjustments: map[string]float64{"h2": 0.05}}, nil).Maybe()
	return env
}

// newLegacyLoopEnv runs loops as they ran before the policy package (the
// path old histories replay through).
func newLegacyLoopEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	env := newLoopEnv(t)
	env.OnGetVersion(versionPolicyLoop, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	return env
}

// predictHigh answers P=0.9 once the app has seen a request in the last bin.
func predictHigh(_ context.Context, in activities.PredictInput) (activities.PredictResult, error) {
	p := 0.1
	if n := len(in.Counts); n > 0 && in.Counts[n-1] > 0 {
		p = 0.9
	}
	return activities.PredictResult{Probability: p, ModelVersion: "demand-1",
		Decision: activities.Decide(p, in.Threshold, in.Covered, in.DryRun)}, nil
}

func queryState(t *testing.T, env *testsuite.TestWorkflowEnvironment) LoopStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryState, StateQuery{})
	require.NoError(t, err)
	var st LoopStatus
	require.NoError(t, v.Get(&st))
	return st
}

func TestLegacyLoopPreparesClaimsAndStops(t *testing.T) {
	env := newLegacyLoopEnv(t)
	fh := newFakeHosts("h1", "h2")
	fh.mock(env)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(predictHigh)

	var claimed ClaimUpdateResult
	var miss ClaimUpdateResult
	var mid, afterSignals LoopStatus
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "r0", Count: 2})
	}, 2500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		mid = queryState(t, env)
		env.UpdateWorkflow(UpdateClaim, "claim-1", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { t.Errorf("claim rejected: %v", err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); claimed = v.(ClaimUpdateResult) },
		}, ClaimUpdate{RequestID: "r1"})
		env.UpdateWorkflow(UpdateClaim, "claim-2", &testsuite.TestUpdateCallback{
			OnComplete: func(v any, err error) { require.NoError(t, err); miss = v.(ClaimUpdateResult) },
		}, ClaimUpdate{RequestID: "r2"})
	}, 4500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalThreshold, ThresholdSignal{Threshold: 1.5})
	}, 7500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		afterSignals = queryState(t, env)
		env.SignalWorkflow(SignalThreshold, ThresholdSignal{Threshold: 0.8})
	}, 8500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		st := queryState(t, env)
		require.Equal(t, 0.8, st.Policy.Threshold)
		env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"})
	}, 9500*time.Millisecond)

	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-a", Bin: time.Second, Policy: Policy{Threshold: 0.5, HorizonBins: 3, TopN: 1, MaxShadowMS: 500}})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res LoopResult
	require.NoError(t, env.GetWorkflowResult(&res))

	// Seeded once, then the observation made the loop predict high and prepare h1.
	require.Equal(t, []float64{0, 1, 0, 0, 0, 2, 0}, mid.Recent)
	require.Len(t, mid.Leases, 1, "state at 4.5 s: %+v", mid)
	require.Equal(t, "h1", mid.Leases[0].Host)
	require.Equal(t, "app-a."+itoa(t0.Add(3*time.Second).Unix())+".h1", mid.Leases[0].LeaseID)
	require.Equal(t, "demand-1", mid.ModelVersion)
	require.Equal(t, 256.0, mid.Profile.MemoryMB)
	require.Equal(t, 0.05, mid.Adjustments["h2"])

	require.True(t, claimed.Found)
	require.Equal(t, mid.Leases[0].LeaseID, claimed.Lease.LeaseID)
	require.False(t, miss.Found, "a lease is claimed once")

	require.Equal(t, 0.5, afterSignals.Policy.Threshold, "an invalid threshold leaves the state unchanged")
	require.Contains(t, afterSignals.LastError, "outside [0, 1]")

	require.Equal(t, 1, res.Stats.Claims)
	require.Equal(t, 1, res.Stats.Misses)
	require.GreaterOrEqual(t, res.Stats.Preparations, 1)
	require.Equal(t, 2.0, res.Stats.Requests)
	require.Contains(t, res.Reason, "test over")
	// The claimed lease now belongs to its request; nothing else is held.
	require.Equal(t, []string{claimed.Lease.LeaseID}, fh.held(), "no unclaimed lease may be left on a host after stop")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestLegacyLoopExpiresUnclaimedLeases(t *testing.T) {
	env := newLegacyLoopEnv(t)
	fh := newFakeHosts("h1")
	fh.mock(env)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PredictInput) (activities.PredictResult, error) {
			p := 0.1
			if in.Next.Equal(t0.Add(2 * time.Second)) {
				p = 0.95
			}
			return activities.PredictResult{Probability: p, ModelVersion: "demand-1", Decision: activities.Decide(p, in.Threshold, in.Covered, in.DryRun)}, nil
		})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "done"}) }, 12*time.Second)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-b", Bin: time.Second, Policy: Policy{Threshold: 0.5, HorizonBins: 2, TopN: 1}})
	require.NoError(t, env.GetWorkflowError())
	var res LoopResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 1, res.Stats.LeasesPrepared)
	require.Equal(t, 1, res.Stats.Expired)
	require.Greater(t, res.Stats.WastedMBSeconds, 0.0)
	rel := fh.releases()
	require.Len(t, rel, 1)
	require.Equal(t, records.EventExpired, rel[0].Event)
	require.InDelta(t, 2.0, rel[0].HeldSeconds, 1e-9)
	require.Empty(t, fh.held())
}

func TestLegacyLoopContinuesAsNewCarryingState(t *testing.T) {
	env := newLegacyLoopEnv(t)
	newFakeHosts("h1").mock(env)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(predictHigh)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPolicy, PolicySignal{Change: PolicyChange{DryRun: ptr(true)}})
	}, 1500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "r", Count: 3})
	}, 3500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-c", Bin: time.Second, MaxTicksPerRun: 4, Window: 4})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	require.Equal(t, LoopWorkflowName, can.WorkflowType.Name)
	var next LoopInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 1, next.Runs)
	require.Equal(t, 4, next.Stats.Ticks)
	require.True(t, next.Seeded)
	require.True(t, next.Policy.DryRun, "policy carried")
	require.Equal(t, activities.Counts{0, 0, 0, 3}, next.Recent, "window of 4 bins carried, oldest dropped")
	require.Equal(t, records.DecisionDryRun, next.LastDecision, "dry run predicts high and prepares nothing")
	require.Equal(t, 0, next.Stats.Preparations)
	require.Equal(t, t0.Add(5*time.Second), next.NextTick)
}

func TestLegacyLoopKeepsRunningWithoutModel(t *testing.T) {
	env := newLegacyLoopEnv(t)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(activities.PredictResult{},
		temporal.NewNonRetryableApplicationError("no demand model published yet", activities.ErrNoModel, nil))
	var st LoopStatus
	env.RegisterDelayedCallback(func() {
		st = queryState(t, env)
		env.SignalWorkflow(SignalStop, StopSignal{})
	}, 3500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-d", Bin: time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 3, st.Stats.PredictErrors)
	require.Contains(t, st.LastError, "no demand model")
	require.Equal(t, LoopStateRunning, st.State)
}

func TestLegacyLoopPolicyUpdateValidates(t *testing.T) {
	env := newLegacyLoopEnv(t)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(predictHigh)
	var rejected error
	var accepted PolicyUpdateResult
	var st LoopStatus
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdatePolicy, "bad", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { rejected = err },
			OnComplete: func(any, error) {},
		}, PolicyUpdate{Change: PolicyChange{Threshold: ptr(2.0), TopN: ptr(0)}})
		env.UpdateWorkflow(UpdatePolicy, "good", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) { require.NoError(t, err); accepted = v.(PolicyUpdateResult) },
		}, PolicyUpdate{Change: PolicyChange{Threshold: ptr(0.3), Paused: ptr(true)}})
	}, 1500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		st = queryState(t, env)
		env.SignalWorkflow(SignalStop, StopSignal{})
	}, 3500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-e", Bin: time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.Error(t, rejected)
	require.Contains(t, rejected.Error(), "threshold 2 is outside [0, 1]")
	require.Contains(t, rejected.Error(), "top-N 0")
	require.Equal(t, 0.5, accepted.Previous.Threshold)
	require.Equal(t, 0.3, accepted.Current.Threshold)
	require.Equal(t, LoopStatePaused, st.State)
	require.Equal(t, "paused", st.LastDecision)
}

func ptr[T any](v T) *T { return &v }

func TestLegacyLoopStopDuringPreparationLeaksNothing(t *testing.T) {
	env := newLegacyLoopEnv(t)
	fh := newFakeHosts("h1")
	// The shadow request takes 3 s; the stop arrives in the middle of it.
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(activities.ShadowResult{OK: true, ShadowMS: 5}, nil).After(3 * time.Second)
	fh.mock(env)
	env.OnActivity(predictor.Predict, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PredictInput) (activities.PredictResult, error) {
			return activities.PredictResult{Probability: 0.9, ModelVersion: "d", Decision: activities.Decide(0.9, in.Threshold, in.Covered, in.DryRun)}, nil
		})
	var st LoopStatus
	env.RegisterDelayedCallback(func() {
		st = queryState(t, env)
		env.SignalWorkflow(SignalStop, StopSignal{Reason: "mid-preparation"})
	}, 2500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-s", Bin: time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.NotEmpty(t, st.Preparing, "the stop arrived while preparing")
	require.Empty(t, fh.held(), "the cancelled preparation released its reservation")
}
