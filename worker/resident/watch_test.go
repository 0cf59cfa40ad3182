package resident

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/policy"
)

var tb = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC) // a bin boundary

// memReports is a store routers report to, in memory.
type memReports struct {
	mu    sync.Mutex
	bins  map[string]map[int64]uint64
	reads int
	fail  error
}

func (m *memReports) add(app string, bin time.Time, n uint64) {
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

func (m *memReports) Arrivals(_ context.Context, from, to time.Time, bin time.Duration) (map[string]BinCounts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return nil, m.fail
	}
	out := map[string]BinCounts{}
	for app, bins := range m.bins {
		var bc BinCounts
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

func bin(k int) time.Time { return tb.Add(time.Duration(k) * time.Minute) }

func TestMirrorFreezesEachBinOnce(t *testing.T) {
	st := &memReports{}
	st.add("a", bin(-3), 2)
	st.add("a", bin(-1), 1)
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 10}
	ctx := context.Background()
	require.NoError(t, m.Freeze(ctx, bin(0)))
	require.Equal(t, bin(0), m.Frozen())
	w, err := m.Window("a", bin(0), 4)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 2, 0, 1}, w)
	require.True(t, m.Active("a", bin(-1), bin(0)))
	require.False(t, m.Active("a", bin(-2), bin(-1)))
	require.False(t, m.Active("b", bin(-5), bin(0)))

	// A report for a frozen bin comes too late for it: no decision about
	// that bin sees it. It is a late arrival, counted in the next bin
	// frozen (TestWatchWakesALoopOnALateArrival).
	st.add("a", bin(-1), 5)
	st.add("a", bin(0), 3)
	require.NoError(t, m.Freeze(ctx, bin(0)), "frozen already: nothing to read")
	require.Equal(t, 1, st.reads)
	require.NoError(t, m.Freeze(ctx, bin(1)))
	w, err = m.Window("a", bin(1), 3)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 1, 3 + 5}, w)

	_, err = m.Window("a", bin(2), 3)
	require.ErrorContains(t, err, "not frozen")
	require.ErrorContains(t, m.Freeze(ctx, bin(1).Add(time.Second)), "is not a boundary of 1m0s bins")
	require.ErrorContains(t, m.Freeze(ctx, time.Now().Add(time.Hour).Truncate(time.Minute)), "has not ended")
	st.fail = errors.New("connection refused")
	require.ErrorContains(t, m.Freeze(ctx, bin(2)), "connection refused")
	require.Equal(t, bin(1), m.Frozen(), "a failed read freezes nothing")
}

func TestMirrorForgetsBinsOlderThanItsSpan(t *testing.T) {
	st := &memReports{}
	st.add("old", bin(-5), 1)
	st.add("new", bin(-1), 1)
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	ctx := context.Background()
	require.NoError(t, m.Freeze(ctx, bin(0)))
	require.Equal(t, 2, m.Apps())
	st.add("new", bin(5), 4)
	require.NoError(t, m.Freeze(ctx, bin(6)))
	require.Equal(t, 1, m.Apps(), "old's only bin fell out of the span")
	w, err := m.Window("new", bin(6), 8)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 1, 0, 0, 0, 0, 0, 4}, w)
}

// A loop on a trace clock brings the history before its first live bin:
// the window reads it there (not what the router recorded then), the
// router's own counts after, and it goes once it is older than the span.
func TestMirrorReadsASeedBeforeTheLiveBins(t *testing.T) {
	st := &memReports{}
	st.add("a", bin(-1), 7) // recorded before the clock started (an earlier run): not this loop's history
	st.add("a", bin(0), 2)
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	ctx := context.Background()
	require.NoError(t, m.Seed("a", bin(0), []float64{1, 0, 3, 5}))
	require.NoError(t, m.Freeze(ctx, bin(1)))
	w, err := m.Window("a", bin(1), 6)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 1, 0, 3, 5, 2}, w)
	w, err = m.Window("b", bin(1), 2)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 0}, w, "a seed is one application's")

	require.ErrorContains(t, m.Seed("a", bin(0).Add(time.Second), []float64{1}), "want a boundary of 1m0s bins")
	require.ErrorContains(t, m.Seed("a", bin(0), make([]float64, wire.MaxCountBins+1)), "at most")

	// Every seeded bin ends before the span: forgotten with the old bins.
	require.NoError(t, m.Freeze(ctx, bin(9)))
	m.mu.RLock()
	_, kept := m.seeds["a"]
	m.mu.RUnlock()
	require.False(t, kept)
	w, err = m.Window("a", bin(9), 12)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 0}, w[:2], "bins -3 and -2 were the seed's")
}

// lastCountModel answers 0.9 divided by the last bin's requests (0.9 when
// it saw none).
type lastCountModel struct{ v string }

func (m lastCountModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = 0.9 / max(1, q.Counts[len(q.Counts)-1])
	}
	return out, nil
}
func (m lastCountModel) Version() string  { return m.v }
func (m lastCountModel) HistoryBins() int { return 8 }
func (m lastCountModel) HorizonBins() int { return 1 }

type oneRegistry struct{ m activities.DemandModel }

func (r oneRegistry) ChampionVersion(context.Context) (string, error) { return r.m.Version(), nil }
func (r oneRegistry) LoadDemand(context.Context, string) (activities.DemandModel, error) {
	return r.m, nil
}

type wake struct {
	id     string
	bin    time.Time
	reason string
}

type recordingWaker struct {
	mu    sync.Mutex
	wakes []wake
	errs  map[string]error // workflow ID -> error to return
}

func (w *recordingWaker) Wake(_ context.Context, id string, bin time.Time, reason string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.errs[id]; err != nil {
		return err
	}
	w.wakes = append(w.wakes, wake{id, bin, reason})
	return nil
}

func (w *recordingWaker) take() []wake {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.wakes
	w.wakes = nil
	slices.SortFunc(out, func(a, b wake) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	return out
}

// The watch wakes exactly the loops whose plan an arrival may have
// changed: a request that found nothing held, and a held one whose forecast
// fell below its keep threshold; not the rest.
func TestWatchWakesOnlyWhenAnArrivalCanChangeADecision(t *testing.T) {
	st := &memReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	waker := &recordingWaker{errs: map[string]error{"gone": ErrLoopGone, "flaky": errors.New("unavailable")}}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 4}
	p.Watch = w
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)))

	plan := func(id string, holding bool, next int, model string) {
		w.Register(activities.Plan{WorkflowID: id, App: id, Wake: bin(0), NextWake: bin(next), Bin: time.Minute, Holding: holding,
			Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: model})
	}
	plan("cold", false, 10, "v1")     // nothing held; a request comes
	plan("keeps", true, 10, "v1")     // held; one request: P 0.9 stays above 0.5
	plan("falls", true, 10, "v1")     // held; seven requests: P 0.13 falls below
	plan("quiet", true, 10, "v1")     // held; nothing comes
	plan("due", false, 1, "v1")       // wakes at bin 1 anyway
	plan("old-model", true, 10, "v0") // its plan came from another model
	plan("gone", false, 10, "v1")     // the loop has stopped
	plan("flaky", false, 10, "v1")    // the signal fails once
	for app, n := range map[string]uint64{"cold": 1, "keeps": 1, "falls": 7, "due": 2, "old-model": 1, "gone": 1, "flaky": 1} {
		st.add(app, bin(0), n)
	}
	err := w.Check(ctx, bin(1))
	require.ErrorContains(t, err, "wake flaky: unavailable")
	require.Equal(t, []wake{
		{"cold", bin(1), WakeColdArrival},
		{"falls", bin(1), WakeBelowKeep},
		{"old-model", bin(1), WakeModelChanged},
	}, waker.take())
	s := w.Stats()
	require.Equal(t, WatchStats{Plans: 7, Checks: 2, Wakes: 3, Cold: 1, BelowKeep: 1, ModelChange: 1, Failed: 1}, s, "gone is forgotten")

	// A loop woken once is not woken again before it registers a new plan;
	// a failed wake is sent again; a plan keeps being checked while it
	// sleeps.
	delete(waker.errs, "flaky")
	st.add("keeps", bin(1), 3)
	require.NoError(t, w.Check(ctx, bin(2)))
	require.Equal(t, []wake{{"flaky", bin(2), WakeColdArrival}, {"keeps", bin(2), WakeBelowKeep}}, waker.take())

	// A new plan replaces the old: the loop woke and decided.
	w.Register(activities.Plan{WorkflowID: "cold", App: "cold", Wake: bin(2), NextWake: bin(5), Bin: time.Minute, Holding: true,
		Keep: 0.5, Next: bin(2), ModelBin: time.Minute, Window: 8, Model: "v1"})
	require.NoError(t, w.Check(ctx, bin(3)))
	require.Empty(t, waker.take(), "nothing arrived since the new plan")
}

// Checks that fell behind catch up boundary by boundary.
func TestWatchCatchesUpBoundaryByBoundary(t *testing.T) {
	st := &memReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	waker := &recordingWaker{}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1}
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)))
	w.Register(activities.Plan{WorkflowID: "a", App: "a", Wake: bin(0), NextWake: bin(10), Bin: time.Minute,
		Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
	st.add("a", bin(1), 1)
	require.NoError(t, w.Check(ctx, bin(4)))
	require.Equal(t, []wake{{"a", bin(2), WakeColdArrival}}, waker.take(), "woken for the bin after the request, not the latest")
}

// A router-mode loop reads its history from the mirror and registers what
// it plans; a worker without a mirror, or mirroring other bins, refuses it
// for good, naming the flag.
func TestForecastInRouterMode(t *testing.T) {
	st := &memReports{}
	st.add("a", bin(-2), 3)
	st.add("a", bin(-1), 1)
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: &recordingWaker{}}
	p.Watch = w
	env := activityEnv(p)
	in := wire.ForecastInput{App: "a", Next: bin(0), Bin: time.Minute, Bins: 4, Lookahead: 2, MaxSleep: 3,
		Thresholds: policy.Thresholds{Keep: 0.5, Prepare: 0.6}, Router: &wire.RouterInput{Start: bin(0), Bin: time.Minute, Window: 4, Since: bin(-1)}}
	v, err := env.ExecuteActivity(p.Forecast, in)
	require.NoError(t, err)
	var res wire.ForecastResult
	require.NoError(t, v.Get(&res))
	require.True(t, res.Held, "the last bin saw a request")
	require.Equal(t, wire.Counts{1}, res.Counts, "only the bins since the last read")
	require.Equal(t, 3, res.NextChange, "held: the lease is planned as far as the loop may sleep, past the lookahead")
	require.Equal(t, 3, res.HoldBins)
	require.Equal(t, wire.UntilHold, res.Until)
	require.Equal(t, 1, w.Stats().Plans)

	p2 := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	env2 := activityEnv(p2)
	_, err = env2.ExecuteActivity(p2.Forecast, in)
	require.ErrorContains(t, err, "worker --arrivals-bin")
	in.Router.Bin = time.Second
	_, err = env.ExecuteActivity(p.Forecast, in)
	require.ErrorContains(t, err, "this worker mirrors 1m0s bins")
}

// A loop's forecast may freeze a bin before the watch checks it (both
// freeze on the worker's one mirror): the watch still checks that bin, and
// wakes the sleeping loop an arrival in it concerns.
func TestWatchChecksABinALoopFrozeFirst(t *testing.T) {
	st := &memReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	waker := &recordingWaker{}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1}
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)))
	w.Register(activities.Plan{WorkflowID: "a", App: "a", Wake: bin(0), NextWake: bin(10), Bin: time.Minute,
		Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
	st.add("a", bin(0), 1)
	// Another loop wakes for bin 1 first: its forecast freezes bin 0.
	require.NoError(t, m.Freeze(ctx, bin(1)))
	require.NoError(t, w.Check(ctx, bin(1)))
	require.Equal(t, []wake{{"a", bin(1), WakeColdArrival}}, waker.take(), "bin 0 was frozen by the loop, checked by the watch")

	// The loop froze two more bins before the watch's next check: both are
	// checked, each for its own arrivals.
	w.Register(activities.Plan{WorkflowID: "b", App: "b", Wake: bin(1), NextWake: bin(10), Bin: time.Minute,
		Keep: 0.5, Next: bin(1), ModelBin: time.Minute, Window: 8, Model: "v1"})
	st.add("b", bin(1), 2)
	require.NoError(t, m.Freeze(ctx, bin(3)))
	require.NoError(t, w.Check(ctx, bin(2)))
	require.Equal(t, []wake{{"b", bin(2), WakeColdArrival}}, waker.take())
	require.NoError(t, w.Check(ctx, bin(3)))
	require.Empty(t, waker.take(), "checked once")
}

// A bin is frozen only once its grace has passed: a boundary whose bin is
// still open is refused, and one whose bin ended within the grace is
// waited for, so no loop freezes a bin with part of its reports for every
// loop of the worker.
func TestMirrorFreezesOnlyAfterTheGrace(t *testing.T) {
	st := &memReports{}
	const b = time.Second
	m := &Mirror{Reader: st, Bin: b, Span: 8}
	ctx := context.Background()
	open := time.Now().Truncate(b).Add(b) // the end of the bin open now
	require.ErrorContains(t, m.Freeze(ctx, open), "has not ended")
	require.Zero(t, st.reads, "nothing read")
	time.Sleep(time.Until(open))
	require.NoError(t, m.Freeze(ctx, open))
	require.False(t, time.Now().Before(open.Add(Grace(b))), "read before the grace had passed")
	require.Equal(t, open, m.Frozen())
}

// failingModel fails every prediction.
type failingModel struct{ lastCountModel }

func (failingModel) Predict([]activities.DemandQuery) ([]float64, error) {
	return nil, errors.New("session closed")
}

// A model that fails checks no holding loop (they are checked again at the
// next boundary), but the loops a request found cold are woken all the
// same: they need no model.
func TestWatchWakesColdLoopsWhenTheModelFails(t *testing.T) {
	st := &memReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	waker := &recordingWaker{}
	p := &activities.Predictor{Models: oneRegistry{failingModel{lastCountModel{"v1"}}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1}
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)))
	for _, id := range []string{"held1", "cold", "held2"} {
		w.Register(activities.Plan{WorkflowID: id, App: id, Wake: bin(0), NextWake: bin(10), Bin: time.Minute, Holding: id != "cold",
			Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
		st.add(id, bin(0), 1)
	}
	require.ErrorContains(t, w.Check(ctx, bin(1)), "session closed")
	require.Equal(t, []wake{{"cold", bin(1), WakeColdArrival}}, waker.take())
	require.Equal(t, int64(1), w.Stats().Cold)
}

// slowReports is a store whose reads take longer the more bins they cover
// (perBin each): a read that cannot finish before its deadline times out.
type slowReports struct {
	memReports
	perBin time.Duration
	widest int // the most bins one successful read covered
}

func (s *slowReports) Arrivals(ctx context.Context, from, to time.Time, bin time.Duration) (map[string]BinCounts, error) {
	n := int(to.Sub(from) / bin)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Duration(n)*s.perBin {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	s.widest = max(s.widest, n)
	return s.memReports.Arrivals(ctx, from, to, bin)
}

// After a long outage (or at the first load) the mirror catches up in
// reads of bounded width, freezing each as it comes, so a store that
// cannot answer for all the missed bins at once still lets it catch up.
func TestMirrorCatchesUpInBoundedReads(t *testing.T) {
	st := &slowReports{perBin: 5 * time.Millisecond} // a read of 60 bins or more times out
	st.add("a", bin(-1000), 2)
	st.add("a", bin(-1), 1)
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 1440, Timeout: 300 * time.Millisecond}
	ctx := context.Background()
	var err error
	for range 3 { // the worker tries again at the next bin
		if err = m.Freeze(ctx, bin(0)); err == nil {
			break
		}
	}
	require.NoError(t, err)
	require.Equal(t, bin(0), m.Frozen())
	require.LessOrEqual(t, st.widest, 50)
	w, err := m.Window("a", bin(0), 1440)
	require.NoError(t, err)
	require.Equal(t, 2.0, w[440])
	require.Equal(t, 1.0, w[1439])

	// A long outage: 600 bins to catch up.
	st.add("a", bin(300), 5)
	for range 3 {
		if err = m.Freeze(ctx, bin(600)); err == nil {
			break
		}
	}
	require.NoError(t, err)
	w, err = m.Window("a", bin(600), 1440)
	require.NoError(t, err)
	require.Equal(t, 5.0, w[1440-300])
}

// A worker that starts knows no loop's plan until each loop wakes again
// (its plans lived in the previous worker's memory). Within Amnesia of its
// first check the watch wakes, once, the loop of every application with
// arrivals it has no plan for; a loop it has a plan for is judged by that
// plan; after Amnesia nothing is woken for want of a plan.
func TestWatchWakesLoopsItHasNoPlanForAfterARestart(t *testing.T) {
	st := &memReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	waker := &recordingWaker{errs: map[string]error{"predict/none": ErrLoopGone}}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1,
		LoopOf: func(app string) string { return "predict/" + app }, Amnesia: 3 * time.Minute}
	p.Watch = w
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)), "the worker starts: first check at bin 0")

	w.Register(activities.Plan{WorkflowID: "predict/planned", App: "planned", Wake: bin(0), NextWake: bin(10), Bin: time.Minute,
		Holding: true, Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
	// A loop that registered since the start and is waking now (its plan
	// is dropped as its wake passes) registers again by itself.
	w.Register(activities.Plan{WorkflowID: "predict/waking", App: "waking", Wake: bin(-1), NextWake: bin(0).Add(30 * time.Second),
		Bin: time.Minute, Keep: 0.5, Next: bin(-1), ModelBin: time.Minute, Window: 8, Model: "v1"})
	for _, app := range []string{"asleep", "planned", "none", "waking"} {
		st.add(app, bin(0), 1)
	}
	require.NoError(t, w.Check(ctx, bin(1)))
	require.Equal(t, []wake{{"predict/asleep", bin(1), WakeUnplanned}}, waker.take(),
		"the sleeping loop never registered here is woken; the planned one keeps (P 0.9 ≥ 0.5); the waking one registers again; a loop that is gone is not retried")

	st.add("asleep", bin(1), 1)
	st.add("none", bin(1), 1)
	require.NoError(t, w.Check(ctx, bin(2)))
	require.Empty(t, waker.take(), "each loop is woken for want of a plan once")

	st.add("later", bin(3), 1)
	require.NoError(t, w.Check(ctx, bin(4)))
	require.Empty(t, waker.take(), "after Amnesia every loop has registered: no plan means no loop here")
	require.Equal(t, int64(1), w.Stats().Unplanned)
}

// activityEnv runs p's activities with the workers' data converter.
func activityEnv(p *activities.Predictor) *testsuite.TestActivityEnvironment {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetDataConverter(payload.Converter())
	env.RegisterActivity(p)
	return env
}

// busyModel gives a request in the next bin Busy when the last bin had one
// and 0.1 when it had none.
type busyModel struct {
	lastCountModel
	Busy float64
}

func (m busyModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = 0.1
		if q.Counts[len(q.Counts)-1] > 0 {
			out[i] = m.Busy
		}
	}
	return out, nil
}

// A held loop whose release a request will likely overtake sleeps past it
// and leaves the release to the watch: the watch wakes it at the release
// when no request came, and when requests came, at the first bin the
// loop would let go. A loop whose release is likely (a request is not)
// wakes for it itself.
func TestWatchWakesAHeldLoopForTheReleaseItLeftToIt(t *testing.T) {
	const id = "default-test-workflow-id" // the loop the test environment runs the forecast for
	forecast := func(t *testing.T, busy float64) (wire.ForecastResult, *Watch, *memReports, *recordingWaker) {
		st := &memReports{}
		st.add("a", bin(-1), 1)
		m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
		waker := &recordingWaker{}
		p := &activities.Predictor{Models: oneRegistry{busyModel{lastCountModel{"v1"}, busy}}}
		w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1}
		p.Watch = w
		env := activityEnv(p)
		in := wire.ForecastInput{App: "a", Next: bin(0), Bin: time.Minute, Bins: 8, Lookahead: 2, MaxSleep: 6,
			Thresholds: policy.Thresholds{Keep: 0.3, Prepare: 0.6}, Router: &wire.RouterInput{Start: bin(0), Bin: time.Minute, Window: 4}}
		v, err := env.ExecuteActivity(p.Forecast, in)
		require.NoError(t, err)
		var res wire.ForecastResult
		require.NoError(t, v.Get(&res))
		require.True(t, res.Action.Holds(), "the last bin saw a request")
		return res, w, st, waker
	}

	t.Run("no request comes", func(t *testing.T) {
		res, w, _, waker := forecast(t, 0.9)
		require.Equal(t, wire.UntilWatch, res.Until, "a request is 90% likely before the release at bin 1")
		require.Equal(t, 3, res.NextChange, "the release, then a lookahead of 2 bins as the safety net")
		require.Equal(t, 3, res.HoldBins, "the lease lasts until the loop's own wake")
		require.NoError(t, w.Check(context.Background(), bin(1)))
		require.Equal(t, []wake{{id, bin(1), WakeRelease}}, waker.take(), "the release stands")
		require.Equal(t, int64(1), w.Stats().Release)
	})
	t.Run("requests keep it", func(t *testing.T) {
		_, w, st, waker := forecast(t, 0.9)
		st.add("a", bin(0), 2)
		require.NoError(t, w.Check(context.Background(), bin(1)))
		require.Empty(t, waker.take(), "a request came: P 0.9 keeps the instance at bin 1")
		require.NoError(t, w.Check(context.Background(), bin(2)))
		require.Equal(t, []wake{{id, bin(2), WakeBelowKeep}}, waker.take(), "bin 1 was idle: P 0.1 lets go at bin 2")
	})
	t.Run("the release is likely", func(t *testing.T) {
		res, w, _, waker := forecast(t, 0.4)
		require.Equal(t, wire.UntilChange, res.Until, "a request is only 40% likely before the release")
		require.Equal(t, 1, res.NextChange)
		require.NoError(t, w.Check(context.Background(), bin(1)))
		require.Empty(t, waker.take(), "the loop wakes for its release itself")
	})
}
