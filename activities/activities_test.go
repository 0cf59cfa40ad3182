package activities

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

type fakeModel struct{ v string }

func (m fakeModel) Predict(in []DemandQuery) ([]float64, error) {
	if m.v == "refuses-input" {
		return nil, BadInput(errors.New("demand input 0: Bin: bin 1s does not match the model's 1m0s"))
	}
	out := make([]float64, len(in))
	for i, q := range in {
		out[i] = float64(len(q.Counts)) / 100
	}
	return out, nil
}
func (m fakeModel) Version() string  { return m.v }
func (m fakeModel) HistoryBins() int { return 64 }
func (m fakeModel) HorizonBins() int { return 5 }

type fakeRegistry struct {
	mu       sync.Mutex
	champion string
	down     bool
	loads    int
	checks   int
}

func (r *fakeRegistry) ChampionVersion(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks++
	switch {
	case r.down:
		return "", errors.New("connection refused")
	case r.champion == "":
		return "", ErrNoChampion
	}
	return r.champion, nil
}

func (r *fakeRegistry) LoadDemand(_ context.Context, v string) (DemandModel, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loads++
	if v == "corrupt" {
		return nil, errors.New("not an ONNX file")
	}
	return fakeModel{v}, nil
}

func (r *fakeRegistry) set(f func(*fakeRegistry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// predictOnce decides one bin through the Forecast activity.
func predictOnce(t *testing.T, p *Predictor) (wire.ForecastResult, error) {
	t.Helper()
	return p.Forecast(context.Background(), wire.ForecastInput{App: "a", Counts: make([]float64, 10), Next: time.Unix(1_700_000_000, 0),
		Bin: time.Second, Bins: 1, Thresholds: policy.Thresholds{Keep: 0.05, Prepare: 0.05}})
}

func TestPredictorCachesAndSwitchesChampion(t *testing.T) {
	reg := &fakeRegistry{}
	sink := &memRecorder{}
	b := batch.New(sink.RecordPredictions, time.Hour, 100, slog.Default())
	p := &Predictor{Models: reg, Predictions: b, CheckEvery: 20 * time.Millisecond}

	_, err := predictOnce(t, p)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, wire.ErrNoModel, ae.Type())
	require.True(t, ae.NonRetryable())

	reg.set(func(r *fakeRegistry) { r.champion = "v1" })
	time.Sleep(25 * time.Millisecond)
	res, err := predictOnce(t, p)
	require.NoError(t, err)
	require.Equal(t, "v1", res.ModelVersion)
	require.Equal(t, []float64{0.1}, res.Path)
	require.Equal(t, policy.Prepare, res.Action)
	require.Equal(t, 64, res.HistoryBins)
	for range 100 {
		_, err = predictOnce(t, p)
		require.NoError(t, err)
	}
	require.Equal(t, 1, reg.loads, "loaded once, not per prediction")

	// The registry goes down: the loaded model keeps serving.
	reg.set(func(r *fakeRegistry) { r.down = true })
	time.Sleep(25 * time.Millisecond)
	for range 3 {
		res, err = predictOnce(t, p)
		require.NoError(t, err)
		require.Equal(t, "v1", res.ModelVersion)
		time.Sleep(10 * time.Millisecond)
	}
	// A corrupt new champion is refused; v1 stays.
	reg.set(func(r *fakeRegistry) { r.down, r.champion = false, "corrupt" })
	time.Sleep(25 * time.Millisecond)
	_, _ = predictOnce(t, p) // triggers the background refresh
	time.Sleep(25 * time.Millisecond)
	res, err = predictOnce(t, p)
	require.NoError(t, err)
	require.Equal(t, "v1", res.ModelVersion)
	// A good new champion replaces it (in the background: no tick waits).
	reg.set(func(r *fakeRegistry) { r.champion = "v2" })
	require.Eventually(t, func() bool {
		res, err := predictOnce(t, p)
		return err == nil && res.ModelVersion == "v2"
	}, 2*time.Second, 5*time.Millisecond)

	b.Close()
	require.NotEmpty(t, sink.predictions)
	require.Equal(t, "a", sink.predictions[0].App)
}

type memRecorder struct {
	mu          sync.Mutex
	fail        bool
	predictions []records.Prediction
	events      []records.PreparationEvent
	requests    []records.Request
	adjustments []records.Adjustment
}

func (m *memRecorder) RecordPredictions(_ context.Context, rows []records.Prediction) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("clickhouse down")
	}
	m.predictions = append(m.predictions, rows...)
	return nil
}
func (m *memRecorder) RecordPreparationEvents(_ context.Context, rows []records.PreparationEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("clickhouse down")
	}
	m.events = append(m.events, rows...)
	return nil
}
func (m *memRecorder) RecordRequests(_ context.Context, rows []records.Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, rows...)
	return nil
}
func (m *memRecorder) RecordAdjustments(_ context.Context, rows []records.Adjustment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adjustments = append(m.adjustments, rows...)
	return nil
}

func TestBatcherKeepsRowsWhileTheStoreIsDown(t *testing.T) {
	rec := &memRecorder{fail: true}
	b := batch.New(rec.RecordPredictions, 10*time.Millisecond, 5, slog.Default())
	for i := range 8 {
		b.Add(records.Prediction{App: string(rune('a' + i))})
	}
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	b.Close()
	require.Len(t, rec.predictions, 5, "bounded: the oldest rows are dropped")
	require.Equal(t, "d", rec.predictions[0].App)
	require.Equal(t, "h", rec.predictions[4].App)
}

type fakeDirectory struct{ hosts []HostInfo }

func (d fakeDirectory) LiveHosts(context.Context) ([]HostInfo, error) { return d.hosts, nil }

type speedAffinity struct{}

func (speedAffinity) Score(_ context.Context, _ wire.AppProfile, hs []HostInfo) ([]float64, string, error) {
	out := make([]float64, len(hs))
	for i, h := range hs {
		out[i] = h.Speed
	}
	return out, "speed", nil
}

func TestRankHostsAppliesAdjustmentsAndExplains(t *testing.T) {
	h := &Hosts{Directory: fakeDirectory{[]HostInfo{
		{ID: "a", URL: "u-a", Speed: 0.9, FreeMemMB: 100},
		{ID: "b", URL: "u-b", Speed: 0.8, FreeMemMB: 100},
		{ID: "c", URL: "u-c", Speed: 0.8, FreeMemMB: 500},
		{ID: "d", URL: "u-d", Speed: 0.95},
	}}, Affinity: speedAffinity{}}
	res, err := h.RankHosts(context.Background(), wire.RankInput{Profile: wire.AppProfile{App: "x", MemoryMB: 100}, Adjustments: map[string]float64{"a": -0.3, "b": 0.5}, Exclude: []string{"d"}})
	require.NoError(t, err)
	var order []string
	for _, c := range res.Candidates {
		order = append(order, c.Host)
	}
	require.Equal(t, []string{"b", "c", "a"}, order, "b raised (clamped to 1), c before a by free memory after a's penalty")
	require.Equal(t, 1.0, res.Candidates[0].Score)
	require.Equal(t, 0.8, res.Candidates[0].ModelScore)
	require.Equal(t, 0.5, res.Candidates[0].Adjustment)

	require.Empty(t, res.Rejected)

	// Capacity first: a host that cannot take the application is not
	// scored at all, and the ranking says why.
	res, err = h.RankHosts(context.Background(), wire.RankInput{Profile: wire.AppProfile{App: "x", MemoryMB: 300}, Exclude: []string{"d"}})
	require.NoError(t, err)
	require.Len(t, res.Candidates, 1)
	require.Equal(t, "c", res.Candidates[0].Host)
	require.Equal(t, []wire.RejectedHost{{Host: "a", Reason: "needs 300 MB, 100 MB free"}, {Host: "b", Reason: "needs 300 MB, 100 MB free"}}, res.Rejected)

	_, err = h.RankHosts(context.Background(), wire.RankInput{Profile: wire.AppProfile{App: "x", MemoryMB: 600}, Exclude: []string{"d"}})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, wire.ErrNoHosts, ae.Type())
	require.Contains(t, err.Error(), "no live host can take x: a needs 600 MB, 100 MB free; b needs")

	_, err = (&Hosts{Directory: fakeDirectory{}, Affinity: speedAffinity{}}).RankHosts(context.Background(), wire.RankInput{})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, wire.ErrNoHosts, ae.Type())
}

type scriptedClient struct {
	shadowMS  float64
	shadowErr error
	relErr    error
	served    wire.HostServed
	released  *[]string     // lease IDs released, when set
	ended     *HostReleased // how the host says the lease ended before (then Extend finds it gone)
}

func (c scriptedClient) Reserve(context.Context, HostReservation) (time.Time, error) {
	return time.Time{}, nil
}
func (c scriptedClient) Shadow(context.Context, string, float64, float64) (float64, error) {
	return c.shadowMS, c.shadowErr
}
func (c scriptedClient) Serve(context.Context, wire.HostServing) (wire.HostServed, error) {
	return c.served, nil
}
func (c scriptedClient) Extend(context.Context, string, string, time.Duration) (time.Time, error) {
	if c.ended != nil {
		return time.Time{}, errNotFound
	}
	return time.Time{}, c.relErr
}
func (c scriptedClient) Release(_ context.Context, id string) (HostReleased, error) {
	if c.released != nil {
		*c.released = append(*c.released, id)
	}
	if c.ended != nil {
		return *c.ended, nil
	}
	return HostReleased{Released: c.relErr == nil}, c.relErr
}

var (
	errRefused  = errors.New("over capacity")
	errNotFound = errors.New("not found")
)

type scriptedClients struct{ c scriptedClient }

func (s scriptedClients) For(string, string) HostClient { return s.c }
func (s scriptedClients) Permanent(err error) bool {
	return errors.Is(err, errRefused) || errors.Is(err, errNotFound)
}
func (s scriptedClients) NotFound(err error) bool { return errors.Is(err, errNotFound) }

func TestShadowOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      scriptedClient
		ok     bool
		err    bool
		event  string
		reason string
	}{
		{"fast enough", scriptedClient{shadowMS: 10}, true, false, records.EventValidated, ""},
		{"too slow", scriptedClient{shadowMS: 900}, false, false, records.EventFailed, "more than the 100.0 ms allowed"},
		{"refused", scriptedClient{shadowErr: errRefused}, false, false, records.EventFailed, "host refused"},
		{"transient", scriptedClient{shadowErr: errors.New("connection reset")}, false, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &memRecorder{}
			h := &Hosts{Clients: scriptedClients{tc.c}, Recorder: rec}
			res, err := h.Shadow(context.Background(), wire.ShadowInput{LeaseID: "l", App: "x", Host: "h", MaxMS: 100})
			if tc.err {
				require.Error(t, err)
				require.Empty(t, rec.events)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.ok, res.OK)
			require.Contains(t, res.Reason, tc.reason)
			require.Len(t, rec.events, 1)
			require.Equal(t, tc.event, rec.events[0].Event)
		})
	}
}

func TestReleaseOfAnAlreadyGoneLease(t *testing.T) {
	rec := &memRecorder{}
	h := &Hosts{Clients: scriptedClients{scriptedClient{relErr: errNotFound}}, Recorder: rec}
	res, err := h.Release(context.Background(), wire.ReleaseInput{LeaseID: "l", App: "x", Host: "h", Event: records.EventExpired, MemoryMB: 64, HeldSeconds: 10})
	require.NoError(t, err)
	require.False(t, res.WasHeld)
	require.Equal(t, records.EventExpired, rec.events[0].Event)
	require.Equal(t, 10.0, rec.events[0].HeldSeconds)
}

// A lease whose instance failed on its host before the loop let it go:
// releasing or extending it records that end (failed, when, why, how long
// it lived), not the loop's view of it.
func TestALeaseThatFailedOnItsHostIsRecordedAsFailed(t *testing.T) {
	at := time.Date(2026, 3, 2, 12, 0, 7, 0, time.UTC)
	ended := &HostReleased{State: "failed", Note: "killed: memory limit 64 MB", EndedAt: at, HeldSeconds: 7, BusyMBs: 5}
	rec := &memRecorder{}
	h := &Hosts{Clients: scriptedClients{scriptedClient{ended: ended}}, Recorder: rec}
	res, err := h.Extend(context.Background(), wire.ExtendInput{LeaseID: "l", App: "x", Host: "h", HostURL: "http://h", TTL: time.Minute})
	require.NoError(t, err)
	require.True(t, res.Gone)
	_, err = h.Release(context.Background(), wire.ReleaseInput{LeaseID: "l", App: "x", Host: "h", Event: records.EventExpired, MemoryMB: 64, HeldSeconds: 60})
	require.NoError(t, err)
	require.Len(t, rec.events, 2)
	for _, e := range rec.events {
		require.Equal(t, records.EventFailed, e.Event)
		require.Equal(t, at, e.Time)
		require.Equal(t, 7.0, e.HeldSeconds)
		require.Equal(t, 5.0, e.BusyMBs, "the host's busy memory-time, which is not waste")
		require.Contains(t, e.Reason, "killed: memory limit 64 MB")
	}
}

// A release records the memory-time the host measured the lease busy, so
// the waste counted is the rest of its held time.
func TestReleaseRecordsTheBusyMemoryTime(t *testing.T) {
	rec := &memRecorder{}
	h := &Hosts{Clients: scriptedClients{scriptedClient{ended: &HostReleased{Released: true, State: "released", RequestsServed: 3, BusyMBs: 300}}}, Recorder: rec}
	_, err := h.Release(context.Background(), wire.ReleaseInput{LeaseID: "l", App: "x", Host: "h", MemoryMB: 100, HeldSeconds: 10})
	require.NoError(t, err)
	require.Len(t, rec.events, 1)
	e := rec.events[0]
	require.Equal(t, records.EventReleased, e.Event)
	require.Equal(t, 10.0, e.HeldSeconds)
	require.Equal(t, 300.0, e.BusyMBs)
}

type checkpointTrainer struct{ gotResume []byte }

func (c *checkpointTrainer) Describe(context.Context, wire.DescribeInput) (wire.DatasetSummary, error) {
	return wire.DatasetSummary{}, nil
}
func (c *checkpointTrainer) TrainDemand(_ context.Context, _ wire.TrainSpec, resume []byte, progress func(TrainProgress)) (wire.TrainedModel, error) {
	c.gotResume = resume
	progress(TrainProgress{Epoch: 1, Checkpoint: []byte("epoch-1")})
	progress(TrainProgress{Epoch: 2}) // within an epoch: no new checkpoint
	return wire.TrainedModel{Version: "d"}, nil
}
func (c *checkpointTrainer) TrainAffinity(context.Context, wire.TrainSpec, func(TrainProgress)) (wire.TrainedModel, error) {
	return wire.TrainedModel{}, ErrNotEnoughData
}
func (c *checkpointTrainer) Promote(context.Context, string) error { return nil }

func TestTrainDemandResumesFromHeartbeat(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetDataConverter(payload.Converter())
	tr := &checkpointTrainer{}
	env.RegisterActivity(&Training{Trainer: tr})
	env.SetHeartbeatDetails(TrainProgress{Epoch: 3, Checkpoint: []byte("epoch-3")})
	v, err := env.ExecuteActivity((&Training{}).TrainDemand, wire.TrainInput{})
	require.NoError(t, err)
	var res wire.TrainResult
	require.NoError(t, v.Get(&res))
	require.True(t, res.Resumed)
	require.Equal(t, []byte("epoch-3"), tr.gotResume)

	_, err = env.ExecuteActivity((&Training{}).TrainAffinity, wire.TrainInput{})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, wire.ErrNotEnough, ae.Type())
	require.True(t, ae.NonRetryable())
}

// A bad input the model refuses fails the prediction for good: retrying the
// same tick cannot fix a bin width the model was not trained for, so the
// top-level error (the one retry policies look at) is non-retryable.
func TestPredictBadInputIsNotRetried(t *testing.T) {
	p := &Predictor{Models: &fakeRegistry{champion: "refuses-input"}}
	_, err := predictOnce(t, p)
	ae, ok := err.(*temporal.ApplicationError)
	require.True(t, ok, "top-level error %T %v is not an application error", err, err)
	require.Equal(t, wire.ErrBadInput, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Contains(t, ae.Error(), "does not match the model's")
}

func TestExtendOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		extended bool
		gone     bool
		fails    bool
	}{
		{"extended", nil, true, false, false},
		{"gone", errNotFound, false, true, false},
		{"refused", errRefused, false, false, false},
		{"transient", errors.New("connection reset"), false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Hosts{Clients: scriptedClients{scriptedClient{relErr: tc.err}}}
			res, err := h.Extend(context.Background(), wire.ExtendInput{LeaseID: "l", App: "x", Host: "h", HostURL: "http://h", TTL: time.Minute})
			if tc.fails {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.extended, res.Extended)
			require.Equal(t, tc.gone, res.Gone)
			if !tc.extended {
				require.NotEmpty(t, res.Reason)
			}
		})
	}
	_, err := (&Hosts{}).Extend(context.Background(), wire.ExtendInput{LeaseID: "l", HostURL: "http://h"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, wire.ErrBadInput, ae.Type())
	require.Contains(t, ae.Error(), "TTL 0s")
}

// A lease handed to one request by a loop that does not keep warm
// instances is released after the request, warm or cold beside it; a loop
// that keeps it (LeaseStays) releases it itself later.
func TestServeReleasesALeaseThatDoesNotStay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     wire.ServeInput
		served wire.HostServed
		want   []string
	}{
		{"warm, one request", wire.ServeInput{HostServing: wire.HostServing{LeaseID: "l1"}}, wire.HostServed{Warm: true}, []string{"l1"}},
		{"cold beside a too small lease", wire.ServeInput{HostServing: wire.HostServing{LeaseID: "l1"}}, wire.HostServed{FallbackCode: "lease_too_small"}, []string{"l1"}},
		{"warm instance stays", wire.ServeInput{HostServing: wire.HostServing{LeaseID: "l1"}, LeaseStays: true}, wire.HostServed{Warm: true}, nil},
		{"cold, no lease", wire.ServeInput{}, wire.HostServed{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var released []string
			h := &Hosts{Clients: scriptedClients{scriptedClient{served: tc.served, released: &released}}}
			in := tc.in
			in.RequestID, in.App, in.Host, in.HostURL = "r1", "a", "h", "http://h"
			res, err := h.Serve(context.Background(), in)
			require.NoError(t, err)
			require.Equal(t, tc.served.Warm, res.Warm)
			require.Equal(t, tc.served.FallbackCode, res.FallbackCode)
			require.Equal(t, tc.want, released)
		})
	}
}

// An event the store refuses fails the activity (the retry records it),
// for every host activity that records one; with Unrecorded it is kept and
// written once the store is back, and the activity goes on.
func TestHostActivitiesFailWhenTheirEventIsNotRecorded(t *testing.T) {
	rec := &memRecorder{fail: true}
	h := &Hosts{Clients: scriptedClients{scriptedClient{shadowMS: 1, served: wire.HostServed{Kept: true}}}, Recorder: rec}
	ctx := context.Background()
	_, err := h.Reserve(ctx, wire.ReserveInput{LeaseID: "l", App: "x", Candidate: wire.HostCandidate{Host: "h", URL: "u"}, TTL: time.Minute})
	require.ErrorContains(t, err, "record the reserved event of l: clickhouse down")
	_, err = h.Shadow(ctx, wire.ShadowInput{LeaseID: "l", App: "x", Host: "h", HostURL: "u"})
	require.ErrorContains(t, err, "record the validated event of l")
	_, err = h.Release(ctx, wire.ReleaseInput{LeaseID: "l", App: "x", Host: "h", HostURL: "u"})
	require.ErrorContains(t, err, "record the released event of l")
	_, err = h.Serve(ctx, wire.ServeInput{Host: "h", HostURL: "u", HostServing: wire.HostServing{RequestID: "r", App: "x", KeepID: "k", KeepTTL: time.Minute}})
	require.ErrorContains(t, err, "record the kept event of k")
}

func TestHostActivitiesKeepTheEventsTheStoreRefused(t *testing.T) {
	rec := &memRecorder{fail: true}
	kept := batch.New(rec.RecordPreparationEvents, time.Hour, 100, slog.Default())
	h := &Hosts{Clients: scriptedClients{scriptedClient{shadowMS: 1}}, Recorder: rec, Unrecorded: kept}
	ctx := context.Background()
	_, err := h.Reserve(ctx, wire.ReserveInput{LeaseID: "l", App: "x", Candidate: wire.HostCandidate{Host: "h", URL: "u"}, TTL: time.Minute})
	require.NoError(t, err, "the store's outage does not stop the reservation")
	_, err = h.Release(ctx, wire.ReleaseInput{LeaseID: "l", App: "x", Host: "h", HostURL: "u"})
	require.NoError(t, err)
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	kept.Close()
	require.Len(t, rec.events, 2, "both events written once the store is back")
	require.Equal(t, records.EventReserved, rec.events[0].Event)
}
