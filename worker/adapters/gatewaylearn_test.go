package adapters

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/worker/resident"
)

type liveHosts []activities.HostInfo

func (h liveHosts) LiveHosts(context.Context) ([]activities.HostInfo, error) { return h, nil }

// hostScore scores each host its Speed.
type hostScore struct{}

func (hostScore) Score(_ context.Context, _ wire.AppProfile, hs []activities.HostInfo) ([]float64, string, error) {
	out := make([]float64, len(hs))
	for i, h := range hs {
		out[i] = h.Speed
	}
	return out, "speed", nil
}

// On the real store the gateway learner moves the adjustments from the
// gateway's rows, and a learner that starts again (a worker restart)
// learns from none of them twice; a pass recorded but never written is
// finished from its record.
func TestGatewayLearnerOnTheStore(t *testing.T) {
	st := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now().UTC()
	t0 := now.Add(-10 * time.Minute)
	var rows []store.GatewayRequest
	for i, r := range []struct {
		host, outcome string
		ms            float64
	}{{"h1", records.GatewayWarm, 10}, {"h1", records.GatewayCold, 10}, {"h2", records.GatewayWarm, 10}, {"h2", records.GatewayFailed, 0}, {"", records.GatewayFailed, 0}} {
		rows = append(rows, store.GatewayRequest{Time: t0.Add(time.Duration(i) * time.Second), RequestID: "r" + string(rune('0'+i)), App: "a",
			Host: r.host, Outcome: r.outcome, Method: "GET", Status: 200, AppMS: r.ms, StartMS: 5})
	}
	require.NoError(t, st.RecordGatewayRequests(ctx, rows))
	dir := liveHosts{{ID: "h1", Speed: 0.5}, {ID: "h2", Speed: 1}}
	learner := func() *resident.GatewayLearner {
		return &resident.GatewayLearner{Store: GatewayLearnStore{st}, Directory: dir, Affinity: hostScore{}}
	}
	res, err := learner().Pass(ctx, now)
	require.NoError(t, err)
	require.Equal(t, 5, res.Rows)
	require.Equal(t, 4, res.Learned)
	require.Equal(t, 3, res.Adjustments) // h1 twice (1 vs 0.5, then 0.75); h2 once (its failure, 0 vs 1)
	adj, err := st.Adjustments(ctx)
	require.NoError(t, err)
	require.InDeltaMapValues(t, map[[2]string]float64{{"a", "h1"}: 0.375, {"a", "h2"}: -0.5}, adj, 1e-9)

	// A restarted learner finds nothing new; the rows are not learned again.
	res, err = learner().Pass(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 0, res.Rows)
	require.Equal(t, 3, adjustmentRows(t, st))

	// A pass recorded but not written (the worker stopped in between):
	// the next learner writes it as recorded, once.
	last, ok, err := st.LastAdjustmentPass(ctx, resident.GatewayLearnerName)
	require.NoError(t, err)
	require.True(t, ok)
	at := last.At.Add(time.Minute)
	stopped := records.AdjustmentPass{Learner: resident.GatewayLearnerName, From: last.To, To: last.To.Add(time.Second), At: at, Rows: 1,
		Adjustments: []records.Adjustment{{Time: at, App: "a", Host: "h1", NewAdjustment: 0.1, Reason: "recorded, never written"}}}
	require.NoError(t, st.RecordAdjustmentPass(ctx, stopped))
	res, err = learner().Pass(ctx, now.Add(2*time.Second))
	require.NoError(t, err)
	require.Equal(t, 1, res.Finished)
	res, err = learner().Pass(ctx, now.Add(3*time.Second))
	require.NoError(t, err)
	require.Equal(t, 0, res.Finished)
	require.Equal(t, 4, adjustmentRows(t, st))
	adj, err = st.Adjustments(ctx)
	require.NoError(t, err)
	require.InDelta(t, 0.1, adj[[2]string{"a", "h1"}], 1e-9)
}

func adjustmentRows(t *testing.T, st *store.Store) int {
	t.Helper()
	var n uint64
	require.NoError(t, st.Conn().QueryRow(context.Background(), `SELECT count() FROM adjustments`).Scan(&n))
	return int(n)
}
