package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/store"
)

// ModelSource is the part of the store's model registry the model adapters
// read: the champion of a kind (the most recently promoted) and a version's
// bytes.
type ModelSource interface {
	ChampionVersion(ctx context.Context, kind string) (string, error)
	Model(ctx context.Context, version string) (store.ModelRecord, error)
}

// Registry adapts the registry and package demand to
// activities.ModelRegistry.
type Registry struct {
	Src     ModelSource
	UseORT  bool               // run the model in ONNX Runtime (false: the pure-Go forward pass)
	Metrics *telemetry.Metrics // nil: nothing counted
}

// ChampionVersion is the demand champion's version, or
// activities.ErrNoChampion.
func (r *Registry) ChampionVersion(ctx context.Context) (string, error) {
	version, err := r.Src.ChampionVersion(ctx, models.KindDemand)
	if errors.Is(err, store.ErrNoModel) {
		return "", activities.ErrNoChampion
	}
	if err != nil {
		return "", err
	}
	r.Metrics.Champion(models.KindDemand, version)
	return version, nil
}

// LoadDemand loads one demand model version.
func (r *Registry) LoadDemand(ctx context.Context, version string) (activities.DemandModel, error) {
	rec, err := r.Src.Model(ctx, version)
	if err != nil {
		return nil, err
	}
	m, err := demand.Load(rec.ONNX, rec.Meta, r.UseORT)
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

// AffinityScorer scores hosts with the affinity champion from the registry
// (asked at most every CheckEvery), or with the heuristic
// (affinity.Default) until one is published or while it cannot be loaded.
type AffinityScorer struct {
	Src        ModelSource
	UseORT     bool
	CheckEvery time.Duration
	Log        interface{ Warn(string, ...any) }
	Metrics    *telemetry.Metrics

	mu       sync.Mutex // guards the fields below; never held across I/O
	model    affinity.Model
	checked  time.Time
	checking bool // one caller asks the registry; the others score with the model in hand
}

func (a *AffinityScorer) current(ctx context.Context) affinity.Model {
	a.mu.Lock()
	if a.model == nil {
		a.model = affinity.Default()
	}
	m := a.model
	due := !a.checking && time.Since(a.checked) >= a.CheckEvery
	if due {
		a.checking, a.checked = true, time.Now()
	}
	a.mu.Unlock()
	if !due {
		return m
	}
	next := a.check(ctx, m)
	a.mu.Lock()
	a.model, a.checking = next, false
	a.mu.Unlock()
	return next
}

// check asks the registry for the affinity champion and loads it when it
// is not the model in hand; on any failure it keeps m.
func (a *AffinityScorer) check(ctx context.Context, m affinity.Model) affinity.Model {
	version, err := a.Src.ChampionVersion(ctx, models.KindAffinity)
	if errors.Is(err, store.ErrNoModel) {
		return m
	}
	if err != nil {
		a.Log.Warn("model registry unreachable; keeping the affinity model", "version", m.Version(), "err", err)
		return m
	}
	if version == m.Version() {
		return m
	}
	rec, err := a.Src.Model(ctx, version)
	if err == nil {
		var loaded affinity.Model
		if loaded, err = affinity.Load(rec.ONNX, rec.Meta, a.UseORT); err == nil {
			a.Metrics.Champion(models.KindAffinity, loaded.Version())
			return loaded
		}
	}
	a.Log.Warn("affinity champion fails to load; keeping the previous scorer", "version", version, "kept", m.Version(), "err", err)
	return m
}

// Score scores each host for the application (activities.AffinityScorer).
func (a *AffinityScorer) Score(ctx context.Context, app wire.AppProfile, hosts []activities.HostInfo) ([]float64, string, error) {
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
