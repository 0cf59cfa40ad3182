package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store/hostreg"
)

// storeReporter is the agent.Reporter backed by ClickHouse: the host
// registry the worker reads with store.Hosts. It writes through hostreg,
// which can only register hosts and record their metrics, and checks the
// schema version on every connect (never changing it). It connects lazily
// and reconnects after a failure, so an agent started before ClickHouse
// (or across a ClickHouse restart) joins as soon as the store answers.
type storeReporter struct {
	cfg config.ClickHouse
	log *slog.Logger

	mu sync.Mutex
	w  *hostreg.Writer
}

func newStoreReporter(cfg config.ClickHouse, log *slog.Logger) *storeReporter {
	return &storeReporter{cfg: cfg, log: log}
}

// connect opens the registry once; a schema mismatch is a
// *chconn.SchemaError.
func (r *storeReporter) connect(ctx context.Context) (*hostreg.Writer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		return r.w, nil
	}
	w, err := hostreg.Open(ctx, r.cfg)
	if err != nil {
		return nil, fmt.Errorf("open host registry (ClickHouse %s, database %s): %w", r.cfg.Addr, r.cfg.Database, err)
	}
	r.w = w
	return w, nil
}

// drop forgets a writer whose call failed, so the next tick reconnects.
func (r *storeReporter) drop(w *hostreg.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == w {
		r.w.Close()
		r.w = nil
	}
}

func (r *storeReporter) Register(ctx context.Context, info api.Info, seen time.Time) error {
	w, err := r.connect(ctx)
	if err != nil {
		return err
	}
	err = w.RegisterHost(ctx, hostreg.Host{
		ID: info.HostID, URL: info.URL,
		MemoryMB: info.MemoryMB, DiskMB: info.DiskMB, CPUMilli: info.CPUMilli,
		Speed: info.Speed, Labels: info.Labels, LastSeen: seen,
	})
	if err != nil {
		r.drop(w)
	}
	return err
}

func (r *storeReporter) Report(ctx context.Context, m api.HostMetrics) error {
	w, err := r.connect(ctx)
	if err != nil {
		return err
	}
	err = w.RecordHostMetrics(ctx, []hostreg.HostMetrics{{
		Time: m.Time, HostID: m.HostID, CPUUtil: m.CPUUtil,
		MemUsedMB: m.MemUsedMB, MemAvailMB: m.MemAvailMB, MemPressure: m.MemPressure, IOLatencyMS: m.IOLatencyMS,
		ReservedMemMB: m.ReservedMemMB, ReservedDiskMB: m.ReservedDiskMB, ReservedCPUMilli: m.ReservedCPUMilli,
		Leases: m.Leases,
	}})
	if err != nil {
		r.drop(w)
	}
	return err
}

func (r *storeReporter) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		r.w.Close()
		r.w = nil
	}
}
