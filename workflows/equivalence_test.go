package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/sim"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

// hazardModel is a deterministic demand model, a function of the counts
// only: the application's idle-time hazard (the demand model's main input
// feature). It serves both the simulator and the loop's Predictor, so any
// difference in their decisions comes from how they feed the policy.
type hazardModel struct{ spec demand.Spec }

func newHazardModel() hazardModel { return hazardModel{spec: demand.DefaultSpec(time.Minute)} }

func (m hazardModel) p(counts []float64) float64 {
	counts = counts[max(0, len(counts)-m.spec.GapCap):]
	gap := len(counts)
	for i := len(counts) - 1; i >= 0; i-- {
		if counts[i] > 0 {
			gap = len(counts) - 1 - i
			break
		}
	}
	return demand.NewIdleTimes(counts, m.spec.GapCap, m.spec.Hazard).Hazard(gap)
}

// As a demand.Model, for the simulator.
func (m hazardModel) Version() string   { return "hazard-test" }
func (m hazardModel) Spec() demand.Spec { return m.spec }
func (m hazardModel) Predict(in []demand.Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		out[i] = m.p(x.Counts)
	}
	return out, nil
}

// loopModel is the same model as an activities.DemandModel, for the loop.
type loopModel struct{ hazardModel }

func (m loopModel) HistoryBins() int { return m.spec.HistoryBins() }
func (m loopModel) HorizonBins() int { return 1 }
func (m loopModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = m.p(q.Counts)
	}
	return out, nil
}

type oneModel struct{ m activities.DemandModel }

func (r oneModel) ChampionVersion(context.Context) (string, error) { return r.m.Version(), nil }
func (r oneModel) LoadDemand(context.Context, string) (activities.DemandModel, error) {
	return r.m, nil
}

// loopDecisions runs the prediction loop of one application over bins
// [from, to) of tr, delivering its requests as observations inside their
// bins, and returns the decision the loop made (or planned while asleep)
// for every bin.
func loopDecisions(t *testing.T, tr *trace.Trace, app, from, to int, pol Policy) []policy.Action {
	t.Helper()
	a := tr.Apps[app]
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := tr.BinStart(from - 1).Add(5 * time.Second)
	env.SetStartTime(start)
	RegisterPrediction(env)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	seed := make([]float64, from-1)
	for i := range seed {
		seed[i] = float64(a.Counts[i])
	}
	env.OnActivity(predictor.Seed, mock.Anything, mock.Anything).Return(activities.SeedResult{
		Counts: seed, Profile: activities.AppProfile{MemoryMB: a.MemoryOrDefault()}, ProfileKnown: true}, nil)
	fh := newFakeHosts("h1", "h2")
	fh.mock(env)
	env.OnActivity(hosts.Extend, mock.Anything, mock.Anything).Return(activities.ExtendResult{Extended: true}, nil).Maybe()

	var mu sync.Mutex
	var recs []records.Prediction
	batch := activities.NewBatcher(func(_ context.Context, rows []records.Prediction) error {
		mu.Lock()
		defer mu.Unlock()
		recs = append(recs, rows...)
		return nil
	}, time.Hour, 1<<20, slog.Default())
	env.RegisterActivity(&activities.Predictor{Models: oneModel{loopModel{newHazardModel()}}, Predictions: batch})

	for b := from - 1; b < to; b++ {
		if c := a.Counts[b]; c > 0 {
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: fmt.Sprint("r", b), Count: float64(c)})
			}, tr.BinStart(b).Add(10*time.Second).Sub(start))
		}
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "end of range"}) }, tr.BinStart(to).Add(30*time.Second).Sub(start))
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: a.ID, Bin: tr.Bin, Window: 1440, Policy: pol, MaxTicksPerRun: 100000})
	require.NoError(t, env.GetWorkflowError())
	batch.Close()

	// Each wake decided its bin; the bins slept through kept what the last
	// decision held, or held nothing.
	actions := make([]policy.Action, to-from)
	slices.SortFunc(recs, func(x, y records.Prediction) int { return x.Bin.Compare(y.Bin) })
	for k, r := range recs {
		c := int(r.Bin.Sub(tr.Start) / tr.Bin)
		next := to
		if k+1 < len(recs) {
			next = int(recs[k+1].Bin.Sub(tr.Start) / tr.Bin)
		}
		a := parseAction(t, r.Decision)
		for b := c; b < min(next, to); b++ {
			if b < from {
				continue
			}
			switch {
			case b == c:
				actions[b-from] = a
			case a.Holds():
				actions[b-from] = policy.Keep
			default:
				actions[b-from] = policy.Idle
			}
		}
	}
	require.Empty(t, fh.held(), "the stopped loop left leases on its hosts")
	return actions
}

func parseAction(t *testing.T, s string) policy.Action {
	for a := policy.Idle; a <= policy.Release; a++ {
		if a.String() == s {
			return a
		}
	}
	t.Fatalf("decision %q is no policy action", s)
	return 0
}

// TestLoopDecidesAsTheSimulator feeds the same trace through the simulator
// and through the prediction loop (on the SDK's test server, with the real
// Predictor activity and package policy behind it) and requires the same
// decision in every bin, both when the loop ticks every bin and when it
// sleeps until the policy could act.
func TestLoopDecidesAsTheSimulator(t *testing.T) {
	tr := trace.Synth(trace.SynthOptions{Apps: 12, Days: 1, Seed: 5, TimerJitter: 0.2})
	from, to := 600, 780
	cfg := policy.Default()
	cfg.Threshold, cfg.LookaheadBins = 0.05, 15

	want := make([][]policy.Action, len(tr.Apps))
	for i := range want {
		want[i] = make([]policy.Action, to-from)
	}
	ours := sim.NewOurs(sim.NewForecastCache(&sim.DemandForecaster{Model: newHazardModel()}), cfg)
	ours.Record = func(b, app int, _ float64, a policy.Action) { want[app][b-from] = a }
	if _, err := sim.Run(tr, ours, sim.Options{Range: sim.Range{From: from, To: to}}); err != nil {
		t.Fatal(err)
	}

	pol := DefaultPolicy()
	pol.Threshold, pol.ReferenceMB, pol.PrepareSeconds, pol.LookaheadBins, pol.SizePercentile =
		cfg.Threshold, cfg.ReferenceMB, cfg.PrepareSeconds, cfg.LookaheadBins, cfg.SizePercentile
	held := 0
	for i, a := range tr.Apps {
		for _, ticking := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/ticking=%v", a.ID, ticking), func(t *testing.T) {
				p := pol
				p.Ticking = ticking
				got := loopDecisions(t, tr, i, from, to, p)
				if !slices.Equal(got, want[i]) {
					t.Errorf("decisions differ from the simulator's\n loop %s\n  sim %s", actionString(got), actionString(want[i]))
				}
			})
		}
		for _, a := range want[i] {
			if a.Holds() {
				held++
			}
		}
	}
	// The range must exercise the policy: holds, and every kind of decision.
	require.Greater(t, held, 50, "too few held bins for the comparison to mean much")
}

func actionString(as []policy.Action) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteByte("iPKR"[a])
	}
	return b.String()
}
