package adapters

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

// fakeStore is the store as the adapter sees it, in memory.
type fakeStore struct {
	profiles    []store.AppProfile
	adjustments map[[2]string]float64
	hosts       []store.Host
	metrics     map[string]store.HostMetrics
	recorded    map[string]bool
	requests    []records.Request
	fail        error
	seenSince   time.Time
}

func (f *fakeStore) RecentActivity(context.Context, []string, time.Time, int, time.Duration) (map[string][]float64, error) {
	return map[string][]float64{"a": {1}}, f.fail
}
func (f *fakeStore) AppProfiles(context.Context) ([]store.AppProfile, error) {
	return f.profiles, f.fail
}
func (f *fakeStore) Adjustments(context.Context) (map[[2]string]float64, error) {
	return f.adjustments, f.fail
}
func (f *fakeStore) RecordPredictions(context.Context, []records.Prediction) error { return f.fail }
func (f *fakeStore) RecordPreparationEvents(context.Context, []records.PreparationEvent) error {
	return f.fail
}
func (f *fakeStore) RecordRequests(_ context.Context, rs []records.Request) error {
	if f.fail != nil {
		return f.fail
	}
	f.requests = append(f.requests, rs...)
	return nil
}
func (f *fakeStore) RecordedRequestIDs(_ context.Context, _ string, _ time.Time, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, id := range ids {
		if f.recorded[id] {
			out[id] = true
		}
	}
	return out, f.fail
}
func (f *fakeStore) RecordAdjustments(context.Context, []records.Adjustment) error { return f.fail }
func (f *fakeStore) Hosts(_ context.Context, since time.Time) ([]store.Host, error) {
	f.seenSince = since
	return f.hosts, f.fail
}
func (f *fakeStore) LatestHostMetrics(context.Context) (map[string]store.HostMetrics, error) {
	return f.metrics, f.fail
}

func TestAdapterStoreProfilesAdjustmentsAndHosts(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{
		profiles:    []store.AppProfile{{ID: "a", MemoryMB: 400, ReadRatio: 0.2, VolumeType: "ssd"}, {ID: "b"}},
		adjustments: map[[2]string]float64{{"a", "h1"}: 0.1, {"b", "h1"}: -0.2, {"a", "h2"}: -0.3},
		hosts:       []store.Host{{ID: "h1", URL: "u1", MemoryMB: 1000, Speed: 1}, {ID: "h2", URL: "u2", MemoryMB: 2000}},
		metrics:     map[string]store.HostMetrics{"h1": {MemAvailMB: 700, CPUUtil: 0.5}, "h2": {ReservedMemMB: 500}},
		recorded:    map[string]bool{"r-old": true},
	}
	d := &Store{St: f}

	p, known, err := d.AppProfile(ctx, "a")
	require.NoError(t, err)
	require.True(t, known)
	require.Equal(t, wire.AppProfile{App: "a", MemoryMB: 400, DiskMB: 100, ReadRatio: 0.2, VolumeType: "ssd"}, p)
	p, _, _ = d.AppProfile(ctx, "b")
	require.Equal(t, 170.0, p.MemoryMB, "unknown memory: the default (wire.AppProfile.WithDefaults)")
	p, known, err = d.AppProfile(ctx, "zz")
	require.NoError(t, err)
	require.False(t, known)
	require.Equal(t, "zz", p.App)

	adj, err := d.Adjustments(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"h1": 0.1, "h2": -0.3}, adj, "only the app's own pairs")

	before := time.Now()
	hs, err := d.LiveHosts(ctx)
	require.NoError(t, err)
	require.WithinDuration(t, before.Add(-HostSeen), f.seenSince, time.Second)
	require.Len(t, hs, 2)
	require.Equal(t, 700.0, hs[0].FreeMemMB, "the host's own figure of available memory")
	require.Equal(t, 0.5, hs[0].CPUUtil)
	require.Equal(t, 1500.0, hs[1].FreeMemMB, "without it: capacity less what is reserved")

	done, err := d.RecordedRequests(ctx, []records.Request{{RequestID: "r-old", App: "a"}, {RequestID: "r-new", App: "a"}})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"r-old": true, "r-new": false}, done)
	require.NoError(t, d.RecordRequests(ctx, []records.Request{{RequestID: "r-new", App: "a", Outcome: records.OutcomeWarm, Warm: true}}))
	require.Len(t, f.requests, 1)
}

func TestAdapterStoreReturnsEveryWriteError(t *testing.T) {
	ctx := context.Background()
	down := errors.New("clickhouse down")
	d := &Store{St: &fakeStore{fail: down}}
	require.ErrorIs(t, d.RecordPredictions(ctx, []records.Prediction{{App: "a"}}), down)
	require.ErrorIs(t, d.RecordPreparationEvents(ctx, []records.PreparationEvent{{App: "a", Event: records.EventReserved}}), down)
	require.ErrorIs(t, d.RecordRequests(ctx, []records.Request{{App: "a"}}), down)
	require.ErrorIs(t, d.RecordAdjustments(ctx, []records.Adjustment{{App: "a"}}), down)
	_, err := d.LiveHosts(ctx)
	require.ErrorIs(t, err, down)
}

// fakeModels is a registry with one champion per kind.
type fakeModels struct {
	champion map[string]string
	records  map[string]store.ModelRecord
	err      error
	asked    int
}

func (f *fakeModels) ChampionVersion(_ context.Context, kind string) (string, error) {
	f.asked++
	if f.err != nil {
		return "", f.err
	}
	v, ok := f.champion[kind]
	if !ok {
		return "", store.ErrNoModel
	}
	return v, nil
}
func (f *fakeModels) Model(_ context.Context, version string) (store.ModelRecord, error) {
	r, ok := f.records[version]
	if !ok {
		return r, store.ErrNoModel
	}
	return r, nil
}

func TestAdapterRegistryChampion(t *testing.T) {
	ctx := context.Background()
	r := &Registry{Src: &fakeModels{champion: map[string]string{models.KindAffinity: "a-1"}}}
	_, err := r.ChampionVersion(ctx)
	require.ErrorIs(t, err, activities.ErrNoChampion, "an affinity champion is no demand champion")
	r.Src = &fakeModels{champion: map[string]string{models.KindDemand: "d-2"}}
	v, err := r.ChampionVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, "d-2", v)
	r.Src = &fakeModels{err: errors.New("connection refused")}
	_, err = r.ChampionVersion(ctx)
	require.ErrorContains(t, err, "connection refused")
	r.Src = &fakeModels{records: map[string]store.ModelRecord{"bad": {Version: "bad", ONNX: []byte("not onnx")}}}
	_, err = r.LoadDemand(ctx, "bad")
	require.ErrorIs(t, err, models.ErrIncompatible)
}

// The scorer uses the heuristic until an affinity champion exists, then
// the champion (asked at most every CheckEvery), and keeps what it has
// when the new champion fails to load.
func TestAdapterAffinityScorerFollowsTheChampion(t *testing.T) {
	ctx := context.Background()
	res, err := affinity.Train(ctx, affinity.SynthSamples(400, 1), affinity.TrainOptions{Epochs: 3, Seed: 1, Version: "aff-1"})
	require.NoError(t, err)
	onnx, err := res.ONNX()
	require.NoError(t, err)
	src := &fakeModels{champion: map[string]string{}, records: map[string]store.ModelRecord{
		"aff-1":  {Version: "aff-1", Kind: models.KindAffinity, ONNX: onnx, Meta: res.Meta()},
		"broken": {Version: "broken", Kind: models.KindAffinity, ONNX: []byte("x")},
	}}
	var warned warnings
	a := &AffinityScorer{Src: src, Log: &warned}
	app := wire.AppProfile{App: "a", MemoryMB: 64, VolumeType: "ssd"}
	hosts := []activities.HostInfo{{ID: "h1", MemoryMB: 4096, Speed: 1}}
	score := func() string {
		t.Helper()
		s, v, err := a.Score(ctx, app, hosts)
		require.NoError(t, err)
		require.Len(t, s, 1)
		return v
	}
	require.Equal(t, affinity.Default().Version(), score(), "no champion: the heuristic")
	src.champion[models.KindAffinity] = "aff-1"
	require.Equal(t, "aff-1", score())
	src.champion[models.KindAffinity] = "broken"
	require.Equal(t, "aff-1", score(), "a champion that fails to load leaves the one in hand")
	warned.mu.Lock()
	require.Contains(t, warned.msgs, "affinity champion fails to load; keeping the previous scorer")
	warned.mu.Unlock()

	a.CheckEvery = time.Hour
	asked := src.asked
	score()
	score()
	require.LessOrEqual(t, src.asked-asked, 1, "the registry is asked at most every CheckEvery")
}
