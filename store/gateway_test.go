package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// The gateway's requests come back as written, in time order, and stay
// out of the activity (their arrivals count through the router batches).
func TestGatewayRequestsRoundTripOutsideTheActivity(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	rows := []store.GatewayRequest{
		{Time: t0.Add(time.Second), RequestID: "r2", App: "a", Gateway: "gw1", Host: "h1", Lease: "a.gw.1", Outcome: records.GatewayWarm,
			Method: "GET", Status: 200, BytesIn: 0, BytesOut: 120, AppMS: 1.5, TotalMS: 2},
		{Time: t0, RequestID: "r1", App: "a", Gateway: "gw1", Host: "h1", Lease: "a.gw.1", Outcome: records.GatewayCold, Retried: true,
			Method: "POST", Status: 201, BytesIn: 40, BytesOut: 10, StartMS: 350, AppMS: 3, TotalMS: 355},
	}
	require.NoError(t, s.RecordGatewayRequests(ctx, rows))
	got, err := s.GatewayRequests(ctx, t0, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []store.GatewayRequest{rows[1], rows[0]}, got)
	n, err := s.GatewayOutcomes(ctx, t0, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, uint64(2), n)
	recent, err := s.RecentActivity(ctx, []string{"a"}, t0.Add(time.Minute), 1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []float64{0}, recent["a"])

	// A row no gateway writes fails the whole batch, naming it.
	bad := append(rows[:1:1], store.GatewayRequest{App: "a", Outcome: "lukewarm"})
	require.ErrorContains(t, s.RecordGatewayRequests(ctx, bad), `gateway request 1: unknown outcome "lukewarm"`)
}

// The profiles learn from the gateway's rows: the read ratio is the share
// of reads (GET, HEAD, OPTIONS), the duration the instance's own time of
// the requests it measured, the sizes the bytes in and out. An app with
// rows of both kinds weighs each request alike; a loaded profile keeps
// what no live row measured.
func TestAppProfilesFromGatewayRequests(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	gw := func(app, method, outcome string, appMS float64, in, out int64) store.GatewayRequest {
		return store.GatewayRequest{Time: t0, App: app, Host: "h1", Outcome: outcome, Method: method, Status: 200,
			BytesIn: in, BytesOut: out, AppMS: appMS, TotalMS: appMS + 1}
	}
	require.NoError(t, s.RecordGatewayRequests(ctx, []store.GatewayRequest{
		gw("gw", "GET", records.GatewayWarm, 10, 0, 100),
		gw("gw", "head", records.GatewayCold, 20, 0, 0),
		gw("gw", "OPTIONS", records.GatewayColdJoined, 30, 0, 20),
		gw("gw", "POST", records.GatewayFailed, 0, 280, 0),
		gw("both", "PUT", records.GatewayWarm, 10, 1000, 0),
		gw("both", "DELETE", records.GatewayWarm, 10, 0, 0),
		gw("traced", "GET", records.GatewayFailed, 0, 0, 0),
	}))
	require.NoError(t, s.RecordRequests(ctx, []store.Request{
		{Time: t0, App: "both", VolumeType: "ssd", SizeMB: 100, ReadRatio: 0.5, Host: "h1", WorkMS: 40, Outcome: records.OutcomeWarm},
		{Time: t0, App: "both", VolumeType: "ssd", SizeMB: 100, ReadRatio: 0.5, Host: "h1", WorkMS: 40, Outcome: records.OutcomeWarm},
	}))
	tr := &trace.Trace{Start: t0, Bin: time.Minute, Bins: 1, Apps: []trace.App{{ID: "traced", Counts: []uint32{1}, MemoryMB: 256, ReadRatio: 0.2, DurationMS: 500}}}
	_, err := s.LoadTrace(ctx, tr, store.LoadOptions{})
	require.NoError(t, err)

	profiles, err := s.AppProfiles(ctx)
	require.NoError(t, err)
	require.Equal(t, []store.AppProfile{
		// Two of four requests of either kind read (0.5 each, then two
		// writes); the mean of 40, 40, 10, 10 ms; bytes of the gateway's two.
		{ID: "both", MemoryMB: 100, ReadRatio: 0.25, DurationMS: 25, VolumeType: "ssd", RequestBytes: 500},
		// Three reads in four; the failed request measured no time.
		{ID: "gw", ReadRatio: 0.75, DurationMS: 20, RequestBytes: 100},
		// The loaded memory and duration stay: the gateway measured neither.
		{ID: "traced", MemoryMB: 256, ReadRatio: 1, DurationMS: 500},
	}, profiles)
}
