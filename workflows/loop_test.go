package workflows

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
)

var t0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// fakeHosts is a scripted set of host agents behind the mocked activities.
type fakeHosts struct {
	mu         sync.Mutex
	candidates []wire.HostCandidate
	badShadow  map[string]bool // host -> shadow fails
	reserved   map[string]bool // lease ID -> held
	released   []wire.ReleaseInput
}

func newFakeHosts(names ...string) *fakeHosts {
	f := &fakeHosts{badShadow: map[string]bool{}, reserved: map[string]bool{}}
	for i, n := range names {
		f.candidates = append(f.candidates, wire.HostCandidate{Host: n, URL: "http://" + n, ModelScore: 0.9 - 0.1*float64(i), Score: 0.9 - 0.1*float64(i)})
	}
	return f
}

func (f *fakeHosts) mock(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(hosts.RankHosts, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.RankInput) (wire.RankResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			out := make([]wire.HostCandidate, len(f.candidates))
			copy(out, f.candidates)
			for i := range out {
				out[i].Adjustment = in.Adjustments[out[i].Host]
				out[i].Score += out[i].Adjustment
			}
			return wire.RankResult{Candidates: out, ModelVersion: "aff-1"}, nil
		})
	env.OnActivity(hosts.Reserve, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.ReserveInput) (wire.ReserveResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reserved[in.LeaseID] = true
			// Activities run on the wall clock, not the test's: leave the
			// expiry to the workflow's clock.
			return wire.ReserveResult{}, nil
		})
	env.OnActivity(hosts.Shadow, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.ShadowInput) (wire.ShadowResult, error) {
			if f.badShadow[in.Host] {
				return wire.ShadowResult{OK: false, ShadowMS: 900, Reason: "too slow"}, nil
			}
			return wire.ShadowResult{OK: true, ShadowMS: 12}, nil
		})
	env.OnActivity(hosts.Release, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in wire.ReleaseInput) (wire.ReleaseResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			held := f.reserved[in.LeaseID]
			delete(f.reserved, in.LeaseID)
			f.released = append(f.released, in)
			return wire.ReleaseResult{WasHeld: held}, nil
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

func (f *fakeHosts) releases() []wire.ReleaseInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.ReleaseInput(nil), f.released...)
}

func newLoopEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	env.SetStartTime(t0)
	RegisterPrediction(env)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	env.OnActivity(predictor.Seed, mock.Anything, mock.Anything).Return(wire.SeedResult{
		Counts: []float64{0, 1, 0}, Profile: wire.AppProfile{MemoryMB: 256, ReadRatio: 0.7}, ProfileKnown: true,
		Adjustments: map[string]float64{"h2": 0.05}}, nil).Maybe()
	return env
}

func queryState(t *testing.T, env *testsuite.TestWorkflowEnvironment) LoopStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryState, StateQuery{})
	require.NoError(t, err)
	var st LoopStatus
	require.NoError(t, v.Get(&st))
	return st
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ptr[T any](v T) *T { return &v }
