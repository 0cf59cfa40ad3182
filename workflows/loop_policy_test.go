package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/policy"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
)

// recentModel answers 0.9 when the history's last two bins saw a request,
// 0.01 otherwise.
type recentModel struct{}

func (recentModel) Version() string  { return "recent-1" }
func (recentModel) HistoryBins() int { return 64 }
func (recentModel) HorizonBins() int { return 1 }
func (recentModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = 0.01
		for _, c := range q.Counts[max(0, len(q.Counts)-2):] {
			if c > 0 {
				out[i] = 0.9
			}
		}
	}
	return out, nil
}

// newPolicyLoopEnv runs the current loop with the real Predictor over model
// and scripted hosts that also extend.
func newPolicyLoopEnv(t *testing.T, model activities.DemandModel) (*testsuite.TestWorkflowEnvironment, *fakeHosts, *extends) {
	env := newLoopEnv(t)
	env.RegisterActivity(&activities.Predictor{Models: oneModel{model}})
	fh := newFakeHosts("h1", "h2")
	ex := &extends{}
	env.OnActivity(hosts.Extend, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.ExtendInput) (wire.ExtendResult, error) {
			ex.mu.Lock()
			defer ex.mu.Unlock()
			ex.calls = append(ex.calls, in)
			return wire.ExtendResult{Extended: true}, nil
		}).Maybe()
	return env, fh, ex
}

type extends struct {
	mu    sync.Mutex
	calls []wire.ExtendInput
}

func (e *extends) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.calls)
}

func claimNow(t *testing.T, env *testsuite.TestWorkflowEnvironment, id string, size float64, out *ClaimUpdateResult) {
	env.UpdateWorkflow(UpdateClaim, "claim-"+id, &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { t.Errorf("claim %s rejected: %v", id, err) },
		OnComplete: func(v any, err error) { require.NoError(t, err); *out = v.(ClaimUpdateResult) },
	}, ClaimUpdate{RequestID: id, CountArrival: true, SizeMB: size})
}

// A prepared lease is a warm instance: it serves every request of the
// application, is extended in place while the policy keeps it, and is
// released when the policy lets it go. A cold request's instance is kept
// as a lease until the next decision.
func TestLoopKeepsAWarmInstanceAndReleasesIt(t *testing.T) {
	env, fh, ex := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var r0, first, second, third, cold ClaimUpdateResult
	var mid, late, withKept LoopStatus
	// A cold request in bin 0; the wake at 1 s keeps the application held
	// (P 0.9) and, holding no lease, prepares one. Requests in bins 1 and 2
	// are served warm by that one lease, which is extended in place; after
	// two idle bins (P 0.01) the wake at 5 s releases it.
	env.RegisterDelayedCallback(func() { claimNow(t, env, "r0", 100, &r0) }, 500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		claimNow(t, env, "r1", 100, &first)
		claimNow(t, env, "r2", 100, &second)
	}, 1500*time.Millisecond)
	env.RegisterDelayedCallback(func() { claimNow(t, env, "r3", 100, &third) }, 2500*time.Millisecond)
	env.RegisterDelayedCallback(func() { mid = queryState(t, env) }, 2600*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		late = queryState(t, env)
		claimNow(t, env, "r4", 300, &cold)
	}, 6500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		kept := wire.Lease{LeaseID: cold.Keep.LeaseID, App: "app-w", Host: "h2", HostURL: "http://h2", MemoryMB: cold.Keep.MemoryMB,
			Reserved: t0.Add(6600 * time.Millisecond), Expires: t0.Add(6600 * time.Millisecond).Add(cold.Keep.TTL)}
		env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "r4", Claimed: true, Kept: &kept})
	}, 6700*time.Millisecond)
	env.RegisterDelayedCallback(func() { withKept = queryState(t, env) }, 6800*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 6900*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-w", Bin: time.Second, Policy: rulePolicy()})
	require.NoError(t, env.GetWorkflowError())
	var res LoopResult
	require.NoError(t, env.GetWorkflowResult(&res))

	require.False(t, r0.Found)
	require.True(t, first.Found && first.Stays, "first claim: %+v", first)
	require.True(t, second.Found && third.Found, "a warm instance serves every request, not one")
	require.Equal(t, first.Lease.LeaseID, second.Lease.LeaseID)
	require.Equal(t, first.Lease.LeaseID, third.Lease.LeaseID)
	require.Equal(t, "app-w."+itoa(t0.Add(time.Second).Unix())+".h1", first.Lease.LeaseID)
	require.Len(t, mid.Leases, 1, "still one lease after three requests")
	require.Equal(t, 256.0, mid.LeaseSizeMB, "fewer sizes than the percentile needs: the profile's")
	require.True(t, mid.Holding)
	require.GreaterOrEqual(t, ex.count(), 2, "kept by extending in place")
	require.Equal(t, 1, res.Stats.Preparations, "one preparation for the whole hold: no new shadow request")

	require.Empty(t, late.Leases, "released after two idle bins")
	require.False(t, late.Holding)
	rel := fh.releases()
	require.NotEmpty(t, rel)
	require.Equal(t, first.Lease.LeaseID, rel[0].LeaseID)
	require.Equal(t, "released", rel[0].Event)
	require.Contains(t, rel[0].Reason, "below the keep threshold")

	require.False(t, cold.Found)
	require.NotNil(t, cold.Keep, "a cold request's instance is kept")
	require.Equal(t, "app-w.kept.r4", cold.Keep.LeaseID)
	require.Equal(t, 300.0, cold.Keep.MemoryMB, "sized for the request when it is larger")
	require.Equal(t, 5500*time.Millisecond, cold.Keep.TTL, "until the end of this bin, and the lease grace (5 s for 1 s bins) after")
	require.Len(t, withKept.Leases, 1)
	require.Equal(t, "app-w.kept.r4", withKept.Leases[0].LeaseID)
	require.Equal(t, 1, res.Stats.Kept)
	require.Equal(t, 5.0, res.Stats.Requests)
	require.Equal(t, 3, res.Stats.WarmRequests)
	require.Equal(t, 2, res.Stats.Misses)
	// Stop released the kept instance too.
	require.Equal(t, "app-w.kept.r4", fh.releases()[len(fh.releases())-1].LeaseID)
}

// Payloads that cannot be decoded, miss a field or are out of range are
// refused and recorded; the loop keeps deciding, and a stop still stops it.
func TestLoopRefusesMalformedSignals(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	payloads := []struct{ name, payload, want string }{
		{SignalThreshold, `{"Threshold":"0.7"}`, "threshold signal refused: field Threshold: string is not a float64"},
		{SignalThreshold, `{}`, "threshold signal refused: field Threshold is missing"},
		{SignalThreshold, `{"Treshold":0.3}`, "threshold signal refused: field Threshold is missing"},
		{SignalThreshold, `{"Threshold":1.5}`, "threshold signal refused: threshold 1.5 is outside [0, 1]"},
		{SignalThreshold, `[1,2]`, "threshold signal refused: payload [1,2] is not a JSON object"},
		{SignalPolicy, `{"Change":{}}`, "policy signal refused: the change names no field"},
		{SignalPolicy, `{"Change":{"TopN":"two"}}`, "policy signal refused: field Change.TopN: string is not a int"},
		{SignalPolicy, `{"Change":{"LookaheadBins":0}}`, "policy signal refused: lookahead_bins 0 is outside [1, 1440]"},
		{SignalObservation, `{"RequestID":"r1","Count":-3}`, "observation signal refused: field Count: -3 is outside [0, 1e9]"},
		{SignalObservation, `{"RequestID":"r1","SizeMB":"big"}`, "observation signal refused: field SizeMB: string is not a float64"},
		{SignalObservation, `{"Count":1}`, "observation signal refused: field RequestID is missing"},
		{SignalStop, `{"Reason":5}`, "stop signal refused: field Reason: number is not a string"},
		{SignalStop, `{}`, "stop signal refused: field Reason is missing"},
	}
	errs := make([]string, len(payloads))
	var before LoopStatus
	env.RegisterDelayedCallback(func() { before = queryState(t, env) }, 1400*time.Millisecond)
	for i, p := range payloads {
		at := 1500*time.Millisecond + time.Duration(i)*200*time.Millisecond
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(p.name, json.RawMessage(p.payload)) }, at)
		env.RegisterDelayedCallback(func() { errs[i] = queryState(t, env).LastError }, at+100*time.Millisecond)
	}
	var after LoopStatus
	env.RegisterDelayedCallback(func() {
		after = queryState(t, env)
		env.SignalWorkflow(SignalStop, StopSignal{Reason: "done"})
	}, 4500*time.Millisecond)
	ticking := DefaultPolicy()
	ticking.Ticking = true
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-m", Bin: time.Second, Policy: ticking})
	require.NoError(t, env.GetWorkflowError())
	for i, p := range payloads {
		require.Contains(t, errs[i], p.want, "refusal %d (%s %s)", i, p.name, p.payload)
	}
	require.Equal(t, len(payloads), after.Stats.Refusals)
	require.Equal(t, before.Policy, after.Policy, "no refused payload changed the policy")
	require.Equal(t, 0.0, after.Stats.Requests, "no refused observation was counted")
	require.Greater(t, after.Stats.Wakes, before.Stats.Wakes, "the loop kept deciding")
	require.Equal(t, LoopStateRunning, after.State, "a refused stop does not stop")
}

// slowModel keeps the application held: P 0.9 always.
type slowModel struct{ recentModel }

func (slowModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i := range out {
		out[i] = 0.9
	}
	return out, nil
}

// A loop whose application is busy — a request every bin and a
// preparation always in flight — still continues as new when due: it stops
// starting work, waits a bounded time, cancels what is still running (which
// releases its reservations) and continues.
func TestLoopContinuesAsNewWhenBusy(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, slowModel{})
	// Shadow requests take 40 s: a preparation is always in flight.
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(wire.ShadowResult{OK: true, ShadowMS: 5}, nil).After(40 * time.Second)
	fh.mock(env)
	for i := range 30 {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "r" + itoa(int64(i)), Count: 1})
		}, time.Duration(i)*time.Second+500*time.Millisecond)
	}
	const limit = 5
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-busy", Bin: time.Second, MaxWakesPerRun: limit,
		Policy: func() Policy { p := DefaultPolicy(); p.Ticking = true; return p }()})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	var next LoopInput
	require.NoError(t, payload.Converter().FromPayloads(can.Input, &next))
	require.Equal(t, limit, next.Stats.Wakes, "continued at the limit")
	require.LessOrEqual(t, len(next.Recent), 3+2*limit, "continued within twice the limit (3 bins were seeded)")
	require.Equal(t, 1, next.Runs)
	require.Empty(t, fh.held(), "the preparation cancelled for continue-as-new released its reservation")
	require.True(t, next.Holding, "the decision state is carried")
}

func TestKeptLeaseIDIsHostSafe(t *testing.T) {
	id := keptLeaseID("my app/1", "req:7")
	require.Equal(t, "my-app-1.kept.req-7", id)
	require.False(t, strings.ContainsAny(id, " /:"))
}

// timerModel expects a request 4 bins after the last one: P 0.9 then, 0.001
// otherwise.
type timerModel struct{ recentModel }

func (timerModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		gap := len(q.Counts)
		for j := len(q.Counts) - 1; j >= 0; j-- {
			if q.Counts[j] > 0 {
				gap = len(q.Counts) - 1 - j
				break
			}
		}
		out[i] = 0.001
		if gap == 3 {
			out[i] = 0.9
		}
	}
	return out, nil
}

// The plan knows a timer's next request: the loop prepares ahead of that
// bin, so the instance is ready when it begins, and lets it go after.
func TestLoopPreparesAheadOfThePlannedBin(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, timerModel{})
	fh.mock(env)
	// Seeded [0, 1, 0]: the last request two bins before the open bin; the
	// open bin (0-1 s) closes idle, so the request is due in the bin at 2 s.
	var st LoopStatus
	env.RegisterDelayedCallback(func() { st = queryState(t, env) }, 2300*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "done"}) }, 2500*time.Millisecond)
	bin := time.Minute
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-t", Bin: time.Second, Policy: rulePolicy(), Clock: &TraceClock{RealStart: t0, TraceStart: t0, TraceBin: bin}})
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, st.Leases, 1, "%+v", st)
	ls := st.Leases[0]
	require.Equal(t, "app-t."+itoa(t0.Add(2*time.Second).Unix())+".h1", ls.LeaseID, "prepared for the bin at 2 s")
	require.True(t, ls.Reserved.Before(t0.Add(2*time.Second)), "reserved at %v, before the bin begins", ls.Reserved)
	require.False(t, ls.Reserved.Before(t0.Add(1500*time.Millisecond)), "reserved at %v, half a bin ahead at most", ls.Reserved)
	require.Equal(t, "prepare", st.LastDecision)
}

// A request reported after its bin closed is counted in the bin it arrived
// in, not the one open when the report came.
func TestLoopCountsLateReportsInTheirBin(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var st LoopStatus
	// Arrived at 1.9 s (bin 1-2 s), reported at 2.1 s (bin 2-3 s open).
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "late", Count: 2, At: t0.Add(1900 * time.Millisecond)})
	}, 2100*time.Millisecond)
	env.RegisterDelayedCallback(func() { st = queryState(t, env) }, 2150*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{}) }, 2500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-l", Bin: time.Second, Policy: rulePolicy()})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2.0, st.Recent[len(st.Recent)-1], "counted in the closed bin it arrived in: %v", st.Recent[len(st.Recent)-4:])
	require.Equal(t, 0.0, st.Pending)
}

// A request that arrives while its instance is being prepared joins that
// preparation instead of starting a cold instance of its own, waiting at
// most a typical preparation's time; past that bound it is served cold.
func TestClaimWaitsForThePreparationInFlight(t *testing.T) {
	for _, c := range []struct {
		name     string
		shadow   time.Duration
		found    bool
		waitedMS float64
	}{
		{"ready in time", 350 * time.Millisecond, true, 50},
		{"too slow", 2 * time.Second, false, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, fh, _ := newPolicyLoopEnv(t, timerModel{})
			env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).After(c.shadow).Return(wire.ShadowResult{OK: true, ShadowMS: 12}, nil)
			fh.mock(env)
			// The timer's request is due in the bin at 2 s; the preparation
			// starts 300 ms ahead of it and the request arrives at 2 s.
			var got ClaimUpdateResult
			var st LoopStatus
			env.RegisterDelayedCallback(func() { claimNow(t, env, "r1", 100, &got) }, 2*time.Second)
			env.RegisterDelayedCallback(func() { st = queryState(t, env) }, 2900*time.Millisecond)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "done"}) }, 2950*time.Millisecond)
			env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-t", Bin: time.Second, Policy: rulePolicy(), Clock: &TraceClock{RealStart: t0, TraceStart: t0, TraceBin: time.Minute}})
			require.NoError(t, env.GetWorkflowError())
			require.Equal(t, c.found, got.Found, "%+v", got)
			require.InDelta(t, c.waitedMS, got.WaitedMS, 1)
			require.Equal(t, 1, st.Stats.ClaimsWaited)
			if c.found {
				require.Equal(t, 1, st.Stats.ClaimsWaitedWarm)
				require.Equal(t, "app-t."+itoa(t0.Add(2*time.Second).Unix())+".h1", got.Lease.LeaseID)
				require.InDelta(t, 350, st.Stats.PreparationMS, 1, "the preparation's time is measured")
			} else {
				require.Zero(t, st.Stats.ClaimsWaitedWarm)
				require.Nil(t, got.Keep, "its instance is still coming: none kept")
			}
		})
	}
}

// A request that arrives while its loop is still reading its stored
// history (no bin open yet) is answered and counted; the loop goes on. (A
// loop once spun from year 1 to now, bin by bin, and the worker's deadlock
// detector failed its every task.)
func TestClaimWhileTheLoopIsStillSeeding(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	env.SetStartTime(t0)
	RegisterPrediction(env)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	env.OnActivity(predictor.Seed, mock.Anything, mock.Anything).After(3*time.Second).Return(wire.SeedResult{
		Counts: []float64{0, 1, 0}, Profile: wire.AppProfile{MemoryMB: 256, ReadRatio: 0.7}, ProfileKnown: true}, nil)
	env.RegisterActivity(&activities.Predictor{Models: oneModel{recentModel{}}})
	fh := newFakeHosts("h1", "h2")
	fh.mock(env)
	env.OnActivity(hosts.Extend, mock.Anything, mock.Anything).Return(wire.ExtendResult{Extended: true}, nil).Maybe()
	var res ClaimUpdateResult
	env.RegisterDelayedCallback(func() { claimNow(t, env, "early", 16, &res) }, 500*time.Millisecond)
	var after LoopStatus
	env.RegisterDelayedCallback(func() { after = queryState(t, env) }, 6*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "done"}) }, 6500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-seeding", Bin: time.Second, Policy: DefaultPolicy()})
	require.NoError(t, env.GetWorkflowError())
	require.False(t, res.Found, "nothing prepared yet: cold")
	require.Equal(t, 1.0, after.Stats.Requests, "counted once")
	require.Positive(t, after.Stats.Wakes, "the loop decides once seeded")
	require.Equal(t, []float64{0, 1, 0, 1}, after.Recent[:4], "the early request closed into the bin it arrived in, after the seeded three")
}

// rulePolicy decides by the expected-value rule alone (policy.RuleOnly):
// the loop's mechanics are tested on the decisions that rule makes.
func rulePolicy() Policy {
	p := DefaultPolicy()
	c := policy.Default().RuleOnly()
	p.Objective, p.ReferenceRequestsPerDay, p.KeepAliveBins, p.FallbackBins, p.TrustGaps =
		c.Objective, c.ReferenceRequestsPerDay, c.KeepAliveBins, c.FallbackBins, c.TrustGaps
	return p
}

// A stop that arrives while a preparation runs cancels it; the cancelled
// preparation releases its reservation, so nothing is left on a host.
func TestLoopStopDuringPreparationLeaksNothing(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	// The shadow request takes 3 s; the stop arrives in the middle of it.
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(wire.ShadowResult{OK: true, ShadowMS: 5}, nil).After(3 * time.Second)
	fh.mock(env)
	// A request in the first bin: the wake after it prepares.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: "r1", Count: 1})
	}, 500*time.Millisecond)
	var st LoopStatus
	env.RegisterDelayedCallback(func() {
		st = queryState(t, env)
		env.SignalWorkflow(SignalStop, StopSignal{Reason: "mid-preparation"})
	}, 2500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-s", Bin: time.Second, Policy: rulePolicy()})
	require.NoError(t, env.GetWorkflowError())
	var res LoopResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.NotEmpty(t, st.Preparing, "the stop arrived while preparing: %+v", st)
	require.Equal(t, "stopped: mid-preparation", res.Reason)
	require.Equal(t, 1, res.Stats.PreparationsCancelled)
	require.Empty(t, fh.held(), "the cancelled preparation released its reservation")
}
