package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/config"
)

// storeReporter registers the host and pushes its metrics to ClickHouse.
// TODO(H3): wire store.RegisterHost / store.RecordHostMetrics once store/ lands.
type storeReporter struct {
	cfg config.ClickHouse
	log *slog.Logger
}

func newStoreReporter(cfg config.ClickHouse, log *slog.Logger) *storeReporter {
	return &storeReporter{cfg: cfg, log: log}
}

func (r *storeReporter) Register(ctx context.Context, info api.Info, seen time.Time) error {
	return errors.New("host registry not wired yet")
}

func (r *storeReporter) Report(ctx context.Context, m api.HostMetrics) error { return nil }

func (r *storeReporter) Close() {}
