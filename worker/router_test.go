package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/worker/resident"
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
			Profile: wire.AppProfile{App: a, MemoryMB: 16, DiskMB: 4},
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

// wakeRecorder records the loops the arrival watch wakes.
type wakeRecorder struct{ woken []string }

func (w *wakeRecorder) Wake(_ context.Context, id string, bin time.Time, _ string) error {
	w.woken = append(w.woken, id+"@"+bin.UTC().Format("15:04"))
	return nil
}

// A router's batch for a bin the worker's mirror has frozen already (a
// gateway restarted on its spool writes the bin it died in seconds after
// it ended) reaches the loops all the same, through ClickHouse and the
// reader the worker mirrors with: the next freeze counts it in its first
// bin, and the watch wakes the sleeping loop it concerns. Written twice
// (a retry), it counts once; the frozen bin stays as it was.
func TestMirrorHearsALateBatchInTheStore(t *testing.T) {
	st := storetest.New(t)
	base := time.Now().Truncate(time.Minute).Add(-30 * time.Minute)
	b := func(k int) time.Time { return base.Add(time.Duration(k) * time.Minute) }
	m := &resident.Mirror{Reader: arrivalReader{st}, Bin: time.Minute, Span: 60}
	waker := &wakeRecorder{}
	w := &resident.Watch{Mirror: m, Waker: waker, Parallel: 1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	record := func(batch, app string, bin time.Time, n uint64) {
		t.Helper()
		require.NoError(t, st.RecordArrivals(ctx, store.ArrivalBatch{Router: "gw", Batch: batch, Rows: []store.Arrival{{App: app, Bin: bin, Requests: n}}}))
	}
	require.NoError(t, w.Check(ctx, b(0)))
	w.Register(activities.Plan{WorkflowID: "predict/a", App: "a", Wake: b(0), NextWake: b(30), Bin: time.Minute,
		Keep: 0.5, Next: b(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
	require.NoError(t, w.Check(ctx, b(1)))
	require.Empty(t, waker.woken, "bin 0 frozen without a request of a")

	record("dead-run/0", "a", b(0), 4) // the spool's replay, after the freeze
	record("dead-run/0", "a", b(0), 4) // and its retry
	record("next-run/1", "b", b(1), 1) // bin 1's own batch, on time: another app's
	require.NoError(t, w.Check(ctx, b(2)))
	require.Equal(t, []string{"predict/a@" + b(2).UTC().Format("15:04")}, waker.woken, "the late batch woke the loop holding nothing")
	win, err := m.Window("a", b(2), 2)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 4}, win, "bin 0 as frozen; its late requests in bin 1")
	win, err = m.Window("b", b(2), 2)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 1}, win)

	require.NoError(t, w.Check(ctx, b(3)))
	require.NoError(t, w.Check(ctx, b(4)))
	win, err = m.Window("a", b(4), 4)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 4, 0, 0}, win, "read again, the batch counts no more")
	require.Equal(t, resident.MirrorStats{LateRequests: 4, LateBins: 1}, m.Stats())
	busy, err := st.BusyBins(ctx, b(0), b(2), time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.BusyBins{Starts: []int64{b(0).Unix()}, Counts: []uint64{4}}, busy["a"], "the store keeps the true bin")
}

func TestArrivalsLateBinsFlag(t *testing.T) {
	q := []string{"--queues", "training"} // no host agent credentials needed
	s, err := parseFlags(q)
	require.NoError(t, err)
	require.Zero(t, s.ArrivalsLate, "the mirror's default: a minute's bins, at least 2")
	s, err = parseFlags(append(q, "--arrivals-late-bins", "-1"))
	require.NoError(t, err)
	require.Equal(t, -1, s.ArrivalsLate)
	for _, bad := range [][]string{{"--arrivals-late-bins", "-2"}, {"--arrivals-span", "10", "--arrivals-late-bins", "10"}} {
		_, err = parseFlags(append(q, bad...))
		require.ErrorContains(t, err, "--arrivals-late-bins", "%v", bad)
	}
}
