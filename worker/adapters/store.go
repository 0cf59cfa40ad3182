// Package adapters fits the real systems to the small interfaces package
// activities declares: the ClickHouse store (history, records, the host
// directory), the model registry and ONNX Runtime (the demand champion,
// the affinity scorer), the host agents (clients through the trust
// policy), and the trainer (the model lifecycle over the store). The
// worker builds them once; each is unit-tested here over fakes of what it
// wraps.
package adapters

import (
	"context"
	"time"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

// StoreAPI is the part of *store.Store the Store adapter uses.
type StoreAPI interface {
	RecentActivity(ctx context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error)
	AppProfiles(ctx context.Context) ([]store.AppProfile, error)
	Adjustments(ctx context.Context) (map[[2]string]float64, error)
	RecordPredictions(ctx context.Context, ps []records.Prediction) error
	RecordPreparationEvents(ctx context.Context, es []records.PreparationEvent) error
	RecordRequests(ctx context.Context, rs []records.Request) error
	RecordedRequestIDs(ctx context.Context, app string, at time.Time, ids []string) (map[string]bool, error)
	RecordAdjustments(ctx context.Context, as []records.Adjustment) error
	Hosts(ctx context.Context, seenSince time.Time) ([]store.Host, error)
	LatestHostMetrics(ctx context.Context) (map[string]store.HostMetrics, error)
}

// HostSeen is how recently a host agent must have registered to be live.
const HostSeen = 30 * time.Second

// Store adapts the store to activities.HistoryReader, Recorder (with
// RequestChecker) and HostDirectory; it counts what it records in Metrics
// (nil: nothing). The worker puts resident.LastKnownHosts in front of its
// LiveHosts: one query per burst, the last list during an outage.
type Store struct {
	St      StoreAPI
	Metrics *telemetry.Metrics
}

// RecentActivity is the apps' recent requests per bin.
func (d *Store) RecentActivity(ctx context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error) {
	return d.St.RecentActivity(ctx, apps, end, bins, bin)
}

// AppProfile is what the store knows of app, with the defaults for what it
// does not (wire.AppProfile.WithDefaults); known says it knew app.
func (d *Store) AppProfile(ctx context.Context, app string) (wire.AppProfile, bool, error) {
	ps, err := d.St.AppProfiles(ctx)
	if err != nil {
		return wire.AppProfile{}, false, err
	}
	for _, p := range ps {
		if p.ID == app {
			return wire.AppProfile{App: p.ID, MemoryMB: p.MemoryMB, ReadRatio: p.ReadRatio, DurationMS: p.DurationMS, VolumeType: p.VolumeType}.WithDefaults(), true, nil
		}
	}
	return wire.AppProfile{App: app}, false, nil
}

// Adjustments are app's observed affinity adjustments by host.
func (d *Store) Adjustments(ctx context.Context, app string) (map[string]float64, error) {
	all, err := d.St.Adjustments(ctx)
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

// RecordPredictions writes predictions (a failure is counted and returned).
func (d *Store) RecordPredictions(ctx context.Context, ps []records.Prediction) error {
	if err := d.St.RecordPredictions(ctx, ps); err != nil {
		d.Metrics.StoreError("predictions")
		return err
	}
	for _, p := range ps {
		d.Metrics.Prediction(p.Decision)
	}
	return nil
}

// RecordPreparationEvents writes preparation events.
func (d *Store) RecordPreparationEvents(ctx context.Context, es []records.PreparationEvent) error {
	if err := d.St.RecordPreparationEvents(ctx, es); err != nil {
		d.Metrics.StoreError("preparation_events")
		return err
	}
	for _, e := range es {
		d.Metrics.PreparationEvent(e)
	}
	return nil
}

// RecordRequests writes served requests.
func (d *Store) RecordRequests(ctx context.Context, rs []records.Request) error {
	if err := d.St.RecordRequests(ctx, rs); err != nil {
		d.Metrics.StoreError("requests")
		return err
	}
	for _, r := range rs {
		d.Metrics.Serve(r.Warm)
	}
	return nil
}

// RecordedRequests says which rows are already in the requests table
// (activities.RequestChecker), by request ID.
func (d *Store) RecordedRequests(ctx context.Context, rs []records.Request) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range rs {
		at := r.Time
		if at.IsZero() {
			at = time.Now()
		}
		got, err := d.St.RecordedRequestIDs(ctx, r.App, at, []string{r.RequestID})
		if err != nil {
			return nil, err
		}
		out[r.RequestID] = got[r.RequestID]
	}
	return out, nil
}

// RecordAdjustments writes affinity adjustments.
func (d *Store) RecordAdjustments(ctx context.Context, as []records.Adjustment) error {
	if err := d.St.RecordAdjustments(ctx, as); err != nil {
		d.Metrics.StoreError("adjustments")
		return err
	}
	return nil
}

// LiveHosts lists the hosts seen in the last HostSeen with their latest
// metrics; a host that reports no available memory has its capacity less
// what it has reserved free.
func (d *Store) LiveHosts(ctx context.Context) ([]activities.HostInfo, error) {
	hs, err := d.St.Hosts(ctx, time.Now().Add(-HostSeen))
	if err != nil {
		return nil, err
	}
	ms, err := d.St.LatestHostMetrics(ctx)
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
	return out, nil
}
