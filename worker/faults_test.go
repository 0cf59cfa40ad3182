package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
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

// A worker that stops in the middle of a preparation (its activities
// cancelled) and comes back: the preparation is retried under the same
// deterministic lease ID, so the host never holds a second reservation, and
// when the loop stops nothing is left on the host.
func TestFaultWorkerStopsMidPreparation(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-w"
	k.loadHistory([]string{app}, []int{2}, 600)
	// 100 ms of setup per MB: a 20 MB reservation takes ~2 s.
	k.startAgentWith("only", 2048, 1, 0, 100*time.Millisecond)
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())

	var inflight string
	k.waitFor("a preparation in flight", 60*time.Second, func() bool { inflight = k.status(app).Preparing; return inflight != "" })
	time.Sleep(300 * time.Millisecond) // the reserve call is at the host
	k.stopWorker()
	time.Sleep(3 * time.Second)
	k.startWorker()

	k.waitFor("a lease after the restart", 60*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	st := k.status(app)
	require.Equal(t, workflows.LeaseID(inflight, "only"), st.Leases[0].LeaseID, "the interrupted preparation itself finished, under its own ID")
	onHost := k.leasesOn("only")
	require.Len(t, onHost, len(st.Leases), "the host holds exactly the loop's leases: %+v vs %+v", onHost, st.Leases)
	res := k.stopLoop(app)
	t.Logf("loop after restart: %d ticks, %d preparations (%d failed), %d skipped bins", res.Stats.Ticks, res.Stats.Preparations, res.Stats.PreparationsFailed, res.Stats.SkippedBins)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease leaked")
}

// A host agent that stops: the next preparation falls back to the next host.
func TestFaultHostAgentStops(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-h"
	k.loadHistory([]string{app}, []int{2}, 600)
	k.startAgent("a-first", 4096, 1, 0)
	k.startAgent("b-second", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()
	k.startLoop(app, holdAlways())
	hasLeaseOn := func(host string) bool {
		for _, l := range k.status(app).Leases {
			if l.Host == host {
				return true
			}
		}
		return false
	}
	k.waitFor("a lease on a-first", 60*time.Second, func() bool { return hasLeaseOn("a-first") })
	k.stopAgent("a-first")
	k.waitFor("a lease on b-second once a-first is gone", 90*time.Second, func() bool { return hasLeaseOn("b-second") })
	res := k.stopLoop(app)
	t.Logf("%d preparations, %d failed, %d leases", res.Stats.Preparations, res.Stats.PreparationsFailed, res.Stats.LeasesPrepared)
	require.Eventually(t, func() bool { return len(k.leasesOn("b-second")) == 0 }, 20*time.Second, 200*time.Millisecond)
}

// ClickHouse becoming unreachable (a proxy in front of it is cut for 8 s):
// the loops keep ticking and predicting with the loaded model, and the
// predictions made meanwhile reach the store once it is back.
func TestFaultClickHouseUnreachable(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-c"
	k.loadHistory([]string{app}, []int{2}, 600)
	px := newProxy(t, testenv.ClickHouse(t).Addr)
	cfg := testenv.ClickHouse(t)
	cfg.Addr, cfg.Database = px.addr(), k.st.Database()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ws, err := store.Open(ctx, cfg)
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	k.workerStore = ws
	k.s.ModelCheck = 500 * time.Millisecond
	k.startWorker()
	k.trainedModel()
	dry := workflows.DefaultPolicy()
	dry.DryRun, dry.Ticking = true, true
	k.startLoop(app, dry)
	k.waitFor("predictions", 60*time.Second, func() bool { return k.status(app).Stats.Predictions >= 3 })

	before := k.status(app)
	cutAt := time.Now()
	px.cut()
	time.Sleep(8 * time.Second)
	during := k.status(app)
	px.restore()
	require.GreaterOrEqual(t, during.Stats.Predictions-before.Stats.Predictions, 5, "the loop kept predicting while ClickHouse was unreachable")
	require.Equal(t, before.Stats.PredictErrors, during.Stats.PredictErrors)

	k.waitFor("the outage's predictions in ClickHouse", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ps, err := k.st.Predictions(ctx, cutAt.Add(time.Second), cutAt.Add(7*time.Second))
		return err == nil && len(ps) >= 3
	})
	k.stopLoop(app)
}

// proxy forwards TCP to a target and can be cut (every connection closed,
// new ones refused) and restored on the same address.
type proxy struct {
	t      testing.TB
	target string
	ln     net.Listener
	a      string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{t: t, target: target, ln: ln, a: ln.Addr().String()}
	go p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.a }

func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); u.Close() }()
		go func() { _, _ = io.Copy(c, u); c.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.a)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// TestMain lets a test run this very binary as a worker process
// (FOREWARM_WORKER_CHILD=1), so a fault test can kill -9 a real worker.
func TestMain(m *testing.M) {
	if os.Getenv("FOREWARM_WORKER_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
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

// A worker process killed with SIGKILL in the middle of a preparation: the
// activity times out and is retried under the same lease ID by the next
// worker, the host ends up holding exactly the loop's leases, and nothing
// is left once the loop stops.
func TestFaultWorkerKilledMidPreparation(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-k"
	k.loadHistory([]string{app}, []int{2}, 600)
	k.startAgentWith("only", 2048, 1, 0, 100*time.Millisecond) // a reservation takes ~2 s
	first := k.startWorkerProcess()
	k.trainedModel()
	k.startLoop(app, holdAlways())

	var inflight string
	k.waitFor("a preparation in flight", 60*time.Second, func() bool { inflight = k.status(app).Preparing; return inflight != "" })
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	time.Sleep(2 * time.Second)
	k.startWorkerProcess()

	k.waitFor("a lease after the restart", 90*time.Second, func() bool { return len(k.status(app).Leases) > 0 })
	st := k.status(app)
	require.Equal(t, workflows.LeaseID(inflight, "only"), st.Leases[0].LeaseID, "the interrupted preparation finished under its own ID")
	require.Len(t, k.leasesOn("only"), len(st.Leases), "the host holds exactly the loop's leases")
	k.stopLoop(app)
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease leaked")
}
