package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
)

// A pass round-trips with its adjustments; applying it writes them once
// however often it is applied, and finishes one that landed in part.
func TestAdjustmentPassAppliedOnce(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	at := time.Date(2026, 4, 1, 9, 0, 7, 0, time.UTC)
	p := store.AdjustmentPass{Learner: "gateway", From: at.Add(-time.Hour), To: at.Add(-time.Minute), At: at, Rows: 3, Adjustments: []store.Adjustment{
		{Time: at, App: "a", Host: "h1", Expected: 0.5, Actual: 1, Delta: 0.5, NewAdjustment: 0.25, Reason: "r1"},
		{Time: at.Add(1), App: "a", Host: "h1", Expected: 0.75, Actual: 1, Delta: 0.25, NewAdjustment: 0.375, Reason: "r2"},
		{Time: at.Add(2), App: "b", Host: "h2", Expected: 0.9, Actual: 0, Delta: -0.9, NewAdjustment: -0.45, Reason: "r3"},
	}}
	_, ok, err := s.LastAdjustmentPass(ctx, "gateway")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.RecordAdjustmentPass(ctx, p))
	older := p
	older.To, older.At, older.Adjustments = p.From.Add(time.Minute), at.Add(-time.Hour), nil
	require.NoError(t, s.RecordAdjustmentPass(ctx, older))
	got, ok, err := s.LastAdjustmentPass(ctx, "gateway")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, p, got)

	// One of three landed before the worker stopped.
	require.NoError(t, s.RecordAdjustments(ctx, p.Adjustments[1:2]))
	for _, want := range []int{2, 0, 0} {
		n, err := s.ApplyAdjustmentPass(ctx, p)
		require.NoError(t, err)
		require.Equal(t, want, n)
	}
	var rows uint64
	require.NoError(t, s.Conn().QueryRow(ctx, `SELECT count() FROM adjustments`).Scan(&rows))
	require.Equal(t, uint64(3), rows)
	adj, err := s.Adjustments(ctx)
	require.NoError(t, err)
	require.Equal(t, map[[2]string]float64{{"a", "h1"}: 0.375, {"b", "h2"}: -0.45}, adj)

	// A pass whose stamps could not be told apart is refused, naming the field.
	bad := p
	bad.Adjustments = []store.Adjustment{p.Adjustments[1]}
	require.ErrorContains(t, s.RecordAdjustmentPass(ctx, bad), "field Adjustments[0].Time")
	bad = p
	bad.At = at.Add(time.Millisecond)
	require.ErrorContains(t, s.RecordAdjustmentPass(ctx, bad), "field At")
}

// The learner's reads: the first rows of a range, in order, and an app's
// usual time (the median of what its served requests measured).
func TestFirstGatewayRequestsAndUsualTime(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var rows []store.GatewayRequest
	for i, ms := range []float64{10, 30, 20, 0} {
		rows = append(rows, store.GatewayRequest{Time: t0.Add(time.Duration(i) * time.Second), App: "a", Host: "h1", Outcome: records.GatewayWarm, AppMS: ms})
	}
	rows = append(rows, store.GatewayRequest{Time: t0, App: "a", Host: "h1", Outcome: records.GatewayFailed, AppMS: 1000})
	require.NoError(t, s.RecordGatewayRequests(ctx, rows))
	first, err := s.FirstGatewayRequests(ctx, t0.Add(time.Second), t0.Add(time.Hour), 2)
	require.NoError(t, err)
	require.Equal(t, rows[1:3], first)
	usual, err := s.GatewayUsualMS(ctx, []string{"a", "none"}, t0, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"a": 20}, usual)
}
