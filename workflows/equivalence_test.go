package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/sim"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/worker/resident"
)

// hazardModel is a deterministic demand model, a function of the counts
// only: the application's idle-time hazard (the demand model's main input
// feature). It serves both the simulator and the loop's Predictor, so any
// difference in their decisions comes from how they feed the policy. Bins
// missing before a short history count as idle (a production loop always
// gives the model its whole window, zero-filled, from the store or the
// arrival mirror; the simulator gives what the trace has).
type hazardModel struct{ spec demand.Spec }

func newHazardModel() hazardModel { return hazardModel{spec: demand.DefaultSpec(time.Minute)} }

func (m hazardModel) p(counts []float64) float64 {
	if pad := m.spec.GapCap - len(counts); pad > 0 {
		counts = append(make([]float64, pad), counts...)
	}
	counts = counts[len(counts)-m.spec.GapCap:]
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

// mode is how a loop hears of requests and when it decides.
type mode struct {
	name    string
	ticking bool // decides every bin
	router  bool // reads recorded arrivals; woken by the arrival watch
	// clock: a router-mode loop seeded from a trace at its start (as
	// `starter loop start --seed-end --clock-start` does): the history
	// before its first bin is its seed, not the router's records.
	clock bool
}

var modes = []mode{
	{"ticking", true, false, false},
	{"event", false, false, false},
	{"router-ticking", true, true, false},
	{"router", false, true, false},
	{"router-clock", false, true, true},
}

// memArrivals is the store a router reports to, in memory.
type memArrivals struct {
	mu   sync.Mutex
	bins map[string]map[int64]uint64 // app -> bin start (Unix s) -> requests
}

func (m *memArrivals) add(app string, bin time.Time, n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bins == nil {
		m.bins = map[string]map[int64]uint64{}
	}
	if m.bins[app] == nil {
		m.bins[app] = map[int64]uint64{}
	}
	m.bins[app][bin.Unix()] += n
}

func (m *memArrivals) Arrivals(_ context.Context, from, to time.Time, bin time.Duration) (map[string]resident.BinCounts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]resident.BinCounts{}
	for app, bins := range m.bins {
		var bc resident.BinCounts
		for _, s := range slices.Sorted(maps.Keys(bins)) {
			if s >= from.Unix() && s < to.Unix() {
				bc.Starts, bc.Counts = append(bc.Starts, s), append(bc.Counts, bins[s])
			}
		}
		if len(bc.Starts) > 0 {
			out[app] = bc
		}
	}
	return out, nil
}

// envWaker signals the test environment's one workflow.
type envWaker struct {
	env   *testsuite.TestWorkflowEnvironment
	woken *int
}

func (w envWaker) Wake(_ context.Context, _ string, bin time.Time, reason string) error {
	*w.woken++
	w.env.SignalWorkflow(SignalWake, WakeSignal{Bin: bin, Reason: reason})
	return nil
}

// run is one loop's decisions for every bin and what it cost.
type run struct {
	actions []policy.Action
	wakes   int // the loop's own wakes
	woken   int // wake signals the watch sent
}

// loopDecisions runs the prediction loop of one application over bins
// [from, to) of tr and returns the decision the loop made (or planned
// while asleep) for every bin. Outside router mode each bin's requests
// reach the loop as an observation signal inside the bin; in router mode
// they are recorded in a store once the bin ends (as a platform's router
// reports them), the loop reads them through the arrival mirror at its
// wakes, and the arrival watch checks the loops once per bin, Grace after
// each boundary, as the worker does.
func loopDecisions(t *testing.T, tr *trace.Trace, app, from, to int, pol Policy, m mode) run {
	t.Helper()
	a := tr.Apps[app]
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	start := tr.BinStart(from - 1).Add(5 * time.Second)
	if m.router {
		// A router-mode loop decides the bin open as it starts: start it
		// within the grace of the first bin compared.
		start = tr.BinStart(from).Add(resident.Grace(tr.Bin) / 4)
	}
	env.SetStartTime(start)
	RegisterPrediction(env)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	seed := make([]float64, from-1)
	for i := range seed {
		seed[i] = float64(a.Counts[i])
	}
	env.OnActivity(predictor.Seed, mock.Anything, mock.Anything).Return(wire.SeedResult{
		Counts: seed, Profile: wire.AppProfile{MemoryMB: a.MemoryOrDefault()}, ProfileKnown: true}, nil)
	fh := newFakeHosts("h1", "h2")
	fh.mock(env)
	env.OnActivity(hosts.Extend, mock.Anything, mock.Anything).Return(wire.ExtendResult{Extended: true}, nil).Maybe()

	var mu sync.Mutex
	var recs []records.Prediction
	batch := batch.New(func(_ context.Context, rows []records.Prediction) error {
		mu.Lock()
		defer mu.Unlock()
		recs = append(recs, rows...)
		return nil
	}, time.Hour, 1<<20, slog.Default())
	pred := &activities.Predictor{Models: oneModel{loopModel{newHazardModel()}}, Predictions: batch}
	var out run
	in := LoopInput{App: a.ID, Bin: tr.Bin, Window: 1440, Policy: pol, MaxWakesPerRun: 100000, Router: m.router}
	recorded := 0 // the first bin the router's store holds
	if m.clock {
		// Seeded as wfclient seeds a loop on a trace clock: the last seeded
		// bin stands for the bin open until the clock starts.
		in.Seeded, in.Recent, in.Pending = true, seed[max(0, len(seed)-1439):], float64(a.Counts[from-1])
		in.Profile = wire.AppProfile{App: a.ID, MemoryMB: a.MemoryOrDefault()}.WithDefaults()
		in.BinEnd = tr.BinStart(from)
		in.Clock = &TraceClock{RealStart: tr.BinStart(from), TraceStart: tr.BinStart(from), TraceBin: tr.Bin}
		in.SeedEnd = in.Clock.RealStart
		recorded = from
	}
	if m.router {
		store := &memArrivals{}
		if m.clock {
			// An earlier replay recorded requests at these live times: not
			// this loop's history, which is its seed.
			for b := max(0, from-300); b < from; b += 7 {
				store.add(a.ID, tr.BinStart(b), 3)
			}
		}
		for b := recorded; b < from-1; b++ {
			if c := a.Counts[b]; c > 0 {
				store.add(a.ID, tr.BinStart(b), uint64(c))
			}
		}
		watch := &resident.Watch{Mirror: &resident.Mirror{Reader: store, Bin: tr.Bin, Span: 1440},
			Predictor: pred, Waker: envWaker{env, &out.woken}, Parallel: 1}
		pred.Watch = watch
		grace := resident.Grace(tr.Bin)
		for b := max(from-1, recorded); b < to; b++ {
			if c := a.Counts[b]; c > 0 {
				// The router's batch for the bin lands within the grace.
				env.RegisterDelayedCallback(func() { store.add(a.ID, tr.BinStart(b), uint64(c)) }, tr.BinStart(b+1).Add(grace/2).Sub(start))
			}
			if b >= from {
				env.RegisterDelayedCallback(func() {
					if err := watch.Check(context.Background(), tr.BinStart(b)); err != nil {
						t.Errorf("watch at bin %d: %v", b, err)
					}
				}, tr.BinStart(b).Add(grace).Sub(start))
			}
		}
	} else {
		for b := from - 1; b < to; b++ {
			if c := a.Counts[b]; c > 0 {
				env.RegisterDelayedCallback(func() {
					env.SignalWorkflow(SignalObservation, ObservationSignal{RequestID: fmt.Sprint("r", b), Count: float64(c)})
				}, tr.BinStart(b).Add(10*time.Second).Sub(start))
			}
		}
	}
	env.RegisterActivity(pred)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "end of range"}) }, tr.BinStart(to).Add(30*time.Second).Sub(start))
	pol.Ticking = m.ticking
	in.Policy = pol
	env.ExecuteWorkflow(LoopWorkflowName, in)
	require.NoError(t, env.GetWorkflowError())
	var res LoopResult
	require.NoError(t, env.GetWorkflowResult(&res))
	out.wakes = res.Stats.Wakes
	batch.Close()

	// Each wake decided its bin; the bins slept through kept what the last
	// decision held, or held nothing.
	out.actions = make([]policy.Action, to-from)
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
				out.actions[b-from] = a
			case a.Holds():
				out.actions[b-from] = policy.Keep
			default:
				out.actions[b-from] = policy.Idle
			}
		}
	}
	require.Empty(t, fh.held(), "the stopped loop left leases on its hosts")
	return out
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

// compareWithSimulator runs the simulator over apps of tr for bins
// [from, to) and the prediction loop of each app in every mode, and
// requires the same decision in every bin. It returns the decisions that
// held an instance (the range must exercise the policy) and each mode's
// wakes.
func compareWithSimulator(t *testing.T, tr *trace.Trace, apps []int, from, to int, cfg policy.Config) (held int, wakes map[string]int) {
	t.Helper()
	sub := *tr
	sub.Apps = nil
	for _, i := range apps {
		sub.Apps = append(sub.Apps, tr.Apps[i])
	}
	want := make([][]policy.Action, len(sub.Apps))
	for i := range want {
		want[i] = make([]policy.Action, to-from)
	}
	ours := sim.NewOurs(sim.NewForecastCache(&sim.DemandForecaster{Model: newHazardModel()}), cfg)
	ours.Record = func(b, app int, _ float64, a policy.Action) { want[app][b-from] = a }
	if _, err := sim.Run(&sub, ours, sim.Options{Range: sim.Range{From: from, To: to}}); err != nil {
		t.Fatal(err)
	}

	pol := DefaultPolicy()
	pol.Threshold, pol.ReferenceMB, pol.PrepareSeconds, pol.LookaheadBins, pol.SizePercentile =
		cfg.Threshold, cfg.ReferenceMB, cfg.PrepareSeconds, cfg.LookaheadBins, cfg.SizePercentile
	pol.Objective, pol.ReferenceRequestsPerDay, pol.KeepAliveBins, pol.FallbackBins, pol.TrustGaps =
		cfg.Objective, cfg.ReferenceRequestsPerDay, cfg.KeepAliveBins, cfg.FallbackBins, cfg.TrustGaps
	require.Equal(t, cfg, pol.Config(), "the loop's policy carries every setting of the simulator's")
	wakes = map[string]int{}
	for i, a := range sub.Apps {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", a.ID, m.name), func(t *testing.T) {
				got := loopDecisions(t, &sub, i, from, to, pol, m)
				if !slices.Equal(got.actions, want[i]) {
					t.Errorf("decisions differ from the simulator's\n loop %s\n  sim %s", actionString(got.actions), actionString(want[i]))
				}
				wakes[m.name] += got.wakes
				if m.router {
					wakes[m.name+" (by the watch)"] += got.woken
				}
			})
		}
		for _, a := range want[i] {
			if a.Holds() {
				held++
			}
		}
	}
	return held, wakes
}

// TestLoopDecidesAsTheSimulator feeds the same trace through the simulator
// and through the prediction loop (on the SDK's test server, with the real
// Predictor activity and package policy behind it) and requires the same
// decision in every bin, in every mode: deciding every bin, sleeping until
// the policy could act, and both again with router-style arrivals.
func TestLoopDecidesAsTheSimulator(t *testing.T) {
	tr := trace.Synth(trace.SynthOptions{Apps: 12, Days: 1, Seed: 5, TimerJitter: 0.2})
	cfg := policy.Default()
	cfg.Threshold, cfg.LookaheadBins, cfg.Objective = 0.05, 15, policy.PerRequest
	held, _ := compareWithSimulator(t, tr, seq(len(tr.Apps)), 600, 780, cfg)
	// The range must exercise the policy: holds, and every kind of decision.
	require.Greater(t, held, 50, "too few held bins for the comparison to mean much")
}

// TestLoopDecidesAsTheSimulatorOnSyntheticMixes does the same on fleets
// of other shapes (the mixes of `starter eval --mix`).
func TestLoopDecidesAsTheSimulatorOnSyntheticMixes(t *testing.T) {
	for _, mix := range []string{"timer=0.6,rare=0.4", "heavy=0.2,bursty=0.5,diurnal=0.3", "session=0.7,timer=0.2,heavy=0.1"} {
		t.Run(mix, func(t *testing.T) {
			m, err := trace.ParseMix(mix)
			require.NoError(t, err)
			tr := trace.Synth(trace.SynthOptions{Apps: 10, Days: 1, Seed: 11, Mix: m, TimerJitter: 0.1, Drift: 0.3})
			held, _ := compareWithSimulator(t, tr, seq(len(tr.Apps)), 540, 720, policy.Default())
			require.Greater(t, held, 30, "too few held bins for the comparison to mean much")
		})
	}
	// The other trust setting `starter eval` sweeps: every forecast used
	// from an application's first request.
	t.Run("session=0.7,rare=0.3 trusting at once", func(t *testing.T) {
		m, err := trace.ParseMix("session=0.7,rare=0.3")
		require.NoError(t, err)
		tr := trace.Synth(trace.SynthOptions{Apps: 10, Days: 1, Seed: 12, Mix: m, Drift: 0.3})
		cfg := policy.Default()
		cfg.TrustGaps, cfg.Threshold = 0, 0.01
		held, _ := compareWithSimulator(t, tr, seq(len(tr.Apps)), 540, 720, cfg)
		require.Greater(t, held, 30, "too few held bins for the comparison to mean much")
	})
}

// TestLoopDecidesAsTheSimulatorOnAzure does the same on real applications
// of the Azure Functions 2019 sample, chosen across its range of activity
// (from the busiest to ones idle for hours), over four hours of the
// afternoon. Router-style arrivals wake the loops far less often than
// deciding every bin.
func TestLoopDecidesAsTheSimulatorOnAzure(t *testing.T) {
	dir := filepath.Join("..", "testdata", "azure2019-sample")
	tr, err := trace.ReadAzure2019(filepath.Join(dir, "1350_inv.csv"), trace.AzureOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv")})
	require.NoError(t, err)
	from, to := 900, 1140
	apps := spreadByActivity(tr, from, to, 24)
	held, wakes := compareWithSimulator(t, tr, apps, from, to, policy.Default())
	require.Greater(t, held, 1000, "too few held bins for the comparison to mean much")
	t.Logf("wakes over %d apps × %d bins: %v", len(apps), to-from, wakes)
	// Held loops leave a release a request will likely overtake to the
	// watch: busy applications do not wake every bin (4.0× fewer wakes
	// than ticking before they did, 8.6× since).
	require.Less(t, 8*wakes["router"], wakes["ticking"], "router-style loops should wake far less often than every bin")
}

// spreadByActivity picks n applications busy in [from, to), evenly by
// their number of busy bins there, from the quietest to the busiest.
func spreadByActivity(tr *trace.Trace, from, to, n int) []int {
	type busy struct{ app, bins int }
	var all []busy
	for i, a := range tr.Apps {
		k := 0
		for _, c := range a.Counts[from:to] {
			if c > 0 {
				k++
			}
		}
		if k > 0 {
			all = append(all, busy{i, k})
		}
	}
	slices.SortStableFunc(all, func(x, y busy) int { return x.bins - y.bins })
	var out []int
	for j := range n {
		out = append(out, all[j*(len(all)-1)/max(1, n-1)].app)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func actionString(as []policy.Action) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteByte("iPKR"[a])
	}
	return b.String()
}
