// Package affinitydata builds the affinity model's training data from the
// store: every served request (the request workflow's rows and the
// gateway's, converted to one input, Served) joined with its host's characteristics and
// the host's metrics at that moment. It keeps package models free of the
// store (and so of ClickHouse).
package affinitydata

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/forewarm/forewarm/models/affinity"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

// Source is the part of the store the join reads.
type Source interface {
	Requests(ctx context.Context, from, to time.Time) ([]store.Request, error)
	GatewayRequests(ctx context.Context, from, to time.Time) ([]store.GatewayRequest, error)
	AppProfiles(ctx context.Context) ([]store.AppProfile, error)
	Hosts(ctx context.Context, seenSince time.Time) ([]store.Host, error)
	HostMetricsRange(ctx context.Context, from, to time.Time) ([]store.HostMetrics, error)
}

// Samples reads the requests of [from, to), both the request workflow's
// and the gateway's, and returns training samples in time order (the last
// ones serve as the held-out set).
func Samples(ctx context.Context, src Source, from, to time.Time) ([]affinity.Sample, error) {
	reqs, err := src.Requests(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("read requests: %w", err)
	}
	gw, err := src.GatewayRequests(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("read gateway requests: %w", err)
	}
	served := FromRequests(reqs)
	if len(gw) > 0 {
		profiles, err := src.AppProfiles(ctx)
		if err != nil {
			return nil, fmt.Errorf("read app profiles: %w", err)
		}
		served = append(served, FromGateway(gw, profiles)...)
	}
	hosts, err := src.Hosts(ctx, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	// Metrics from a little before the first request, so it has a sample.
	ms, err := src.HostMetricsRange(ctx, from.Add(-5*time.Minute), to)
	if err != nil {
		return nil, fmt.Errorf("read host metrics: %w", err)
	}
	return affinity.Samples(Join(served, hosts, ms)), nil
}

// Served is one request as the join takes it, whichever path served it:
// the application's profile as the model is asked with it, the host, and
// how the host did.
type Served struct {
	Time       time.Time
	App, Host  string
	VolumeType string
	SizeMB     float64 // the memory the application needs (not the request's bytes)
	ReadRatio  float64
	LatencyMS  float64 // the work's time on the host, without a cold start's
	Failed     bool    // the host failed the request
}

// FromRequests converts the request workflow's rows. Every recorded
// request was served (a request no host could serve is not recorded), so
// none counts as failed; a row without a work time gives its latency.
func FromRequests(reqs []store.Request) []Served {
	out := make([]Served, len(reqs))
	for i, r := range reqs {
		lat := r.WorkMS
		if lat <= 0 {
			lat = r.LatencyMS
		}
		out[i] = Served{Time: r.Time, App: r.App, Host: r.Host, VolumeType: r.VolumeType, SizeMB: r.SizeMB, ReadRatio: r.ReadRatio, LatencyMS: lat}
	}
	return out
}

// FromGateway converts the gateway's rows. A gateway row carries no
// profile, so each takes its application's (profiles), as the model is
// asked with it when ranking: memory (trace.DefaultMemoryMB when unknown),
// read ratio, volume type. The latency is app_ms, the instance's own time:
// warm, cold and cold-joined requests compare alike, the start a cold one
// waited for measures warmth, not the host. A failed request (no answer
// from its instance) failed on its host; one without a host (none could
// start the application) teaches nothing of a host and is left out.
func FromGateway(rows []store.GatewayRequest, profiles []store.AppProfile) []Served {
	byApp := make(map[string]store.AppProfile, len(profiles))
	for _, p := range profiles {
		byApp[p.ID] = p
	}
	out := make([]Served, 0, len(rows))
	for _, r := range rows {
		if r.Host == "" {
			continue
		}
		p, ok := byApp[r.App]
		if !ok {
			p.ReadRatio = trace.DefaultReadRatio
		}
		if p.MemoryMB <= 0 {
			p.MemoryMB = trace.DefaultMemoryMB
		}
		out = append(out, Served{Time: r.Time, App: r.App, Host: r.Host, VolumeType: p.VolumeType, SizeMB: p.MemoryMB, ReadRatio: p.ReadRatio,
			LatencyMS: r.AppMS, Failed: r.Outcome == records.GatewayFailed})
	}
	return out
}

// metricsWindow: a host metric sample older than this says nothing about a request.
const metricsWindow = 5 * time.Minute

// Join pairs each request that ran on a known host with that host and its
// latest metrics sample at or before the request (none older than five
// minutes: then the metrics are left zero). Requests on unknown hosts, or
// without a host, are skipped. The app's rate is its requests per minute
// over the span of reqs. Output is in time order.
func Join(reqs []Served, hosts []store.Host, metrics []store.HostMetrics) []affinity.Observation {
	byHost := map[string]store.Host{}
	for _, h := range hosts {
		byHost[h.ID] = h
	}
	series := map[string][]store.HostMetrics{}
	for _, m := range metrics {
		series[m.HostID] = append(series[m.HostID], m)
	}
	for _, s := range series {
		sort.Slice(s, func(i, j int) bool { return s[i].Time.Before(s[j].Time) })
	}
	reqs = append([]Served(nil), reqs...)
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].Time.Before(reqs[j].Time) })
	rate := map[string]float64{}
	if len(reqs) > 0 {
		minutes := max(reqs[len(reqs)-1].Time.Sub(reqs[0].Time).Minutes(), 1)
		for _, r := range reqs {
			rate[r.App] += 1 / minutes
		}
	}
	var out []affinity.Observation
	for _, r := range reqs {
		h, ok := byHost[r.Host]
		if !ok {
			continue
		}
		in := affinity.Input{VolumeType: r.VolumeType, SizeMB: r.SizeMB, ReadRatio: r.ReadRatio, Rate: rate[r.App],
			MemoryMB: float64(h.MemoryMB), DiskMB: float64(h.DiskMB), CPUMilli: float64(h.CPUMilli), Speed: h.Speed}
		s := series[r.Host]
		i := sort.Search(len(s), func(i int) bool { return s[i].Time.After(r.Time) }) - 1
		if i >= 0 && r.Time.Sub(s[i].Time) <= metricsWindow {
			m := s[i]
			in.CPUUtil, in.MemPressure, in.IOLatencyMS = clamp01(m.CPUUtil), clamp01(m.MemPressure), max(m.IOLatencyMS, 0)
			in.FreeMemMB = m.MemAvailMB
			if in.FreeMemMB <= 0 {
				in.FreeMemMB = float64(h.MemoryMB) - m.ReservedMemMB
			}
			in.FreeMemMB = max(in.FreeMemMB, 0)
		}
		out = append(out, affinity.Observation{App: r.App, Input: in, LatencyMS: r.LatencyMS, Failed: r.Failed})
	}
	return out
}

func clamp01(x float64) float64 { return min(1, max(0, x)) }
