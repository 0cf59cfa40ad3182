package keda

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// TestPseudoDriverThroughTheActivities runs a lease's life on the KEDA
// pseudo host through the real activities, KEDA asking over real gRPC.
func TestPseudoDriverThroughTheActivities(t *testing.T) {
	reg := NewRegistry(nil)
	c := startScaler(t, reg)
	clients := &Clients{Reg: reg}
	rec := &events{}
	h := &activities.Hosts{Directory: Directory{}, Clients: clients, Recorder: rec}
	ctx := context.Background()
	cand := wire.HostCandidate{Host: HostID, URL: HostURL}

	_, err := h.Reserve(ctx, wire.ReserveInput{LeaseID: "a.1", App: "a", Candidate: cand, TTL: time.Hour})
	require.NoError(t, err)

	// Nobody asked: the shadow is refused, the reason recorded.
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	sr, err := h.Shadow(sctx, wire.ShadowInput{LeaseID: "a.1", App: "a", Host: HostID, HostURL: HostURL, MaxMS: 500})
	cancel()
	require.NoError(t, err)
	require.False(t, sr.OK)
	require.Contains(t, sr.Reason, "KEDA has not asked the scaler about a")
	require.Equal(t, records.EventFailed, rec.last().Event)

	// KEDA polls while the shadow waits: it passes, with the wait.
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = c.IsActive(context.Background(), ref("a"))
	}()
	sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	sr, err = h.Shadow(sctx, wire.ShadowInput{LeaseID: "a.1", App: "a", Host: HostID, HostURL: HostURL, MaxMS: 500})
	cancel()
	require.NoError(t, err)
	require.True(t, sr.OK, sr.Reason)
	require.GreaterOrEqual(t, sr.ShadowMS, 40.0)
	t.Logf("shadow waited %.1f ms for KEDA's poll", sr.ShadowMS)

	er, err := h.Extend(ctx, wire.ExtendInput{LeaseID: "a.1", App: "a", Host: HostID, HostURL: HostURL, TTL: 2 * time.Hour})
	require.NoError(t, err)
	require.True(t, er.Extended)
	require.Equal(t, 1, reg.State("a").Live)

	_, err = h.Serve(ctx, wire.ServeInput{HostServing: wire.HostServing{RequestID: "r1", App: "a"}, Host: HostID, HostURL: HostURL})
	require.ErrorContains(t, err, "through the cluster")

	rel, err := h.Release(ctx, wire.ReleaseInput{LeaseID: "a.1", App: "a", Host: HostID, HostURL: HostURL})
	require.NoError(t, err)
	require.True(t, rel.WasHeld)
	require.Equal(t, records.EventReleased, rec.last().Event)
	act, err := c.IsActive(ctx, ref("a"))
	require.NoError(t, err)
	require.False(t, act.Result)

	// A lease that lapsed: the extension finds it gone, the release
	// records it as expired.
	_, err = h.Reserve(ctx, wire.ReserveInput{LeaseID: "a.2", App: "a", Candidate: cand, TTL: 20 * time.Millisecond})
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond)
	er, err = h.Extend(ctx, wire.ExtendInput{LeaseID: "a.2", App: "a", Host: HostID, HostURL: HostURL, TTL: time.Hour})
	require.NoError(t, err)
	require.True(t, er.Gone)
	require.Equal(t, records.EventExpired, rec.last().Event)

	// Any other host is refused for good.
	_, err = h.Reserve(ctx, wire.ReserveInput{LeaseID: "a.3", App: "a", Candidate: wire.HostCandidate{Host: "h1", URL: "https://h1"}, TTL: time.Hour})
	require.ErrorContains(t, err, "not the KEDA pseudo host")
}

// TestFeedFollowsAnotherDriversLeases wraps a host driver and checks that
// its successful calls, and only those, move the windows.
func TestFeedFollowsAnotherDriversLeases(t *testing.T) {
	reg := NewRegistry(nil)
	inner := &Clients{Reg: NewRegistry(nil)} // any driver: here the pseudo one, on a registry of its own
	f := &Feed{Next: inner, Reg: reg}
	c := f.For(HostID, HostURL)
	ctx := context.Background()

	_, err := c.Reserve(ctx, activities.HostReservation{LeaseID: "a.1", App: "a", TTL: time.Hour})
	require.NoError(t, err)
	_, err = c.Reserve(ctx, activities.HostReservation{LeaseID: "a.2", App: "a", TTL: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 2, reg.State("a").Live)

	_, err = c.Extend(ctx, "a.1", "a", 2*time.Hour)
	require.NoError(t, err)
	w := reg.State("a")
	require.Equal(t, 2, w.Live)

	_, err = c.Release(ctx, "a.1")
	require.NoError(t, err)
	require.Equal(t, 1, reg.State("a").Live, "the release closes its own lease's window")
	_, err = reg.Close("a.1")
	require.ErrorIs(t, err, ErrUnknownLease)

	// A refused reserve opens nothing; a lease gone on the host closes.
	bad := f.For("h1", "https://h1")
	_, err = bad.Reserve(ctx, activities.HostReservation{LeaseID: "b.1", App: "b", TTL: time.Hour})
	require.True(t, f.Permanent(err))
	require.Equal(t, 0, reg.State("b").Live)
	_, _ = inner.Reg.Close("a.2") // the host lost it
	_, err = c.Extend(ctx, "a.2", "a", time.Hour)
	require.True(t, f.NotFound(err))
	require.Equal(t, 0, reg.State("a").Live)
}

// events keeps the preparation events recorded.
type events struct{ rows []records.PreparationEvent }

func (e *events) last() records.PreparationEvent { return e.rows[len(e.rows)-1] }
func (e *events) RecordPreparationEvents(_ context.Context, rows []records.PreparationEvent) error {
	e.rows = append(e.rows, rows...)
	return nil
}
func (e *events) RecordPredictions(context.Context, []records.Prediction) error { return nil }
func (e *events) RecordRequests(context.Context, []records.Request) error       { return nil }
func (e *events) RecordAdjustments(context.Context, []records.Adjustment) error { return nil }
