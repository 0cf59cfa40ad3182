//go:build cluster

// Worker loss on a real cluster (`make test-cluster`: a Temporal server on
// PostgreSQL, two ClickHouse replicas): three worker processes serve the
// same task queues, one is killed with SIGKILL while loops prepare and
// requests are served, and the others take its loops over.
//
//	TEMPORAL_ADDRESS=127.0.0.1:17233 go test -tags cluster -run WorkerLoss ./worker/
package main

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

// clusterBin is the loops' bin width here: "within two bins" must cover
// Temporal noticing the dead worker (its sticky queue's 5-s
// schedule-to-start timeout, or a 10-s workflow task timeout when it died
// in the middle of one) and another worker replaying the loop. Production
// bins are a minute.
const clusterBin = 10 * time.Second

// loadHistoryBin is loadHistory at another bin width.
func (k *stack) loadHistoryBin(apps []string, periods []int, bins int, bin time.Duration) {
	end := time.Now().UTC().Truncate(bin)
	tr := &trace.Trace{Start: end.Add(-time.Duration(bins) * bin), Bin: bin, Bins: bins}
	for i, a := range apps {
		app := trace.App{ID: a, MemoryMB: 16, ReadRatio: 0.7, DurationMS: 20, Counts: make([]uint32, bins)}
		for b := 0; b < bins; b += periods[i] {
			app.Counts[b] = 1
		}
		tr.Apps = append(tr.Apps, app)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := k.st.LoadTrace(ctx, tr, store.LoadOptions{})
	require.NoError(k.t, err)
}

// tryRequest is request without failing the test from another goroutine.
func (k *stack) tryRequest(app string) (workflows.RequestResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := workflows.RequestInput{RequestID: uuid.NewString(), App: app, MemoryMB: 16, DiskMB: 4, ReadRatio: 0.7, WorkMS: 20}
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RequestWorkflowID(app, in.RequestID), TaskQueue: k.s.PredictionQueue},
		workflows.RequestWorkflowName, in)
	if err != nil {
		return workflows.RequestResult{}, err
	}
	var res workflows.RequestResult
	return res, run.Get(ctx, &res)
}

// TestWorkerLossOnCluster: three worker processes, loops on 10-s bins
// deciding at every bin and holding leases on two agents, a request every
// second; SIGKILL one worker. Every loop keeps deciding: no decision lags
// its bin's start by more than two bins and no bin goes undecided; every
// request is served; no lease is left on the agents when the loops stop.
// Logs the recovery figures.
func TestWorkerLossOnCluster(t *testing.T) {
	k := newStack(t)
	apps := make([]string, 6)
	periods := make([]int, len(apps))
	for i := range apps {
		apps[i] = fmt.Sprintf("%s-%d", k.prefix, i)
		periods[i] = 2 + i%3
	}
	k.loadHistoryBin(apps, periods, 1000, clusterBin)
	k.startAgent("host-a", 4096, 1, 0)
	k.startAgent("host-b", 4096, 1, 0)
	var addrs []string
	var procs []*exec.Cmd
	for range 3 {
		addr := freeAddr(t)
		p := k.startWorkerProcess("FOREWARM_METRICS_LISTEN=" + addr)
		addrs = append(addrs, addr)
		procs = append(procs, p)
	}
	for _, a := range addrs {
		k.waitFor("worker "+a+" ready", 60*time.Second, func() bool {
			code, _, err := httpGet("http://"+a+"/readyz", "")
			return err == nil && code == 200
		})
	}
	tr := k.trainWith("train/"+k.prefix, workflows.TrainingInput{Bin: clusterBin, Epochs: 1, Seed: 7})
	if !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}
	// Threshold 0 holds every application; Ticking decides at every bin
	// (rather than sleeping until the policy could act), so each bin's
	// decision shows in the lag.
	pol := workflows.DefaultPolicy()
	pol.Threshold, pol.MaxShadowMS, pol.SampleMB, pol.Ticking = 0, 5000, 1, true
	for _, a := range apps {
		k.startLoopInput(workflows.LoopInput{App: a, Bin: clusterBin, Policy: pol})
	}
	k.waitFor("two ticks and a lease on every loop", 3*clusterBin+30*time.Second, func() bool {
		for _, a := range apps {
			if st := k.status(a); st.Stats.Wakes < 2 || len(st.Leases) == 0 {
				return false
			}
		}
		return true
	})

	// Requests all along, one a second, round robin.
	var served, warm, failed atomic.Int64
	var firstErr atomic.Value
	stopReq := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopReq:
				return
			case <-time.After(time.Second):
			}
			wg.Go(func() {
				res, err := k.tryRequest(apps[i%len(apps)])
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case res.Warm:
					warm.Add(1)
					served.Add(1)
				default:
					served.Add(1)
				}
			})
		}
	})

	time.Sleep(clusterBin / 2)
	before := map[string]int{}
	for _, a := range apps {
		before[a] = k.status(a).Stats.Wakes
	}
	require.NoError(t, procs[0].Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	t.Logf("SIGKILL to worker process %d (metrics %s)", procs[0].Process.Pid, addrs[0])

	// Every loop ticks again (at its next bin's end, or late by the time
	// Temporal takes to hand a dead worker's loops to the others).
	recovered := map[string]time.Duration{}
	k.waitFor("every loop ticking after the kill", 4*clusterBin, func() bool {
		for _, a := range apps {
			if _, ok := recovered[a]; ok {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := k.c.QueryWorkflow(ctx, workflows.LoopWorkflowID(a), "", workflows.QueryState, workflows.StateQuery{})
			cancel()
			var st workflows.LoopStatus
			if err == nil && v.Get(&st) == nil && st.Stats.Wakes > before[a] {
				recovered[a] = time.Since(killed)
			}
		}
		return len(recovered) == len(apps)
	})
	time.Sleep(3 * clusterBin) // and keep going on two workers
	close(stopReq)
	wg.Wait()

	var worst time.Duration
	for _, a := range apps {
		st := k.status(a)
		lag := time.Duration(st.Stats.MaxLagMS * float64(time.Millisecond))
		worst = max(worst, lag)
		t.Logf("%s: %d ticks, max lag %v, skipped bins %d, lag buckets %v, ticking again %v after the kill",
			a, st.Stats.Wakes, lag.Round(time.Millisecond), st.Stats.SkippedBins, st.Stats.LagBuckets, recovered[a].Round(time.Millisecond))
		require.Zero(t, st.Stats.SkippedBins, "%s skipped bins", a)
		require.LessOrEqual(t, lag, 2*clusterBin, "%s lagged more than two bins", a)
	}
	t.Logf("requests: %d served (%d warm), %d failed", served.Load(), warm.Load(), failed.Load())
	require.Zero(t, failed.Load(), "failed requests (first: %v)", firstErr.Load())
	require.Positive(t, warm.Load())

	// The survivors are real worker programs: the dashboard's metrics are there.
	checkDashboard(t, scrape(t, "http://"+addrs[1]+"/metrics", ""), scrape(t, "http://"+addrs[2]+"/metrics", ""),
		scrape(t, k.agents["host-a"].url+api.PathPrometheus, hostToken("host-a")))

	for _, a := range apps {
		k.stopLoop(a)
	}
	for _, h := range []string{"host-a", "host-b"} {
		require.Eventually(t, func() bool { return len(k.leasesOn(h)) == 0 }, 30*time.Second, 250*time.Millisecond, "leases left on %s: %+v", h, k.leasesOn(h))
	}
	t.Logf("worker loss: the worst tick lag %v (bins of %v, allowed 2 bins); every loop ticked again within %v of the SIGKILL", worst.Round(time.Millisecond), clusterBin, maxOf(recovered).Round(time.Millisecond))
}

func maxOf(m map[string]time.Duration) time.Duration {
	var out time.Duration
	for _, d := range m {
		out = max(out, d)
	}
	return out
}
