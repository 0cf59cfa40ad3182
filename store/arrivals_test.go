package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
)

// A router's batches add up per bin, beside the loaded history, and come
// back sparse: busy bins only, per app, ascending.
func TestArrivalsRecordedInBatchesReadBackSparse(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	min := func(k int) time.Time { return t0.Add(time.Duration(k) * time.Minute) }
	require.NoError(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r1", Batch: "1", Rows: []store.Arrival{
		{App: "a", Bin: min(2), Requests: 3},
		{App: "b", Bin: min(0), Requests: 1},
	}}))
	require.NoError(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r1", Batch: "2", Rows: []store.Arrival{
		{App: "a", Bin: min(2), Requests: 4}, // a second batch for the same bin
		{App: "a", Bin: min(0), Requests: 1},
		{App: "a", Bin: min(5), Requests: 9}, // outside the range read
	}}))
	got, err := s.BusyBins(ctx, min(0), min(5), time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[string]store.BusyBins{
		"a": {Starts: []int64{min(0).Unix(), min(2).Unix()}, Counts: []uint64{1, 7}},
		"b": {Starts: []int64{min(0).Unix()}, Counts: []uint64{1}},
	}, got)

	// Coarser bins sum the finer ones; the recent activity sees them too.
	got, err = s.BusyBins(ctx, min(0), min(6), 3*time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.BusyBins{Starts: []int64{min(0).Unix(), min(3).Unix()}, Counts: []uint64{8, 9}}, got["a"])
	recent, err := s.RecentActivity(ctx, []string{"a"}, min(6), 6, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []float64{1, 0, 7, 0, 0, 9}, recent["a"])
}

func TestArrivalsRefuseARowNoRouterReports(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	good := store.Arrival{App: "a", Bin: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), Requests: 1}
	for _, c := range []struct {
		bad  store.Arrival
		want string
	}{
		{store.Arrival{Bin: good.Bin, Requests: 1}, "arrival 1: empty app"},
		{store.Arrival{App: "x", Bin: good.Bin}, "arrival 1 (x): zero requests"},
		{store.Arrival{App: "x", Requests: 1}, "arrival 1 (x): bin"},
	} {
		require.ErrorContains(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r", Batch: "b", Rows: []store.Arrival{good, c.bad}}), c.want)
	}
	require.ErrorContains(t, s.RecordArrivals(ctx, store.ArrivalBatch{Batch: "b", Rows: []store.Arrival{good}}), "empty router ID")
	require.ErrorContains(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r", Rows: []store.Arrival{good}}), "router r: empty batch ID")
	got, err := s.BusyBins(ctx, good.Bin.Add(-time.Hour), good.Bin.Add(time.Hour), time.Minute)
	require.NoError(t, err)
	require.Empty(t, got, "a refused batch writes nothing")
	_, err = s.BusyBins(ctx, good.Bin, good.Bin.Add(time.Hour), 1500*time.Millisecond)
	require.ErrorContains(t, err, "use whole seconds")
}

// A batch is counted once however often it is written (a router retries a
// batch whose acknowledgement it lost), and two batches are counted twice
// even with the same rows (two routers, or one router's two batches).
// Every read of the activity sees the same counts: the mirror's, the
// training's, the reports'.
func TestArrivalBatchesCountOnceEach(t *testing.T) {
	cfg := storetest.Config(t)
	ctx := ctxT(t)
	s, err := store.Open(ctx, cfg)
	require.NoError(t, err)
	defer s.Close()
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	rows := []store.Arrival{{App: "a", Bin: t0, Requests: 3}, {App: "b", Bin: t0, Requests: 1}}
	r1 := store.ArrivalBatch{Router: "r1", Batch: "17", Rows: rows}
	require.NoError(t, s.RecordArrivals(ctx, r1))
	require.NoError(t, s.RecordArrivals(ctx, r1)) // the retry after a lost acknowledgement
	busy := func() map[string]store.BusyBins {
		got, err := s.BusyBins(ctx, t0, t0.Add(time.Minute), time.Minute)
		require.NoError(t, err)
		return got
	}
	require.Equal(t, []uint64{3}, busy()["a"].Counts, "a retried batch counts once")

	// Another router's batch with the same rows, and r1's next batch: both
	// count; rows of one batch repeating an (app, bin) add up.
	require.NoError(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r2", Batch: "17", Rows: rows}))
	require.NoError(t, s.RecordArrivals(ctx, store.ArrivalBatch{Router: "r1", Batch: "18", Rows: []store.Arrival{
		{App: "a", Bin: t0, Requests: 2}, {App: "a", Bin: t0, Requests: 5}}}))
	require.Equal(t, []uint64{3 + 3 + 7}, busy()["a"].Counts)
	require.Equal(t, []uint64{2}, busy()["b"].Counts)

	// After the parts merge, too; and the other reads agree. (18.16 fails
	// an OPTIMIZE that a replica forwards to the leader: one server only.)
	if cfg.Cluster == "" {
		execSQL(t, s, "OPTIMIZE TABLE arrivals FINAL")
	}
	require.NoError(t, s.RecordArrivals(ctx, r1)) // a late retry, after the merge
	require.Equal(t, []uint64{13}, busy()["a"].Counts)
	recent, err := s.RecentActivity(ctx, []string{"a", "b"}, t0.Add(time.Minute), 1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[string][]float64{"a": {13}, "b": {2}}, recent)
	act, err := s.AppActivity(ctx, "a", t0, t0.Add(time.Minute), time.Minute)
	require.NoError(t, err)
	require.Len(t, act, 1)
	require.Equal(t, uint64(13), act[0].Requests)
	st, err := s.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(15), st.Requests)
	require.Equal(t, uint64(2), st.Apps)
}
