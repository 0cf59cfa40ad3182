package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store"
)

// storeReporter is the agent.Reporter backed by the ClickHouse store: the
// host registry the worker reads with store.Hosts. It connects lazily and
// reconnects after a failure, so an agent started before ClickHouse (or
// across a ClickHouse restart) joins as soon as the store answers.
type storeReporter struct {
	cfg config.ClickHouse
	log *slog.Logger

	mu sync.Mutex
	st *store.Store
}

func newStoreReporter(cfg config.ClickHouse, log *slog.Logger) *storeReporter {
	return &storeReporter{cfg: cfg, log: log}
}

func (r *storeReporter) store(ctx context.Context) (*store.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != nil {
		return r.st, nil
	}
	st, err := store.Open(ctx, r.cfg)
	if err != nil {
		return nil, fmt.Errorf("open host registry (ClickHouse %s, database %s): %w", r.cfg.Addr, r.cfg.Database, err)
	}
	r.st = st
	return st, nil
}

// drop forgets a store whose call failed, so the next tick reconnects.
func (r *storeReporter) drop(st *store.Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == st {
		r.st.Close()
		r.st = nil
	}
}

func (r *storeReporter) Register(ctx context.Context, info api.Info, seen time.Time) error {
	st, err := r.store(ctx)
	if err != nil {
		return err
	}
	err = st.RegisterHost(ctx, store.Host{
		ID: info.HostID, URL: info.URL,
		MemoryMB: info.MemoryMB, DiskMB: info.DiskMB, CPUMilli: info.CPUMilli,
		Speed: info.Speed, Labels: info.Labels, LastSeen: seen,
	})
	if err != nil {
		r.drop(st)
	}
	return err
}

func (r *storeReporter) Report(ctx context.Context, m api.HostMetrics) error {
	st, err := r.store(ctx)
	if err != nil {
		return err
	}
	err = st.RecordHostMetrics(ctx, []store.HostMetrics{{
		Time: m.Time, HostID: m.HostID, CPUUtil: m.CPUUtil,
		MemUsedMB: m.MemUsedMB, MemAvailMB: m.MemAvailMB, MemPressure: m.MemPressure, IOLatencyMS: m.IOLatencyMS,
		ReservedMemMB: m.ReservedMemMB, ReservedDiskMB: m.ReservedDiskMB, ReservedCPUMilli: m.ReservedCPUMilli,
		Leases: m.Leases,
	}})
	if err != nil {
		r.drop(st)
	}
	return err
}

func (r *storeReporter) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
}
