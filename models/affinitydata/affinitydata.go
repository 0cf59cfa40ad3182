// Package affinitydata builds the affinity model's training data from the
// store: every served request joined with its host's characteristics and
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
)

// Source is the part of the store the join reads.
type Source interface {
	Requests(ctx context.Context, from, to time.Time) ([]store.Request, error)
	Hosts(ctx context.Context, seenSince time.Time) ([]store.Host, error)
	HostMetricsRange(ctx context.Context, from, to time.Time) ([]store.HostMetrics, error)
}

// Samples reads the requests of [from, to) and returns training samples in
// time order (the last ones serve as the held-out set).
func Samples(ctx context.Context, src Source, from, to time.Time) ([]affinity.Sample, error) {
	reqs, err := src.Requests(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("read requests: %w", err)
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
	return affinity.Samples(Join(reqs, hosts, ms)), nil
}

// metricsWindow: a host metric sample older than this says nothing about a request.
const metricsWindow = 5 * time.Minute

// Join pairs each request that ran on a known host with that host and its
// latest metrics sample at or before the request (none older than five
// minutes: then the metrics are left zero). Requests on unknown hosts, or
// without a host, are skipped. The app's rate is its requests per minute
// over the span of reqs. Every recorded request was served (a request no
// host could serve is not recorded), so none counts as failed. Output is
// in time order.
func Join(reqs []store.Request, hosts []store.Host, metrics []store.HostMetrics) []affinity.Observation {
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
	reqs = append([]store.Request(nil), reqs...)
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
		lat := r.WorkMS
		if lat <= 0 {
			lat = r.LatencyMS
		}
		out = append(out, affinity.Observation{App: r.App, Input: in, LatencyMS: lat})
	}
	return out
}

func clamp01(x float64) float64 { return min(1, max(0, x)) }
