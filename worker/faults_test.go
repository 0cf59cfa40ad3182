package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/agent/api"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/faults"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/workflows"
)

// The fault tests run the real stack and break one thing at a time.

// holdAlways is a policy that keeps every test application held:
// threshold 0.
func holdAlways() workflows.Policy {
	p := workflows.DefaultPolicy()
	p.Threshold, p.MaxShadowMS, p.SampleMB = 0, 10000, 1
	return p
}

func (k *stack) trainedModel() {
	tr := k.train(1)
	if !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(k.t, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
	}
}

// waitPreparing waits until the agent shows a lease still preparing (its
// reserve reached the host and is allocating) and returns it.
func (k *stack) waitPreparing(host string) api.Lease {
	k.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range k.leasesOn(host) {
			if l.State == api.StatePreparing {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.t.Fatalf("no lease preparing on %s within 90s", host)
	return api.Lease{}
}

// sameLeaseAfterRestart checks that the loop holds the very lease that was
// preparing when its worker went away — same ID, created once — and that
// the host holds exactly that one lease's memory.
func (k *stack) sameLeaseAfterRestart(app, host string, preparing api.Lease) {
	t := k.t
	k.waitFor("a lease after the restart", 90*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	st := k.status(app)
	require.Len(t, st.Leases, 1)
	require.Equal(t, preparing.PreparationID, st.Leases[0].LeaseID, "the interrupted preparation itself finished, under its own ID")
	onHost := k.leasesOn(host)
	require.Len(t, onHost, 1, "the host holds exactly the loop's lease: %+v", onHost)
	require.Equal(t, preparing.PreparationID, onHost[0].PreparationID)
	require.True(t, preparing.Created.Equal(onHost[0].Created), "created once: %v, then %v", preparing.Created, onHost[0].Created)
	require.Equal(t, api.StateReady, onHost[0].State)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := agentclient.New(k.agents[host].url, hostToken(host))
	m, err := c.Metrics(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, m.Leases)
	require.Equal(t, preparing.MemoryMB, m.ReservedMemMB, "one lease's worth of memory reserved")
	l, err := c.Lease(ctx, preparing.PreparationID)
	require.NoError(t, err)
	require.InDelta(t, preparing.MemoryMB, l.ResidentMB, 0.5, "and resident")
}

// A worker that stops in the middle of a preparation — stopped once the
// host shows the lease preparing — and comes back: the preparation is
// retried under the same deterministic lease ID, the host keeps the lease
// it created (never a second one), and when the loop stops nothing is left.
func TestFaultWorkerStopsMidPreparation(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-w"
	k.loadHistoryMB([]string{app}, []int{2}, 600, 64)
	// 20 ms of setup per MB: a 64 + 16 MB reservation prepares for ~1.6 s.
	k.startAgentWith("only", 2048, 1, 0, 20*time.Millisecond)
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())

	preparing := k.waitPreparing("only")
	require.Equal(t, 64.0, preparing.MemoryMB)
	require.Equal(t, workflows.LeaseID(k.status(app).Preparing, "only"), preparing.PreparationID)
	k.stopWorker()
	time.Sleep(3 * time.Second)
	k.startWorker()

	k.sameLeaseAfterRestart(app, "only", preparing)
	res := k.stopLoop(app)
	t.Logf("loop after restart: %d ticks, %d preparations (%d failed), %d skipped bins", res.Stats.Wakes, res.Stats.Preparations, res.Stats.PreparationsFailed, res.Stats.SkippedBins)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease leaked")
}

// A host agent that stops: the loop's instance there is given up at the
// next extension, and the next preparation falls back from the stopped
// host (still listed: it registered less than 30 s ago) to the next one —
// its attempts are exactly [a-first failed, b-second prepared] — and no
// preparation fails.
func TestFaultHostAgentStops(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-h"
	k.loadHistory([]string{app}, []int{2}, 600)
	k.startAgent("a-first", 4096, 1, 0)
	k.startAgent("b-second", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()
	// Short leases, extended every few bins, so the stopped host is noticed
	// within seconds: well before the 30 s after which the host list would
	// drop it anyway (and no fallback would be tried).
	ticking := holdAlways()
	ticking.Ticking, ticking.LookaheadBins = true, 2
	k.startLoop(app, ticking)
	leaseOn := func(host string) string {
		for _, l := range k.status(app).Leases {
			if l.Host == host {
				return l.LeaseID
			}
		}
		return ""
	}
	k.waitFor("a lease on a-first", 60*time.Second, func() bool { return leaseOn("a-first") != "" })
	k.stopAgent("a-first")
	stoppedAt := time.Now()
	var second string
	k.waitFor("a lease on b-second once a-first is gone", 60*time.Second, func() bool { second = leaseOn("b-second"); return second != "" })
	took := time.Since(stoppedAt)
	t.Logf("fell back %v after a-first stopped", took.Round(100*time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var prep workflows.PrepareResult
	require.NoError(t, k.c.GetWorkflow(ctx, preparationOf(second, "b-second"), "").Get(ctx, &prep))
	require.Len(t, prep.Attempts, 2, "attempts: %s", prep.Summary())
	require.Equal(t, "a-first", prep.Attempts[0].Host)
	require.Equal(t, "reserve-failed", prep.Attempts[0].Outcome, "the stopped host was tried and failed: %s", prep.Summary())
	require.Equal(t, "b-second", prep.Attempts[1].Host)
	require.Equal(t, "prepared", prep.Attempts[1].Outcome)
	require.Len(t, prep.Leases, 1)

	res := k.stopLoop(app)
	t.Logf("%d preparations, %d failed, %d leases", res.Stats.Preparations, res.Stats.PreparationsFailed, res.Stats.LeasesPrepared)
	require.Zero(t, res.Stats.PreparationsFailed, "no preparation failed")
	require.Eventually(t, func() bool { return len(k.leasesOn("b-second")) == 0 }, 20*time.Second, 200*time.Millisecond)
	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.recordHistories(dir, map[string]string{"preparation-fallback.json": preparationOf(second, "b-second")})
	}
}

// A worker down for longer than its loop's warm instance lives: the host
// agent's TTL frees the instance (the last resort, for a lost loop), and
// the loop, back, counts it expired — its memory-time wasted — records the
// expiry and prepares a new one.
func TestFaultWorkerDownPastTheLeaseExpiry(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-x"
	k.loadHistory([]string{app}, []int{2}, 600)
	k.startAgent("only", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()
	short := holdAlways()
	// Leases of a few seconds: a loop plans its lease as far as it may
	// sleep.
	short.LookaheadBins, short.MaxSleepBins = 2, 2
	k.startLoop(app, short)
	k.waitFor("a warm instance", 60*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	first := k.status(app).Leases[0]

	k.stopWorker()
	k.waitFor("the host's TTL to end the instance", 30*time.Second, func() bool { return len(k.leasesOn("only")) == 0 })
	require.Less(t, time.Until(first.Expires), time.Duration(0), "it ended at its expiry")
	k.startWorker()
	k.waitFor("the loop to count the expiry and prepare again", 60*time.Second, func() bool {
		st := k.status(app)
		return st.Stats.Expired >= 1 && len(st.Leases) == 1 && st.Leases[0].LeaseID != first.LeaseID
	})
	st := k.status(app)
	require.Equal(t, 1, st.Stats.Expired)
	require.Positive(t, st.Stats.WastedMBSeconds, "an instance that served nothing is waste")
	res := k.stopLoop(app)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, err := k.st.PreparationEvents(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	require.NoError(t, err)
	ended := map[string]int{}
	for _, e := range events {
		if e.PreparationID == first.LeaseID && (e.Event == "expired" || e.Event == "released") {
			ended[e.Event]++
		}
	}
	require.Equal(t, map[string]int{"expired": 1}, ended, "the instance ended once, by expiry")
	t.Logf("loop: %d expired, %.0f MB·s wasted, %d leases prepared", res.Stats.Expired, res.Stats.WastedMBSeconds, res.Stats.LeasesPrepared)
	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.recordHistories(dir, map[string]string{"loop-lease-expired.json": workflows.LoopWorkflowID(app)})
	}
}

// ClickHouse becoming unreachable (a proxy in front of it is cut for 8 s)
// while a loop holds a warm instance and requests arrive: the cut really
// breaks the worker's connection; the loop keeps deciding and predicting
// with the loaded model; requests are served warm; a preparation made
// during the cut gets a lease (the last known host list); once ClickHouse
// is back every request is recorded once, and after the worker's flush the
// stored predictions are exactly the ones the loop made.
func TestFaultClickHouseUnreachable(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-c"
	k.loadHistory([]string{app}, []int{2}, 600)
	px := newProxy(t, testenv.ClickHouse(t).Addr)
	cfg := testenv.ClickHouse(t)
	cfg.Addr, cfg.Database = px.Addr(), k.st.Database()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ws, err := store.Open(ctx, cfg)
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	k.workerStore = ws
	k.s.ModelCheck = 500 * time.Millisecond
	k.startAgent("only", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()
	pol := holdAlways()
	pol.Ticking = true // a prediction every bin
	k.startLoop(app, pol)
	k.waitFor("a warm instance and predictions", 60*time.Second, func() bool {
		st := k.status(app)
		return st.Stats.Predictions >= 3 && len(st.Leases) > 0
	})

	before := k.status(app)
	px.Cut()
	cutAt := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	_, err = ws.Predictions(ctx, cutAt.Add(-time.Hour), cutAt)
	cancel()
	require.Error(t, err, "the cut really broke the worker's ClickHouse connection")

	// Served warm, one after the other (the instance takes one at a time),
	// on the instance prepared before the cut: serving needs no ClickHouse
	// (the records wait for it).
	served := func() (n int64) {
		for _, l := range k.agents["only"].a.Leases() {
			n += l.RequestsServed
		}
		return n
	}
	var runs []client.WorkflowRun
	for i := range 3 {
		runs = append(runs, k.startRequest(app))
		k.waitFor("a request served warm during the cut", 10*time.Second, func() bool { return served() > int64(i) })
	}
	// A new preparation during the cut: pausing lets the instance go,
	// resuming prepares another.
	k.setPaused(app, true)
	k.waitFor("the paused loop to let its instance go", 10*time.Second, func() bool { return len(k.status(app).Leases) == 0 })
	k.setPaused(app, false)
	k.waitFor("a new instance prepared during the cut", 10*time.Second, func() bool {
		st := k.status(app)
		return len(st.Leases) == 1 && st.Leases[0].LeaseID != before.Leases[0].LeaseID
	})
	time.Sleep(time.Until(cutAt.Add(8 * time.Second)))
	during := k.status(app)
	require.NoError(t, px.Restore())
	require.GreaterOrEqual(t, during.Stats.Predictions-before.Stats.Predictions, 3, "the loop kept predicting while ClickHouse was unreachable")
	require.Equal(t, before.Stats.PredictErrors, during.Stats.PredictErrors)
	require.Zero(t, during.Stats.PreparationsFailed)

	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := map[string]bool{}
	for _, r := range runs {
		var res workflows.RequestResult
		require.NoError(t, r.Get(ctx, &res), "the request served during the cut completes once ClickHouse is back")
		ids[strings.TrimPrefix(r.GetID(), workflows.RequestWorkflowID(app, ""))] = true
	}
	res := k.stopLoop(app)
	k.stopWorker() // flushes the batched predictions
	reqs, err := k.st.Requests(ctx, cutAt.Add(-time.Minute), time.Now().Add(time.Minute))
	require.NoError(t, err)
	recorded := map[string]int{}
	for _, r := range reqs {
		if r.App == app {
			recorded[r.RequestID]++
		}
	}
	require.Len(t, recorded, 3, "every request recorded: %v", recorded)
	for _, r := range reqs {
		if r.App == app {
			require.Equal(t, records.OutcomeWarm, r.Outcome, "request %s, served during the cut", r.RequestID)
		}
	}
	for id, n := range recorded {
		require.True(t, ids[id], "recorded request %s is one that was sent", id)
		require.Equal(t, 1, n, "request %s recorded once", id)
	}
	preds, err := k.st.Predictions(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	require.NoError(t, err)
	stored := 0
	for _, p := range preds {
		if p.App == app {
			stored++
		}
	}
	require.Equal(t, res.Stats.Predictions, stored, "every prediction the loop made is stored, once, the outage's included")
	require.Empty(t, k.leasesOn("only"))
}

// newProxy puts a cuttable proxy in front of target for the test.
func newProxy(t testing.TB, target string) *faults.Proxy {
	p, err := faults.NewProxy(target)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// TestMain lets a test run this very binary as a worker process
// (FOREWARM_WORKER_CHILD=1), so a fault test can kill -9 a real worker.
func TestMain(m *testing.M) {
	if os.Getenv("FOREWARM_WORKER_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if hostagentDir != "" {
		_ = os.RemoveAll(hostagentDir)
	}
	os.Exit(code)
}

// startWorkerProcess runs the worker as a child process on the stack's
// queues and database; env adds or overrides variables (the metrics
// endpoint is off unless env sets FOREWARM_METRICS_LISTEN).
func (k *stack) startWorkerProcess(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "--log-level", "warn")
	cmd.Env = append(os.Environ(),
		"FOREWARM_METRICS_LISTEN=off",
		"FOREWARM_WORKER_CHILD=1",
		"TEMPORAL_ADDRESS="+k.s.Temporal.Address,
		"CLICKHOUSE_DATABASE="+k.st.Database(),
		"FOREWARM_PREDICTION_QUEUE="+k.s.PredictionQueue,
		"FOREWARM_TRAINING_QUEUE="+k.s.TrainingQueue,
		"FOREWARM_AGENT_ROOT_SECRET="+e2eRoot,
		"FOREWARM_TRAIN_SAMPLES=2000",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(k.t, cmd.Start())
	k.t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// A worker process killed with SIGKILL in the middle of a preparation —
// once the host agent (a real hostagent process) shows the lease
// preparing: the reserve times out and is retried under the same lease ID
// by the next worker, the host keeps the lease it created, and the agent
// process holds one lease's memory, resident — not two.
func TestFaultWorkerKilledMidPreparation(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-k"
	const leaseMB = 128
	k.loadHistoryMB([]string{app}, []int{2}, 600, leaseMB)
	// 15 ms of setup per MB: a 128 + 32 MB reservation prepares for ~2.4 s.
	ag := k.startAgentProcess("only", 2048, 15)
	first := k.startWorkerProcess()
	k.trainedModel()
	k.waitFor("the agent registered", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs, err := k.st.Hosts(ctx, time.Now().Add(-30*time.Second))
		return err == nil && len(hs) == 1
	})
	rssBefore := ag.rssMB(t)
	k.startLoop(app, holdAlways())

	preparing := k.waitPreparing("only")
	require.Equal(t, float64(leaseMB), preparing.MemoryMB)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	time.Sleep(2 * time.Second)
	k.startWorkerProcess()

	k.sameLeaseAfterRestart(app, "only", preparing)
	grown := ag.rssMB(t) - rssBefore
	t.Logf("agent RSS grew by %.1f MB for one %d MB lease", grown, leaseMB)
	require.Greater(t, grown, 0.8*leaseMB, "the lease's memory is resident in the agent process")
	require.Less(t, grown, 1.5*leaseMB, "allocated once, not once per reserve attempt")
	k.stopLoop(app)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease leaked")
	require.Less(t, ag.rssMB(t)-rssBefore, 0.3*leaseMB, "the released lease's memory is given back")
}
