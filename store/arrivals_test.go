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
	require.NoError(t, s.RecordArrivals(ctx, []store.Arrival{
		{App: "a", Bin: min(2), Requests: 3},
		{App: "b", Bin: min(0), Requests: 1},
	}))
	require.NoError(t, s.RecordArrivals(ctx, []store.Arrival{
		{App: "a", Bin: min(2), Requests: 4}, // a second batch for the same bin
		{App: "a", Bin: min(0), Requests: 1},
		{App: "a", Bin: min(5), Requests: 9}, // outside the range read
	}))
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
		require.ErrorContains(t, s.RecordArrivals(ctx, []store.Arrival{good, c.bad}), c.want)
	}
	got, err := s.BusyBins(ctx, good.Bin.Add(-time.Hour), good.Bin.Add(time.Hour), time.Minute)
	require.NoError(t, err)
	require.Empty(t, got, "a refused batch writes nothing")
	_, err = s.BusyBins(ctx, good.Bin, good.Bin.Add(time.Hour), 1500*time.Millisecond)
	require.ErrorContains(t, err, "use whole seconds")
}
