package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

// Router-style arrivals on the real stack: a router records requests per
// bin in ClickHouse, the worker mirrors them, the router-mode loops read
// their counts from the mirror at each wake, and the arrival watch wakes a
// sleeping loop when a request found no warm instance; a loop that saw
// nothing sleeps on.
func TestRouterModeEndToEnd(t *testing.T) {
	k := newStack(t)
	apps := []string{k.prefix + "-cold", k.prefix + "-quiet"}
	// Rare requests for the two loops (idle ahead), busy ones for training
	// (the IDs in order).
	k.loadHistory([]string{k.prefix + "-busy1", k.prefix + "-busy2", apps[0], apps[1]}, []int{2, 3, 97, 89}, 600)
	const bin = 4 * time.Second
	k.s.ArrivalsBin, k.s.ArrivalsSpan = bin, 256
	k.startWorker()
	tr := k.train(1)
	if !tr.Demand.Published {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, k.st.SetModelStatus(ctx, tr.Demand.Candidate, store.StatusChampion))
		cancel()
	}
	// 4-s live bins stand for the model's 1-s bins (a trace clock, as in a
	// replay), so the watch's and the loops' bins are wide enough for the
	// grace the router's batches get (0.8 s).
	start := time.Now().Truncate(bin).Add(bin)
	pol := workflows.DefaultPolicy()
	pol.DryRun, pol.Threshold = true, 0.5
	for _, a := range apps {
		k.startLoopInput(workflows.LoopInput{App: a, Bin: bin, Policy: pol, Router: true, Seeded: true,
			Profile: activities.AppProfile{App: a, MemoryMB: 16, DiskMB: 4},
			Clock:   &workflows.TraceClock{RealStart: start, TraceStart: start, TraceBin: time.Second}})
	}
	k.waitFor("both loops' first decision", 3*bin, func() bool {
		return k.status(apps[0]).Stats.Wakes >= 1 && k.status(apps[1]).Stats.Wakes >= 1
	})
	first := k.status(apps[0])
	require.True(t, first.Router)
	require.False(t, first.Holding, "a rare application holds nothing ahead: %s", first.LastDecision)
	require.Len(t, first.Recent, 1440, "its history came from the mirror")

	// The router reports three requests of the cold application in the bin
	// now open, as that bin ends.
	open := time.Now().Truncate(bin)
	time.Sleep(time.Until(open.Add(bin).Add(100 * time.Millisecond)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	require.NoError(t, k.st.RecordArrivals(ctx, store.ArrivalBatch{Router: "test-router", Batch: "1", Rows: []store.Arrival{{App: apps[0], Bin: open, Requests: 3}}}))
	cancel()
	k.waitFor("the watch to wake the cold loop", 3*bin, func() bool { return k.status(apps[0]).Stats.Wakes >= 2 })
	cold, quiet := k.status(apps[0]), k.status(apps[1])
	require.Equal(t, 1, cold.Stats.Woken, "woken once, by the watch")
	require.Equal(t, 3.0, cold.Recent[len(cold.Recent)-1], "the requests read from the mirror, in their bin")
	d := cold.Stats.Decisions
	require.Equal(t, 1, d[2]+d[3], "after a request it held the instance that served it: keep or release: %v", d)
	require.Equal(t, 1, quiet.Stats.Wakes, "nothing arrived: it sleeps on")
	require.Contains(t, quiet.WakeReason, "bound on the sleep")
	stats := k.running.watch.Stats()
	require.Equal(t, int64(1), stats.Cold)
	require.Zero(t, stats.Failed)

	if dir := os.Getenv("FOREWARM_RECORD_HISTORIES"); dir != "" {
		k.stopLoop(apps[0])
		k.recordHistories(dir, map[string]string{"router-loop.json": workflows.LoopWorkflowID(apps[0])})
	}
}
