// Package hostreg is the host registry's write side: what a host agent
// needs to announce itself and push its metrics into ClickHouse, and no
// more. It owns the rows of the hosts and host_metrics tables (package
// store reads them with the same types) and depends on chconn alone, not
// on the store's schema or migrations, so an agent can run with a
// ClickHouse user that may only insert into these two tables (and read the
// schema version; see deploy/clickhouse/agent-grants.sql).
package hostreg

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store/chconn"
)

// The tables an agent writes, and their columns in insert order.
const (
	HostsTable       = "hosts"
	HostMetricsTable = "host_metrics"
	HostCols         = "id, url, memory_mb, disk_mb, cpu_milli, speed, labels, seen_ns"
	HostMetricCols   = "time, at_ns, host_id, cpu_util, mem_used_mb, mem_avail_mb, mem_pressure, io_latency_ms, reserved_mem_mb, reserved_disk_mb, reserved_cpu_milli, leases"
)

// Host is a resource host as it registered itself.
type Host struct {
	ID       string    `json:"id"`
	URL      string    `json:"url"` // the host agent's base URL
	MemoryMB int64     `json:"memory_mb"`
	DiskMB   int64     `json:"disk_mb"`
	CPUMilli int64     `json:"cpu_milli"`
	Speed    float64   `json:"speed"` // relative speed, 1 = reference
	Labels   string    `json:"labels"`
	LastSeen time.Time `json:"last_seen"` // registration or latest metrics, whichever is later
}

// HostMetrics is one sample of a host's state.
type HostMetrics struct {
	Time             time.Time `json:"time"`
	HostID           string    `json:"host_id"`
	CPUUtil          float64   `json:"cpu_util"` // 0..1
	MemUsedMB        float64   `json:"mem_used_mb"`
	MemAvailMB       float64   `json:"mem_avail_mb"`
	MemPressure      float64   `json:"mem_pressure"` // 0..1 (PSI some avg10 / 100 on Linux)
	IOLatencyMS      float64   `json:"io_latency_ms"`
	ReservedMemMB    float64   `json:"reserved_mem_mb"`
	ReservedDiskMB   float64   `json:"reserved_disk_mb"`
	ReservedCPUMilli int64     `json:"reserved_cpu_milli"`
	Leases           int       `json:"leases"`
}

// Register records (or refreshes) a host through conn; a zero LastSeen is now.
func Register(ctx context.Context, conn driver.Conn, h Host) error {
	if h.ID == "" {
		return fmt.Errorf("register host: empty ID")
	}
	h.LastSeen = orNow(h.LastSeen)
	return chconn.Insert(ctx, conn, HostsTable, HostCols, 1, func(int) []any {
		return []any{h.ID, h.URL, h.MemoryMB, h.DiskMB, h.CPUMilli, h.Speed, h.Labels, nanos(h.LastSeen)}
	})
}

// Record stores metric samples through conn; a zero Time is now.
func Record(ctx context.Context, conn driver.Conn, ms []HostMetrics) error {
	for i := range ms {
		if ms[i].HostID == "" {
			return fmt.Errorf("host metrics %d: empty host ID", i)
		}
	}
	return chconn.Insert(ctx, conn, HostMetricsTable, HostMetricCols, len(ms), func(i int) []any {
		m := ms[i]
		m.Time = orNow(m.Time)
		return []any{m.Time, nanos(m.Time), m.HostID, m.CPUUtil, m.MemUsedMB, m.MemAvailMB, m.MemPressure, m.IOLatencyMS,
			m.ReservedMemMB, m.ReservedDiskMB, m.ReservedCPUMilli, uint32(max(0, m.Leases))}
	})
}

// Writer is an agent's connection to the registry.
type Writer struct {
	conn driver.Conn
}

// Open connects and checks the schema version (a mismatch is a
// *chconn.SchemaError); it never changes the schema.
func Open(ctx context.Context, cfg config.ClickHouse) (*Writer, error) {
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Writer{conn: conn}, nil
}

// RegisterHost records (or refreshes) a host.
func (w *Writer) RegisterHost(ctx context.Context, h Host) error { return Register(ctx, w.conn, h) }

// RecordHostMetrics stores metric samples.
func (w *Writer) RecordHostMetrics(ctx context.Context, ms []HostMetrics) error {
	return Record(ctx, w.conn, ms)
}

// Close releases the connections.
func (w *Writer) Close() error { return w.conn.Close() }

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// nanos orders samples within a second; stored as UInt64.
func nanos(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}
