package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

// startRequest starts one serve-request workflow without waiting for it.
func (k *stack) startRequest(app string) client.WorkflowRun {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := workflows.RequestInput{RequestID: uuid.NewString(), App: app, MemoryMB: 16, DiskMB: 4, ReadRatio: 0.7, WorkMS: 20}
	run, err := k.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RequestWorkflowID(app, in.RequestID), TaskQueue: k.s.PredictionQueue},
		workflows.RequestWorkflowName, in)
	require.NoError(k.t, err)
	return run
}

// metricValue reads one counter or gauge of the worker's registry.
func metricValue(t *testing.T, m *telemetry.Metrics, name string) float64 {
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			for _, x := range f.GetMetric() {
				if x.GetCounter() != nil {
					return x.GetCounter().GetValue()
				}
				return x.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// ClickHouse cut off from the worker (a proxy in front of it is closed):
// with the last host list it read, the worker goes on preparing leases
// and serving cold requests for --host-list-max-stale after that read, and
// says so in its metrics; past that bound a preparation and a cold request
// fail, each saying how old the list is. Once ClickHouse is back, the
// request served during the cut is recorded, once.
func TestFaultClickHouseCutHostListLastKnown(t *testing.T) {
	k := newStack(t)
	apps := []string{k.prefix + "-p1", k.prefix + "-p2", k.prefix + "-p3"}
	k.loadHistory(apps, []int{2, 2, 2}, 600)
	px := newProxy(t, testenv.ClickHouse(t).Addr)
	cfg := testenv.ClickHouse(t)
	cfg.Addr, cfg.Database = px.Addr(), k.st.Database()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ws, err := store.Open(ctx, cfg)
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	k.workerStore = ws
	const maxStale = 20 * time.Second
	k.s.HostMaxStale = maxStale
	m, err := telemetry.New()
	require.NoError(t, err)
	k.s.metrics = m
	agent := k.startAgent("only", 2048, 1, 0)
	k.startWorker()
	k.trainedModel()

	k.startLoop(apps[0], holdAlways())
	// The other two loops start paused (seeded from ClickHouse); resumed
	// during the cut, each must prepare.
	paused := holdAlways()
	paused.Paused = true
	k.startLoop(apps[1], paused)
	k.startLoop(apps[2], paused)
	k.waitFor("a lease for "+apps[0], 60*time.Second, func() bool { return len(k.status(apps[0]).Leases) > 0 })
	for _, a := range apps[1:] {
		k.waitFor("the paused loop seeded", 30*time.Second, func() bool { return k.status(a).Stats.Wakes > 0 })
	}
	// A cold request reads the host list just before the cut: the bound
	// counts from here.
	_, res := k.requestID(k.prefix + "-noloop0")
	require.False(t, res.Warm)
	require.Equal(t, "only", res.Host)
	readAt := time.Now()
	px.Cut()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	_, err = ws.Hosts(ctx, time.Now().Add(-time.Minute))
	cancel()
	require.Error(t, err, "the cut really cut the worker's ClickHouse connection")
	staleBefore := metricValue(t, m, telemetry.MetricHostListStale)
	time.Sleep(3 * time.Second) // past the 2 s a list is fresh: the next read fails

	// Within the bound: a resumed loop prepares a lease and a request
	// without a loop is served cold.
	coldBefore := agent.a.Metrics().ServedCold
	k.setPaused(apps[1], false)
	during := k.startRequest(k.prefix + "-noloop1")
	k.waitFor("a lease for "+apps[1]+" during the cut", maxStale, func() bool { return len(k.status(apps[1]).Leases) > 0 })
	k.waitFor("the cold request served during the cut", maxStale, func() bool { return agent.a.Metrics().ServedCold > coldBefore })
	require.Less(t, time.Since(readAt), maxStale, "both happened within the staleness bound")
	require.Greater(t, metricValue(t, m, telemetry.MetricHostListStale), staleBefore, "the stale answers are counted")
	require.Greater(t, metricValue(t, m, telemetry.MetricHostListAge), 0.0)

	// Past the bound: both fail, naming the list's age and the bound.
	time.Sleep(time.Until(readAt.Add(maxStale + time.Second)))
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	var late workflows.RequestResult
	err = k.startRequest(k.prefix+"-noloop2").Get(ctx, &late)
	cancel()
	require.Error(t, err, "a cold request past the bound fails")
	require.Contains(t, err.Error(), "beyond the 20s it may be used for")
	require.Contains(t, err.Error(), "no host to serve")
	k.setPaused(apps[2], false)
	k.waitFor("the preparation of "+apps[2]+" to fail on the old list", 30*time.Second, func() bool {
		st := k.status(apps[2])
		return st.Stats.PreparationsFailed > 0
	})
	st := k.status(apps[2])
	require.Empty(t, st.Leases)
	require.Regexp(t, `preparation prepare/.* failed: .*host directory unreachable and the last known host list is \d+s old, beyond the 20s it may be used for`, st.LastError)

	// ClickHouse back: the list is fresh, the loop prepares, and the
	// request served during the cut is recorded once.
	require.NoError(t, px.Restore())
	k.waitFor("a lease for "+apps[2]+" once ClickHouse is back", 60*time.Second, func() bool { return len(k.status(apps[2]).Leases) > 0 })
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var served workflows.RequestResult
	require.NoError(t, during.Get(ctx, &served))
	require.Equal(t, "only", served.Host)
	require.Equal(t, "cold", served.Outcome)
	reqs, err := k.st.Requests(ctx, readAt.Add(-time.Minute), time.Now().Add(time.Minute))
	require.NoError(t, err)
	n := 0
	for _, r := range reqs {
		if r.App == k.prefix+"-noloop1" {
			n++
		}
	}
	require.Equal(t, 1, n, "the request served during the cut is recorded once")
	for _, a := range apps {
		k.stopLoop(a)
	}
	require.Eventually(t, func() bool { return len(k.leasesOn("only")) == 0 }, 20*time.Second, 200*time.Millisecond, "no lease left")
}
