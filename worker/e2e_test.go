package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

// e2eRoot is the fleet's root secret: the worker derives each host's
// token from it, and each in-process agent holds only its own.
const e2eRoot = "e2e-root-secret-0123456789abcdef"

func hostToken(id string) string { return api.DeriveToken([]byte(e2eRoot), id) }

// stack is a whole Forewarm on the real services: a fresh ClickHouse
// database, in-process host agents, a worker on task queues of its own.
type stack struct {
	t  testing.TB
	c  client.Client
	st *store.Store
	// workerStore, when set, is the worker's own store (e.g. through a
	// proxy the test can cut); st is the test's direct view.
	workerStore *store.Store
	s           settings
	prefix      string
	agents      map[string]*testAgent
	running     *running
}

type testAgent struct {
	a      *agent.Agent
	url    string
	srv    *http.Server
	cancel context.CancelFunc
}

func randSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newStack(t testing.TB) *stack {
	t.Helper()
	tc := testenv.Temporal(t)
	lib := testenv.ORTLib(t)
	require.NoError(t, models.InitORT(lib))
	st := storetest.New(t)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := tc.Dial(logger)
	if err != nil {
		testenv.Missing(t, "Temporal", err)
	}
	t.Cleanup(c.Close)
	p := "e2e" + randSuffix()
	s := settings{Temporal: tc, Queues: []string{"prediction", "training"},
		PredictionQueue: p + "-prediction", TrainingQueue: p + "-training", Agents: config.Agents{RootSecret: e2eRoot},
		UseORT: true, WorkflowTasks: 50, WorkflowPollers: testPollers(), ModelCheck: time.Second, HoldoutFraction: 0.25, TrainSamples: 2000}
	return &stack{t: t, c: c, st: st, s: s, prefix: p, agents: map[string]*testAgent{}}
}

func (k *stack) startWorker() {
	ws := k.st
	if k.workerStore != nil {
		ws = k.workerStore
	}
	r, err := start(k.s, k.c, ws, slog.Default())
	require.NoError(k.t, err)
	k.running = r
	k.t.Cleanup(r.Stop)
}

func (k *stack) stopWorker() {
	k.running.Stop()
	k.running = nil
}

// lyingReporter registers the agent with the store, but may claim another
// speed (to make the affinity expectation wrong on purpose) and reports
// quiet metrics so the ranking does not depend on this machine's load.
type lyingReporter struct {
	st       *store.Store
	speed    float64
	capacity float64
	mu       sync.Mutex
	reserved float64
}

func (r *lyingReporter) Register(ctx context.Context, info api.Info, seen time.Time) error {
	sp := info.Speed
	if r.speed > 0 {
		sp = r.speed
	}
	return r.st.RegisterHost(ctx, store.Host{ID: info.HostID, URL: info.URL, MemoryMB: info.MemoryMB, DiskMB: info.DiskMB,
		CPUMilli: info.CPUMilli, Speed: sp, LastSeen: seen})
}

func (r *lyingReporter) Report(ctx context.Context, m api.HostMetrics) error {
	return r.st.RecordHostMetrics(ctx, []store.HostMetrics{{Time: m.Time, HostID: m.HostID,
		MemAvailMB: r.capacity - m.ReservedMemMB, ReservedMemMB: m.ReservedMemMB, Leases: m.Leases}})
}

// startAgent runs a host agent in-process on a loopback port.
func (k *stack) startAgent(id string, memMB int64, speed, claimedSpeed float64) *testAgent {
	return k.startAgentWith(id, memMB, speed, claimedSpeed, 0)
}

func (k *stack) startAgentWith(id string, memMB int64, speed, claimedSpeed float64, setupPerMB time.Duration) *testAgent {
	return k.startAgentWrapped(id, memMB, speed, claimedSpeed, setupPerMB, nil)
}

// startAgentWrapped runs an agent whose HTTP handler is wrapped (nil: not),
// so a test can delay or fail chosen calls as a network or host would.
func (k *stack) startAgentWrapped(id string, memMB int64, speed, claimedSpeed float64, setupPerMB time.Duration, wrap func(http.Handler) http.Handler) *testAgent {
	t := k.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	a, err := agent.New(agent.Config{HostID: id, URL: url, DataDir: filepath.Join(t.TempDir(), id), MemoryMB: memMB, DiskMB: 4096,
		CPUMilli: 4000, Speed: speed, SleepWork: true, SampleEvery: time.Second, SetupPerMB: setupPerMB})
	require.NoError(t, err)
	h, err := a.Handler(hostToken(id))
	require.NoError(t, err)
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	go a.Report(ctx, &lyingReporter{st: k.st, speed: claimedSpeed, capacity: float64(memMB)}, time.Second)
	ta := &testAgent{a: a, url: url, srv: srv, cancel: cancel}
	k.agents[id] = ta
	t.Cleanup(func() { k.stopAgent(id) })
	return ta
}

func (k *stack) stopAgent(id string) {
	ta, ok := k.agents[id]
	if !ok {
		return
	}
	delete(k.agents, id)
	ta.cancel()
	if ta.srv == nil { // a process (startAgentProcess): killed by cancel
		return
	}
	_ = ta.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ta.a.Close(ctx)
}

// loadHistory stores a small 1-second-bin history ending now: app i has a
// request every period[i] bins; every app takes 16 MB.
func (k *stack) loadHistory(apps []string, periods []int, bins int) time.Time {
	return k.loadHistoryMB(apps, periods, bins, 16)
}

// loadHistoryMB is loadHistory for apps of memMB (their instances' size).
func (k *stack) loadHistoryMB(apps []string, periods []int, bins int, memMB float64) time.Time {
	end := time.Now().UTC().Truncate(time.Second)
	tr := &trace.Trace{Start: end.Add(-time.Duration(bins) * time.Second), Bin: time.Second, Bins: bins}
	for i, a := range apps {
		app := trace.App{ID: a, MemoryMB: memMB, ReadRatio: 0.7, DurationMS: 20, Counts: make([]uint32, bins)}
		for b := 0; b < bins; b += periods[i] {
			app.Counts[b] = 1
		}
		tr.Apps = append(tr.Apps, app)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := k.st.LoadTrace(ctx, tr, store.LoadOptions{})
	require.NoError(k.t, err)
	return end
}

func (k *stack) train(epochs int) workflows.TrainingResult {
	return k.trainWith("train/"+k.prefix, workflows.TrainingInput{Bin: time.Second, Epochs: epochs, Seed: 7})
}

func (k *stack) trainWith(id string, in workflows.TrainingInput) workflows.TrainingResult {
	t := k.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: k.s.TrainingQueue},
		workflows.TrainingWorkflowName, in)
	require.NoError(t, err)
	var res workflows.TrainingResult
	require.NoError(t, run.Get(ctx, &res))
	return res
}

func (k *stack) startLoop(app string, pol workflows.Policy) {
	k.startLoopInput(workflows.LoopInput{App: app, Bin: time.Second, Policy: pol})
}

func (k *stack) startLoopInput(in workflows.LoopInput) (runID string) {
	app := in.App
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.LoopWorkflowID(app), TaskQueue: k.s.PredictionQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrApp.ValueSet(app))},
		workflows.LoopWorkflowName, in)
	require.NoError(k.t, err)
	k.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = k.c.TerminateWorkflow(ctx, workflows.LoopWorkflowID(app), "", "test cleanup")
	})
	return run.GetRunID()
}

func (k *stack) status(app string) workflows.LoopStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := k.c.QueryWorkflow(ctx, workflows.LoopWorkflowID(app), "", workflows.QueryState, workflows.StateQuery{})
	require.NoError(k.t, err)
	var st workflows.LoopStatus
	require.NoError(k.t, v.Get(&st))
	return st
}

func (k *stack) waitFor(what string, within time.Duration, cond func() bool) {
	k.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			k.t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (k *stack) request(app string) workflows.RequestResult {
	_, res := k.requestID(app)
	return res
}

func (k *stack) requestID(app string) (string, workflows.RequestResult) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := workflows.RequestInput{RequestID: uuid.NewString(), App: app, MemoryMB: 16, DiskMB: 4, ReadRatio: 0.7, WorkMS: 20}
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RequestWorkflowID(app, in.RequestID), TaskQueue: k.s.PredictionQueue},
		workflows.RequestWorkflowName, in)
	require.NoError(k.t, err)
	var res workflows.RequestResult
	require.NoError(k.t, run.Get(ctx, &res))
	return run.GetID(), res
}

func (k *stack) stopLoop(app string) workflows.LoopResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(k.t, k.c.SignalWorkflow(ctx, workflows.LoopWorkflowID(app), "", workflows.SignalStop, workflows.StopSignal{Reason: "test over"}))
	var res workflows.LoopResult
	require.NoError(k.t, k.c.GetWorkflow(ctx, workflows.LoopWorkflowID(app), "").Get(ctx, &res))
	return res
}

// setPaused pauses or resumes a loop through its policy Update.
func (k *stack) setPaused(app string, paused bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := k.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: workflows.LoopWorkflowID(app), UpdateName: workflows.UpdatePolicy,
		Args: []any{workflows.PolicyUpdate{Change: workflows.PolicyChange{Paused: &paused}}}, WaitForStage: client.WorkflowUpdateStageCompleted})
	require.NoError(k.t, err)
	require.NoError(k.t, h.Get(ctx, nil))
}

func (k *stack) leasesOn(id string) []api.Lease {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := agentclient.New(k.agents[id].url, hostToken(id)).Leases(ctx)
	require.NoError(k.t, err)
	return ls
}

// TestEndToEnd: history in ClickHouse, training through the workflow, loops
// for three applications preparing real leases on real agents, requests
// served warm, a threshold signal visible in the query, an affinity
// adjustment recorded for the host that was slower than the registry said,
// and no lease left behind when the loops stop.
func TestEndToEnd(t *testing.T) {
	k := newStack(t)
	apps := []string{k.prefix + "-a", k.prefix + "-b", k.prefix + "-c"}
	k.loadHistory(apps, []int{3, 4, 6}, 1200)
	// "a-slow" claims speed 1 but works at 0.25, and has the most memory,
	// so it is ranked first until the adjustment says otherwise.
	k.startAgent("a-slow", 4096, 0.25, 1)
	k.startAgent("b-fast", 2048, 1, 0)
	k.startWorker()

	tr := k.train(2)
	t.Logf("training: %d apps × %d bins; demand: %s", tr.Dataset.Apps, tr.Dataset.Bins, tr.Demand.Reason)
	require.Equal(t, 3, tr.Dataset.Apps)
	require.NotEmpty(t, tr.Demand.Candidate)
	if !tr.Demand.Published {
		// The toy history may not beat a baseline; the loops still need a model.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}

	// Threshold 0: every application is held, so every request finds a
	// warm instance.
	pol := workflows.DefaultPolicy()
	pol.Threshold, pol.MaxShadowMS, pol.SampleMB = 0, 5000, 1
	for _, a := range apps[:2] {
		k.startLoop(a, pol)
	}
	// The third loop decides every bin and continues as new every 8 wakes:
	// its state must survive.
	ticking := pol
	ticking.Ticking = true
	firstRun := k.startLoopInput(workflows.LoopInput{App: apps[2], Bin: time.Second, Policy: ticking, MaxWakesPerRun: 8})
	k.waitFor("a lease on every loop", 90*time.Second, func() bool {
		for _, a := range apps {
			if len(k.status(a).Leases) == 0 {
				return false
			}
		}
		return true
	})

	firstID, first := k.requestID(apps[0])
	require.True(t, first.Warm, "a prepared lease serves the request warm: %+v", first)
	require.Equal(t, "a-slow", first.Host)
	require.True(t, first.Adjusted, "a-slow did 4× worse than expected: %+v", first)
	require.Less(t, first.NewAdjustment, 0.0)

	// A warm instance serves every request of its application: one lease
	// per loop, however many requests.
	leasesBefore := map[string]string{}
	for _, a := range apps[1:] {
		leasesBefore[a] = k.status(a).Leases[0].LeaseID
	}
	warm := 1
	served := map[string]map[string]bool{} // app -> lease IDs that served
	for range 5 {
		for _, a := range apps[1:] {
			r := k.request(a)
			if r.Warm {
				warm++
			}
			if served[a] == nil {
				served[a] = map[string]bool{}
			}
			served[a][r.LeaseID] = true
		}
		time.Sleep(1500 * time.Millisecond)
	}
	t.Logf("%d of 11 requests warm", warm)
	require.Equal(t, 11, warm, "every request found its application's warm instance")
	for _, a := range apps[1:] {
		require.Equal(t, map[string]bool{leasesBefore[a]: true}, served[a], "%s: one lease served all its requests", a)
	}
	for _, a := range apps {
		want := 5.0
		if a == apps[0] {
			want = 1
		}
		k.waitFor("each request counted once by its loop", 10*time.Second, func() bool { return k.status(a).Stats.Requests == want })
	}

	// The adjustment reached the loop; the instance it holds stays where it
	// is, and the next preparation (after a pause lets it go) prefers b-fast.
	k.waitFor("the adjustment in the loop's state", 30*time.Second, func() bool { return k.status(apps[0]).Adjustments["a-slow"] < 0 })
	k.setPaused(apps[0], true)
	k.waitFor("the paused loop to let its instance go", 30*time.Second, func() bool { return len(k.status(apps[0]).Leases) == 0 })
	k.setPaused(apps[0], false)
	k.waitFor("a new lease for "+apps[0]+" on b-fast", 60*time.Second, func() bool {
		for _, l := range k.status(apps[0]).Leases {
			if l.Host == "b-fast" {
				return true
			}
		}
		return false
	})

	// From here the loops decide on their forecasts again (a threshold well
	// above 0): they may let go and prepare anew.
	warmPhaseEnd := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	require.NoError(t, k.c.SignalWorkflow(ctx, workflows.LoopWorkflowID(apps[1]), "", workflows.SignalThreshold, workflows.ThresholdSignal{Threshold: 0.9}))
	cancel()
	k.waitFor("the threshold in the query", 10*time.Second, func() bool { return k.status(apps[1]).Policy.Threshold == 0.9 })
	// ... and in the search attributes the Web UI filters on.
	k.waitFor("the threshold in visibility", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := k.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("ForewarmApp = '%s' AND ForewarmThreshold = 0.9 AND ForewarmLoopState = 'running'", apps[1])})
		return err == nil && len(res.Executions) == 1
	})
	k.waitFor("the host on the request workflows in visibility", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := k.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowType = '%s' AND ForewarmHost = 'a-slow' AND WorkflowId = '%s'", workflows.RequestWorkflowName, firstID)})
		return err == nil && len(res.Executions) == 1
	})
	c := k.status(apps[2])
	require.GreaterOrEqual(t, c.Runs, 1, "the third loop continued as new")
	require.Greater(t, c.Stats.Wakes, 8, "its counters were carried")
	// Busy (an extension in flight after every wake, requests arriving), it
	// still continues as new within twice its limit of wakes per run, and
	// the run's history stays bounded.
	require.LessOrEqual(t, c.Stats.Wakes, 2*8*(c.Runs+1), "wakes %d over %d runs", c.Stats.Wakes, c.Runs+1)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	desc, err := k.c.DescribeWorkflowExecution(dctx, workflows.LoopWorkflowID(apps[2]), "")
	dcancel()
	require.NoError(t, err)
	require.Less(t, desc.WorkflowExecutionInfo.HistoryLength, int64(2*8*40), "the current run's history is bounded")
	require.Equal(t, 5.0, c.Stats.Requests, "and its requests counted once across runs")

	// Paused, each loop lets its instance go and starts nothing new; once
	// nothing is held or in flight, stopping it leaves every lease's life
	// complete in ClickHouse.
	for _, a := range apps {
		k.setPaused(a, true)
	}
	for _, a := range apps {
		k.waitFor(a+" idle", 60*time.Second, func() bool { s := k.status(a); return len(s.Leases) == 0 && s.Preparing == "" })
	}
	predictions := map[string]int{}
	prepared := 0
	for _, a := range apps {
		lastErr := k.status(a).LastError
		res := k.stopLoop(a)
		require.Greater(t, res.Stats.Predictions, 0)
		require.Zero(t, res.Stats.PreparationsFailed, "%s: %s", a, lastErr)
		predictions[a] = res.Stats.Predictions
		prepared += res.Stats.LeasesPrepared
	}
	require.Empty(t, k.leasesOn("a-slow"), "no lease left after the loops stopped")
	require.Empty(t, k.leasesOn("b-fast"), "no lease left after the loops stopped")

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adj, err := k.st.Adjustments(ctx)
	require.NoError(t, err)
	require.InDelta(t, first.NewAdjustment, adj[[2]string{apps[0], "a-slow"}], 1e-9, "the adjustment recorded in ClickHouse is the one the request computed")
	reqs, err := k.st.Requests(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	require.NoError(t, err)
	nWarm, ids := 0, map[string]bool{}
	for _, r := range reqs {
		if r.Warm {
			nWarm++
		}
		require.False(t, ids[r.RequestID], "request %s recorded twice", r.RequestID)
		ids[r.RequestID] = true
	}
	require.Len(t, reqs, 11, "every request recorded, once")
	require.Equal(t, warm, nWarm, "every warm request recorded")
	events, err := k.st.PreparationEvents(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	require.NoError(t, err)
	kinds := map[string]int{}
	warmPhase := map[string]map[string]int{} // per app, before the threshold changed
	for _, e := range events {
		kinds[e.Event]++
		if e.Time.Before(warmPhaseEnd) {
			if warmPhase[e.App] == nil {
				warmPhase[e.App] = map[string]int{}
			}
			warmPhase[e.App][e.Event]++
		}
	}
	t.Logf("preparation events: %v", kinds)
	require.Positive(t, prepared)
	require.Equal(t, prepared, kinds[records.EventReserved], "one reserved event per lease the loops were handed")
	require.Equal(t, prepared, kinds[records.EventValidated], "each proven ready by its shadow request")
	require.Equal(t, prepared, kinds[records.EventReleased]+kinds[records.EventExpired], "and each ended once: released, or expired")
	// While held at threshold 0, the instances were extended in place: one
	// reservation and one shadow request each, however long they were held.
	for _, a := range apps[1:] {
		require.Equal(t, 1, warmPhase[a][records.EventReserved], "%s: %v", a, warmPhase[a])
		require.Equal(t, 1, warmPhase[a][records.EventValidated], "%s: one shadow request: %v", a, warmPhase[a])
		require.Positive(t, warmPhase[a][records.EventExtended], "%s: kept by extending in place: %v", a, warmPhase[a])
	}
	require.Positive(t, kinds[records.EventReleased], "the stopped loops released their instances")
	require.Zero(t, kinds[records.EventClaimed], "warm instances are not consumed by a request")
	// A second training run now has a champion to beat, and tries the
	// affinity model (too few outcomes yet: said so, the run succeeds).
	tr2 := k.trainWith("train/"+k.prefix+"-2", workflows.TrainingInput{Bin: time.Second, Epochs: 1, Seed: 8, MinAffinitySamples: 5})
	t.Logf("second training: demand: %s; affinity: %s", tr2.Demand.Reason, tr2.Affinity.Reason)
	require.Equal(t, tr.Demand.Candidate, tr2.Demand.Champion)
	require.Contains(t, tr2.Affinity.Reason, "50 needed")

	k.stopWorker() // flushes the batched predictions
	preds, err := k.st.Predictions(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	require.NoError(t, err)
	stored := map[string]int{}
	for _, p := range preds {
		stored[p.App]++
	}
	require.Equal(t, predictions, stored, "every prediction a loop made is stored, once")

	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.recordHistories(dir, map[string]string{
			"loop.json":                  workflows.LoopWorkflowID(apps[1]),
			"request-warm.json":          firstID,
			"preparation.json":           preparationOf(first.LeaseID, first.Host),
			"training.json":              "train/" + k.prefix,
			"training-vs-champion.json":  "train/" + k.prefix + "-2",
			"loop-continued-as-new.json": workflows.LoopWorkflowID(apps[2]) + "@" + firstRun,
		})
	}
}

// preparationOf inverts workflows.LeaseID: <app>.<unix>.<host> -> prepare/<app>/<unix>.
func preparationOf(leaseID, host string) string {
	rest := strings.TrimSuffix(leaseID, "."+host)
	i := strings.LastIndex(rest, ".")
	return "prepare/" + rest[:i] + "/" + rest[i+1:]
}

// testPollers is $FOREWARM_WORKFLOW_POLLERS, as the worker reads it.
func testPollers() int {
	var env config.EnvDefaults
	return env.Int("FOREWARM_WORKFLOW_POLLERS", defaultWorkflowPollers)
}
