package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/scale"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

// BenchmarkLoopTicks runs FOREWARM_BENCH_LOOPS prediction loops (default
// 300) at 1-second bins on one worker against the local dev server, with
// the real demand model in ONNX Runtime, for FOREWARM_BENCH_SECONDS
// (default 30), and reports the sustained ticks per second and the p99 lag
// of a tick behind the end of its bin (from the loops' own lag histograms,
// bucket upper bounds). Loops run dry (predict and record, prepare nothing)
// so the figure is the loop machinery, not the host agents.
//
//	go test ./worker -run '^$' -bench LoopTicks -benchtime 1x
func BenchmarkLoopTicks(b *testing.B) {
	n := benchEnv.Int("FOREWARM_BENCH_LOOPS", 300)
	secs := benchEnv.Int("FOREWARM_BENCH_SECONDS", 30)
	k := newStack(b)
	apps := make([]string, n)
	periods := make([]int, n)
	for i := range apps {
		apps[i] = fmt.Sprintf("%s-%04d", k.prefix, i)
		periods[i] = 2 + i%9
	}
	k.loadHistory(apps[:min(n, 20)], periods[:min(n, 20)], 600)
	k.s.WorkflowTasks = 400
	k.startWorker()
	tr := k.train(1)
	if !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(b, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}
	// Dry run, deciding every bin: the cost of a tick, the loop's cost
	// before it slept between decisions.
	pol := workflows.DefaultPolicy()
	pol.DryRun, pol.Ticking = true, true
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, a := range apps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.LoopWorkflowID(a), TaskQueue: k.s.PredictionQueue},
				workflows.LoopWorkflowName, workflows.LoopInput{App: a, Bin: time.Second, Policy: pol, Seeded: true, Recent: make([]float64, 64)})
			if err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, a := range apps {
			_ = k.c.TerminateWorkflow(context.Background(), workflows.LoopWorkflowID(a), "", "benchmark over")
		}
	})
	time.Sleep(5 * time.Second) // warm up: every loop started and ticking
	b.ResetTimer()
	// Each snapshot queries every loop at a slightly different moment: the
	// window runs from the middle of the first to the middle of the second.
	t0 := time.Now()
	before := k.snapshot(apps)
	t1 := time.Now()
	cpu1, srv1, db1 := processCPU(0), processCPU(serverPID), treeCPU(dbPID)
	time.Sleep(time.Duration(secs) * time.Second)
	cpu2, srv2, db2 := processCPU(0), processCPU(serverPID), treeCPU(dbPID)
	t2 := time.Now()
	after := k.snapshot(apps)
	t3 := time.Now()
	elapsed := t3.Sub(t2)/2 + t2.Sub(t1) + t1.Sub(t0)/2
	b.StopTimer()

	ticks := after.ticks - before.ticks
	var lag [len(workflows.LagBucketBoundsMS) + 1]int
	for i := range lag {
		lag[i] = after.lag[i] - before.lag[i]
	}
	p50, p99 := quantileMS(lag, 0.5), quantileMS(lag, 0.99)
	b.ReportMetric(float64(ticks)/elapsed.Seconds(), "ticks/s")
	b.ReportMetric(p50, "p50-lag-ms")
	b.ReportMetric(p99, "p99-lag-ms")
	b.ReportMetric(float64(n), "loops")
	// CPU per tick between the snapshots: this process (the worker, and
	// the benchmark's client, idle then) and, with
	// FOREWARM_BENCH_SERVER_PID, the Temporal server. A loop at 1-minute
	// bins ticks once a minute: a core serves 60 s / (CPU s per tick) loops.
	inWindow := float64(ticks) * t2.Sub(t1).Seconds() / elapsed.Seconds()
	workerPerTick := (cpu2 - cpu1).Seconds() / inWindow
	b.ReportMetric(workerPerTick*1000, "worker-cpu-ms/tick")
	b.ReportMetric(60/workerPerTick, "loops/worker-core@1m")
	if serverPID > 0 {
		b.ReportMetric((srv2-srv1).Seconds()/inWindow*1000, "server-cpu-ms/tick")
	}
	if dbPID > 0 {
		b.ReportMetric((db2-db1).Seconds()/inWindow*1000, "db-cpu-ms/tick")
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(st); m != nil {
			kb, _ := strconv.Atoi(string(m[1]))
			b.ReportMetric(float64(kb)/1024, "worker-peak-MB")
		}
	}
	if f := os.Getenv("FOREWARM_BENCH_HISTORY"); f != "" {
		k.recordHistories(f, map[string]string{"bench-loop.json": workflows.LoopWorkflowID(apps[0])})
	}
	if before.failed+after.failed > 0 {
		b.Errorf("%d state queries failed: the figures are incomplete", before.failed+after.failed)
	}
	b.Logf("%d loops, %d ticks in %v (ideal %d), lag histogram %v (bounds ms %v), max lag %.0f ms, predict errors %d",
		n, ticks, elapsed.Round(time.Millisecond), n*secs, lag, workflows.LagBucketBoundsMS, after.maxLag, after.errors-before.errors)
}

// serverPID is the Temporal server's process, dbPID its database's main
// process (PostgreSQL: with its backends), to measure their CPU too.
var (
	serverPID = benchEnv.Int("FOREWARM_BENCH_SERVER_PID", 0)
	dbPID     = benchEnv.Int("FOREWARM_BENCH_DB_PID", 0)
)

// treeCPU is processCPU of pid and its children.
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	total := processCPU(pid)
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:])); len(fs) > 1 && fs[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			total += processCPU(child)
		}
	}
	return total
}

// processCPU is the user+system CPU time of process pid (0: this one).
func processCPU(pid int) time.Duration {
	if pid == 0 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return scale.ProcessCPU(pid)
}

type loopSnapshot struct {
	ticks, errors int
	failed        int // loops that did not answer the query
	lag           [len(workflows.LagBucketBoundsMS) + 1]int
	maxLag        float64
}

// snapshot sums the loops' counters (queried concurrently).
func (k *stack) snapshot(apps []string) loopSnapshot {
	var mu sync.Mutex
	var s loopSnapshot
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range apps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var st workflows.LoopStatus
			v, err := k.c.QueryWorkflow(ctx, workflows.LoopWorkflowID(a), "", workflows.QueryState, workflows.StateQuery{})
			if err == nil {
				err = v.Get(&st)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.failed++
				return
			}
			s.ticks += st.Stats.Wakes
			s.errors += st.Stats.PredictErrors
			for i, c := range st.Stats.LagBuckets {
				s.lag[i] += c
			}
			s.maxLag = max(s.maxLag, st.Stats.MaxLagMS)
		}()
	}
	wg.Wait()
	return s
}

// quantileMS is the upper bound of the bucket holding quantile q.
func quantileMS(h [len(workflows.LagBucketBoundsMS) + 1]int, q float64) float64 {
	total := 0
	for _, c := range h {
		total += c
	}
	seen := 0
	for i, c := range h {
		seen += c
		if float64(seen) >= q*float64(total) {
			if i < len(workflows.LagBucketBoundsMS) {
				return workflows.LagBucketBoundsMS[i]
			}
			return slices.Max(workflows.LagBucketBoundsMS[:]) * 2
		}
	}
	return 0
}

// BenchmarkServeRequests sends FOREWARM_BENCH_REQUESTS requests (default
// 200), FOREWARM_BENCH_INFLIGHT at a time (default 10), through the
// serve-request workflow for 10 applications whose loops keep leases ready
// (threshold 0), against one in-process host agent, and reports requests
// per second, the warm share and the p50/p99 end-to-end latency of a
// request (start of the workflow to its result).
//
//	go test ./worker -run '^$' -bench ServeRequests -benchtime 1x
func BenchmarkServeRequests(b *testing.B) {
	total := benchEnv.Int("FOREWARM_BENCH_REQUESTS", 200)
	inflight := benchEnv.Int("FOREWARM_BENCH_INFLIGHT", 10)
	k := newStack(b)
	apps := make([]string, 10)
	periods := make([]int, len(apps))
	for i := range apps {
		apps[i] = fmt.Sprintf("%s-r%02d", k.prefix, i)
		periods[i] = 2
	}
	k.loadHistory(apps, periods, 600)
	k.startAgent("bench-host", 16384, 1, 0)
	k.startWorker()
	tr := k.train(1)
	if !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(b, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}
	for _, a := range apps {
		k.startLoop(a, holdAlways())
	}
	time.Sleep(5 * time.Second)

	var mu sync.Mutex
	var lat []time.Duration
	warm := 0
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range total {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			res := k.request(apps[i%len(apps)])
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, d)
			if res.Warm {
				warm++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "requests/s")
	b.ReportMetric(float64(warm)/float64(total), "warm-share")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.Logf("%d requests, %d in flight, in %v: %d warm; latency p50 %.0f ms, p99 %.0f ms, max %.0f ms",
		total, inflight, elapsed.Round(time.Millisecond), warm, q(0.5), q(0.99), q(1))
}

// benchEnv reads the benchmarks' settings (a value that does not parse is
// the default's: benchmarks are run by hand).
var benchEnv config.EnvDefaults
