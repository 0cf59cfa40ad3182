package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/forewarm/forewarm/activities"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

// The adapters below fit the real store, models and host-agent client to
// the small interfaces package activities declares.

// storeDeps adapts *store.Store to activities.HistoryReader, Recorder and
// HostDirectory.
type storeDeps struct {
	st *store.Store
	m  *telemetry.Metrics // counts what is recorded (nil: nothing)
	// hosts are cached briefly: a preparation burst across many loops
	// must not become a ClickHouse query per preparation.
	hostTTL time.Duration
	mu      sync.Mutex
	hosts   []activities.HostInfo
	hostsAt time.Time
}

func (d *storeDeps) RecentActivity(ctx context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error) {
	return d.st.RecentActivity(ctx, apps, end, bins, bin)
}

func (d *storeDeps) AppProfile(ctx context.Context, app string) (activities.AppProfile, bool, error) {
	ps, err := d.st.AppProfiles(ctx)
	if err != nil {
		return activities.AppProfile{}, false, err
	}
	for _, p := range ps {
		if p.ID == app {
			return profileFromStore(p), true, nil
		}
	}
	return activities.AppProfile{App: app}, false, nil
}

func profileFromStore(p store.AppProfile) activities.AppProfile {
	return activities.AppProfile{App: p.ID, MemoryMB: p.MemoryMB, ReadRatio: p.ReadRatio, DurationMS: p.DurationMS, VolumeType: p.VolumeType}.WithDefaults()
}

func (d *storeDeps) Adjustments(ctx context.Context, app string) (map[string]float64, error) {
	all, err := d.st.Adjustments(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for k, v := range all {
		if k[0] == app {
			out[k[1]] = v
		}
	}
	return out, nil
}

func (d *storeDeps) RecordPredictions(ctx context.Context, ps []records.Prediction) error {
	if err := d.st.RecordPredictions(ctx, ps); err != nil {
		d.m.StoreError("predictions")
		return err
	}
	for _, p := range ps {
		d.m.Prediction(p.Decision)
	}
	return nil
}

func (d *storeDeps) RecordPreparationEvents(ctx context.Context, es []records.PreparationEvent) error {
	if err := d.st.RecordPreparationEvents(ctx, es); err != nil {
		d.m.StoreError("preparation_events")
		return err
	}
	for _, e := range es {
		d.m.PreparationEvent(e.Event, e.MemoryMB, e.HeldSeconds)
	}
	return nil
}

func (d *storeDeps) RecordRequests(ctx context.Context, rs []records.Request) error {
	if err := d.st.RecordRequests(ctx, rs); err != nil {
		d.m.StoreError("requests")
		return err
	}
	for _, r := range rs {
		d.m.Serve(r.Warm)
	}
	return nil
}

func (d *storeDeps) RecordAdjustments(ctx context.Context, as []records.Adjustment) error {
	if err := d.st.RecordAdjustments(ctx, as); err != nil {
		d.m.StoreError("adjustments")
		return err
	}
	return nil
}

// LiveHosts lists hosts seen in the last 30 s with their latest metrics.
func (d *storeDeps) LiveHosts(ctx context.Context) ([]activities.HostInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hosts != nil && time.Since(d.hostsAt) < d.hostTTL {
		return d.hosts, nil
	}
	hs, err := d.st.Hosts(ctx, time.Now().Add(-30*time.Second))
	if err != nil {
		return nil, err
	}
	ms, err := d.st.LatestHostMetrics(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]activities.HostInfo, 0, len(hs))
	for _, h := range hs {
		m := ms[h.ID]
		free := m.MemAvailMB
		if free <= 0 {
			free = float64(h.MemoryMB) - m.ReservedMemMB
		}
		out = append(out, activities.HostInfo{ID: h.ID, URL: h.URL, MemoryMB: float64(h.MemoryMB), DiskMB: float64(h.DiskMB),
			CPUMilli: h.CPUMilli, Speed: h.Speed, CPUUtil: m.CPUUtil, MemPressure: m.MemPressure, IOLatencyMS: m.IOLatencyMS, FreeMemMB: free})
	}
	d.hosts, d.hostsAt = out, time.Now()
	return out, nil
}

// registry adapts the store's model registry and the models package to
// activities.ModelRegistry.
type registry struct {
	st     *store.Store
	useORT bool
	m      *telemetry.Metrics
}

func (r *registry) ChampionVersion(ctx context.Context) (string, error) {
	version, err := r.st.ChampionVersion(ctx, models.KindDemand)
	if errors.Is(err, store.ErrNoModel) {
		return "", activities.ErrNoChampion
	}
	if err != nil {
		return "", err
	}
	r.m.Champion(models.KindDemand, version)
	return version, nil
}

func (r *registry) LoadDemand(ctx context.Context, version string) (activities.DemandModel, error) {
	rec, err := r.st.Model(ctx, version)
	if err != nil {
		return nil, err
	}
	m, err := demand.Load(rec.ONNX, rec.Meta, r.useORT)
	if err != nil {
		return nil, err
	}
	return demandModel{m}, nil
}

type demandModel struct{ m demand.Model }

// Close frees an ONNX Runtime session (the pure-Go model holds none).
func (d demandModel) Close() error {
	if c, ok := d.m.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (d demandModel) Version() string  { return d.m.Version() }
func (d demandModel) HistoryBins() int { return d.m.Spec().HistoryBins() }
func (d demandModel) HorizonBins() int { return d.m.Spec().Horizon }
func (d demandModel) Predict(in []activities.DemandQuery) ([]float64, error) {
	xs := make([]demand.Input, len(in))
	for i, q := range in {
		xs[i] = demand.Input(q)
	}
	ps, err := d.m.Predict(xs)
	// A bad input (a bin width or spec the model was not trained for) fails
	// the same way on every retry: say so, so the tick does not retry it.
	var bad *models.InputError
	if errors.As(err, &bad) {
		return nil, activities.BadInput(err)
	}
	return ps, err
}

// affinityScorer scores hosts with the affinity champion from the registry
// (checked at most every checkEvery), or with affinity.Default (the
// heuristic) until one is published or when it cannot be loaded.
type affinityScorer struct {
	st         *store.Store
	useORT     bool
	checkEvery time.Duration
	log        interface{ Warn(string, ...any) }
	m          *telemetry.Metrics

	mu      sync.Mutex
	model   affinity.Model
	checked time.Time
}

func (a *affinityScorer) current(ctx context.Context) affinity.Model {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.model != nil && time.Since(a.checked) < a.checkEvery {
		return a.model
	}
	a.checked = time.Now()
	if a.model == nil {
		a.model = affinity.Default()
	}
	version, err := a.st.ChampionVersion(ctx, models.KindAffinity)
	if errors.Is(err, store.ErrNoModel) {
		return a.model
	}
	if err != nil {
		a.log.Warn("model registry unreachable; keeping the affinity model", "version", a.model.Version(), "err", err)
		return a.model
	}
	if version == a.model.Version() {
		return a.model
	}
	rec, err := a.st.Model(ctx, version)
	if err == nil {
		var m affinity.Model
		if m, err = affinity.Load(rec.ONNX, rec.Meta, a.useORT); err == nil {
			a.model = m
			a.m.Champion(models.KindAffinity, m.Version())
			return m
		}
	}
	a.log.Warn("affinity champion fails to load; keeping the previous scorer", "version", version, "kept", a.model.Version(), "err", err)
	return a.model
}

func (a *affinityScorer) Score(ctx context.Context, app activities.AppProfile, hosts []activities.HostInfo) ([]float64, string, error) {
	m := a.current(ctx)
	in := make([]affinity.Input, len(hosts))
	for i, h := range hosts {
		in[i] = affinity.Input{VolumeType: app.VolumeType, SizeMB: app.MemoryMB, ReadRatio: app.ReadRatio, Rate: app.RatePerMin,
			MemoryMB: h.MemoryMB, DiskMB: h.DiskMB, CPUMilli: float64(h.CPUMilli), Speed: h.Speed,
			CPUUtil: h.CPUUtil, MemPressure: h.MemPressure, IOLatencyMS: h.IOLatencyMS, FreeMemMB: h.FreeMemMB}
	}
	scores, err := m.Score(in)
	if err != nil {
		return nil, "", fmt.Errorf("affinity model %s: %w", m.Version(), err)
	}
	return scores, m.Version(), nil
}

// hostClients builds one agent client per host and URL through the trust
// policy (allow-listed URLs only, each host's own token) and keeps it.
type hostClients struct {
	trust *agentclient.Trust
	log   *slog.Logger
	mu    sync.Mutex
	byKey map[[2]string]activities.HostClient
}

func newHostClients(trust *agentclient.Trust, log *slog.Logger) *hostClients {
	return &hostClients{trust: trust, log: log, byKey: map[[2]string]activities.HostClient{}}
}

func (h *hostClients) For(host, url string) activities.HostClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := [2]string{host, url}
	if c, ok := h.byKey[key]; ok {
		return c
	}
	var hc activities.HostClient
	c, err := h.trust.Client(host, url)
	if err != nil {
		h.log.Warn("refusing to call a host agent", "host", host, "url", url, "err", err)
		hc = refusedClient{err}
	} else {
		hc = hostClient{c}
	}
	if len(h.byKey) > 10_000 {
		clear(h.byKey) // hosts come and go; a rebuilt client costs little
	}
	h.byKey[key] = hc
	return hc
}

func (h *hostClients) Permanent(err error) bool { return agentclient.IsPermanent(err) }
func (h *hostClients) NotFound(err error) bool {
	return errors.Is(err, agentclient.ErrNotFound) || errors.Is(err, agentclient.ErrGone)
}

type hostClient struct{ c *agentclient.Client }

func (h hostClient) Reserve(ctx context.Context, r activities.HostReservation) (time.Time, error) {
	l, err := h.c.Reserve(ctx, agentclient.ReserveRequest{PreparationID: r.LeaseID, App: r.App, MemoryMB: r.MemoryMB,
		DiskMB: r.DiskMB, CPUMilli: r.CPUMilli, TTL: r.TTL})
	return l.Expires, err
}

func (h hostClient) Shadow(ctx context.Context, leaseID string, readRatio, sampleMB float64) (float64, error) {
	r, err := h.c.Shadow(ctx, agentclient.ShadowRequest{PreparationID: leaseID, ReadRatio: readRatio, SampleMB: sampleMB})
	return r.TotalMS, err
}

func (h hostClient) Extend(ctx context.Context, leaseID, app string, ttl time.Duration) (time.Time, error) {
	l, err := h.c.Extend(ctx, leaseID, ttl, app)
	return l.Expires, err
}

func (h hostClient) Serve(ctx context.Context, s activities.HostServing) (activities.HostServed, error) {
	r, err := h.c.Serve(ctx, agentclient.ServeRequest{RequestID: s.RequestID, App: s.App, PreparationID: s.LeaseID,
		MemoryMB: s.MemoryMB, DiskMB: s.DiskMB, ReadRatio: s.ReadRatio, WorkMS: s.WorkMS, FallbackCold: s.LeaseID != "",
		KeepID: s.KeepID, KeepTTLSeconds: s.KeepTTL.Seconds(), KeepMemoryMB: s.KeepMemoryMB, KeepDiskMB: s.KeepDiskMB,
		KeepCPUMilli: s.KeepCPUMilli})
	if err != nil {
		return activities.HostServed{}, err
	}
	return activities.HostServed{Warm: r.Warm, SetupMS: r.SetupMS, WorkMS: r.WorkMS, TotalMS: r.TotalMS,
		FallbackCode: r.FallbackCode, Kept: r.Kept, KeptExpires: r.KeptExpires, KeepRefused: r.KeepRefused, Replayed: r.Replayed}, nil
}

func (h hostClient) Release(ctx context.Context, leaseID string) (activities.HostReleased, error) {
	r, err := h.c.ReleaseLease(ctx, leaseID)
	if err != nil {
		return activities.HostReleased{}, err
	}
	return activities.HostReleased{Released: r.Released, State: r.State, RequestsServed: r.RequestsServed,
		BusyMBs: r.BusyMBs, IdleMBs: r.IdleMBs, Fallbacks: r.FallbackConcurrency + r.FallbackOversize}, nil
}

// refusedClient stands for an agent the trust policy will not call: every
// call fails with the (permanent) refusal.
type refusedClient struct{ err error }

func (r refusedClient) Reserve(context.Context, activities.HostReservation) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refusedClient) Shadow(context.Context, string, float64, float64) (float64, error) {
	return 0, r.err
}
func (r refusedClient) Extend(context.Context, string, string, time.Duration) (time.Time, error) {
	return time.Time{}, r.err
}
func (r refusedClient) Serve(context.Context, activities.HostServing) (activities.HostServed, error) {
	return activities.HostServed{}, r.err
}
func (r refusedClient) Release(context.Context, string) (activities.HostReleased, error) {
	return activities.HostReleased{}, r.err
}
