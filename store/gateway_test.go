package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
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
	recent, err := s.RecentActivity(ctx, []string{"a"}, t0.Add(time.Minute), 1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []float64{0}, recent["a"])

	// A row no gateway writes fails the whole batch, naming it.
	bad := append(rows[:1:1], store.GatewayRequest{App: "a", Outcome: "lukewarm"})
	require.ErrorContains(t, s.RecordGatewayRequests(ctx, bad), `gateway request 1: unknown outcome "lukewarm"`)
}
