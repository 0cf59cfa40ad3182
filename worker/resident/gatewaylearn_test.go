package resident

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// learnStore is the gateway learner's store in memory: passes, the
// adjustments written, the gateway's rows.
type learnStore struct {
	rows       []records.GatewayRequest
	usual      map[string]float64
	passes     []records.AdjustmentPass
	written    []records.Adjustment
	failApply  error
	profileErr error
	lagging    bool // reads as a replica that has not seen the passes yet
}

func (s *learnStore) LastAdjustmentPass(_ context.Context, learner string) (records.AdjustmentPass, bool, error) {
	if len(s.passes) == 0 || s.lagging {
		return records.AdjustmentPass{}, false, nil
	}
	return s.passes[len(s.passes)-1], true, nil
}

func (s *learnStore) RecordAdjustmentPass(_ context.Context, p records.AdjustmentPass) error {
	s.passes = append(s.passes, p)
	return nil
}

func (s *learnStore) ApplyAdjustmentPass(_ context.Context, p records.AdjustmentPass) (int, error) {
	if s.failApply != nil {
		return 0, s.failApply
	}
	n := 0
	for _, a := range p.Adjustments {
		landed := false
		for _, w := range s.written {
			landed = landed || w.Time.Equal(a.Time) && w.App == a.App && w.Host == a.Host
		}
		if !landed {
			s.written = append(s.written, a)
			n++
		}
	}
	return n, nil
}

func (s *learnStore) FirstGatewayRequests(_ context.Context, from, to time.Time, limit int) ([]records.GatewayRequest, error) {
	var out []records.GatewayRequest
	for _, r := range s.rows {
		if !r.Time.Before(from) && r.Time.Before(to) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *learnStore) GatewayUsualMS(context.Context, []string, time.Time, time.Time) (map[string]float64, error) {
	return s.usual, nil
}

func (s *learnStore) Adjustments(context.Context) (map[[2]string]float64, error) {
	out := map[[2]string]float64{}
	for _, a := range s.written {
		out[[2]string{a.App, a.Host}] = a.NewAdjustment
	}
	return out, nil
}

func (s *learnStore) Profiles(context.Context) (map[string]wire.AppProfile, error) {
	return map[string]wire.AppProfile{}, s.profileErr
}

type toldLoops map[[2]string]float64

func (t toldLoops) Adjusted(_ context.Context, app, host string, v float64, _ string) error {
	t[[2]string{app, host}] = v
	return nil
}

var learnT0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func gatewayRow(sec int, host, outcome string, appMS float64) records.GatewayRequest {
	return records.GatewayRequest{Time: learnT0.Add(time.Duration(sec) * time.Second), RequestID: "r" + strconv.Itoa(sec), App: "a",
		Host: host, Outcome: outcome, AppMS: appMS}
}

// A pass moves each pair's adjustment row by row as a served request's
// workflow would: expected is the model's score plus the adjustment so
// far, actual the row's score against the app's usual time (0 when it
// failed); a cold start does not count against the host. Rows without a
// host, on a host not live, or not measured teach nothing.
func TestGatewayLearnerPass(t *testing.T) {
	st := &learnStore{usual: map[string]float64{"a": 10}, rows: []records.GatewayRequest{
		gatewayRow(0, "h1", records.GatewayWarm, 10),    // 1 vs 0.5: → +0.25
		gatewayRow(1, "h1", records.GatewayCold, 10),    // 1 vs 0.75: → +0.375
		gatewayRow(2, "h1", records.GatewayWarm, 10),    // 1 vs 0.875: within tolerance
		gatewayRow(3, "h2", records.GatewayFailed, 0),   // 0 vs 0.9: → -0.45
		gatewayRow(4, "", records.GatewayFailed, 0),     // no host
		gatewayRow(5, "gone", records.GatewayWarm, 100), // not live
		gatewayRow(6, "h2", records.GatewayWarm, 0),     // not measured
	}}
	st.rows[1].StartMS = 900
	told := toldLoops{}
	l := &GatewayLearner{Store: st, Directory: fakeDirectory{hosts: []activities.HostInfo{{ID: "h1", Speed: 0.5}, {ID: "h2", Speed: 0.9}}},
		Affinity: speedAffinity{}, Loops: told}
	now := learnT0.Add(time.Hour + 1500*time.Millisecond)
	res, err := l.Pass(context.Background(), now)
	require.NoError(t, err)
	require.Equal(t, GatewayPassResult{From: now.Add(-time.Minute - time.Hour), To: now.Add(-time.Minute), Rows: 7, Learned: 4, Adjustments: 3}, res)
	require.Len(t, st.passes, 1)
	at := now.Truncate(time.Second)
	var got []float64
	for i, a := range st.written {
		require.Equal(t, at.Add(time.Duration(i)), a.Time, "adjustment %d stamped At+%d ns", i, i)
		got = append(got, a.NewAdjustment)
	}
	require.InDeltaSlice(t, []float64{0.25, 0.375, -0.45}, got, 1e-9)
	require.Equal(t, toldLoops{{"a", "h1"}: 0.375, {"a", "h2"}: -0.45}, told)

	// The next pass starts where this one ended: the same rows are not
	// learned again.
	res, err = l.Pass(context.Background(), now.Add(30*time.Second))
	require.NoError(t, err)
	require.Equal(t, 0, res.Rows)
	require.Len(t, st.written, 3)
}

// A pass recorded but not written (the worker stopped, the store refused)
// is finished by the next pass, from its record, not computed again; the
// loops hear of it.
func TestGatewayLearnerFinishesAnInterruptedPass(t *testing.T) {
	st := &learnStore{usual: map[string]float64{"a": 10}, rows: []records.GatewayRequest{gatewayRow(0, "h1", records.GatewayWarm, 10)}}
	dir := fakeDirectory{hosts: []activities.HostInfo{{ID: "h1", Speed: 0.5}}}
	st.failApply = errors.New("store down")
	l := &GatewayLearner{Store: st, Directory: dir, Affinity: speedAffinity{}}
	now := learnT0.Add(time.Hour)
	_, err := l.Pass(context.Background(), now)
	require.ErrorContains(t, err, "store down")
	require.Len(t, st.passes, 1)
	require.Empty(t, st.written)

	// A new process: the rows changed meanwhile, which must not matter.
	st.failApply = nil
	st.rows = append(st.rows, gatewayRow(1, "h1", records.GatewayWarm, 10))
	told := toldLoops{}
	l = &GatewayLearner{Store: st, Directory: dir, Affinity: speedAffinity{}, Loops: told}
	res, err := l.Pass(context.Background(), now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 1, res.Finished)
	require.Len(t, st.written, 1)
	require.InDelta(t, 0.25, st.written[0].NewAdjustment, 1e-9)
	require.Equal(t, toldLoops{{"a", "h1"}: 0.25}, told)
}

// A full pass ends before its last instant, whose rows may continue past
// the limit; a pass of one instant keeps it whole.
func TestTrimPass(t *testing.T) {
	rows := []records.GatewayRequest{gatewayRow(0, "h", "", 0), gatewayRow(1, "h", "", 0), gatewayRow(1, "h", "", 0)}
	kept, to := trimPass(rows)
	require.Len(t, kept, 1)
	require.Equal(t, learnT0.Add(time.Second), to)
	kept, to = trimPass(rows[1:])
	require.Len(t, kept, 2)
	require.Equal(t, learnT0.Add(time.Second+time.Nanosecond), to)
}

func TestGatewayActual(t *testing.T) {
	for _, c := range []struct {
		r        records.GatewayRequest
		usual    float64
		actual   float64
		measured bool
	}{
		{gatewayRow(0, "h", records.GatewayWarm, 20), 10, 0.5, true},
		{gatewayRow(0, "h", records.GatewayColdJoined, 5), 10, 1, true},
		{gatewayRow(0, "h", records.GatewayFailed, 0), 10, 0, true},
		{gatewayRow(0, "", records.GatewayFailed, 0), 10, 0, false},
		{gatewayRow(0, "h", records.GatewayWarm, 0), 10, 0, false},
		{gatewayRow(0, "h", records.GatewayWarm, 10), 0, 0, false},
	} {
		a, m := gatewayActual(c.r, c.usual)
		require.Equal(t, c.actual, a, "%+v", c.r)
		require.Equal(t, c.measured, m, "%+v", c.r)
	}
}

// Read from a replica that has not seen the learner's last pass, the
// learner goes on from its own: the rows are not learned again.
func TestGatewayLearnerOutrunsALaggingReplica(t *testing.T) {
	st := &learnStore{usual: map[string]float64{"a": 10}, rows: []records.GatewayRequest{gatewayRow(0, "h1", records.GatewayWarm, 10)}}
	l := &GatewayLearner{Store: st, Directory: fakeDirectory{hosts: []activities.HostInfo{{ID: "h1", Speed: 0.5}}}, Affinity: speedAffinity{}}
	now := learnT0.Add(time.Hour)
	_, err := l.Pass(context.Background(), now)
	require.NoError(t, err)
	st.lagging = true
	res, err := l.Pass(context.Background(), now.Add(30*time.Second))
	require.NoError(t, err)
	require.Equal(t, 0, res.Rows)
	require.Len(t, st.written, 1)
}

type fakeDirectory struct{ hosts []activities.HostInfo }

func (d fakeDirectory) LiveHosts(context.Context) ([]activities.HostInfo, error) { return d.hosts, nil }

type speedAffinity struct{}

func (speedAffinity) Score(_ context.Context, _ wire.AppProfile, hs []activities.HostInfo) ([]float64, string, error) {
	out := make([]float64, len(hs))
	for i, h := range hs {
		out[i] = h.Speed
	}
	return out, "speed", nil
}
