package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/forewarm/forewarm/store/hostreg"
)

// Host and HostMetrics are the registry's rows; package hostreg owns them
// (and their inserts) so host agents can write without this package.
type (
	Host        = hostreg.Host
	HostMetrics = hostreg.HostMetrics
)

// RegisterHost records (or refreshes) a host; a zero LastSeen is now.
func (s *Store) RegisterHost(ctx context.Context, h Host) error {
	return hostreg.Register(ctx, s.conn, h)
}

// MaxClockSkew is how far ahead of the reader's clock a host's
// registration or metrics may be stamped and still be read. Every agent
// writes the registry with one insert user, so a row can claim any time:
// one stamped further ahead is ignored (it would otherwise win every
// latest-row choice against the real host's rows and pin its URL, or keep
// a dead host seen, for as long as it claims), and what is read is seen
// no later than the reader's now.
const MaxClockSkew = 5 * time.Second

// Hosts returns the latest registration of every host seen (registered or
// reporting metrics) since seenSince, sorted by ID. Rows stamped more than
// MaxClockSkew ahead of now are not read, and LastSeen is at most now.
func (s *Store) Hosts(ctx context.Context, seenSince time.Time) ([]Host, error) {
	var out []Host
	now := time.Now().UTC()
	horizon := nanos(now.Add(MaxClockSkew))
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT id, argMax(url, seen_ns), argMax(memory_mb, seen_ns), argMax(disk_mb, seen_ns),
				argMax(cpu_milli, seen_ns), argMax(speed, seen_ns), argMax(labels, seen_ns), max(seen_ns)
			FROM hosts WHERE seen_ns <= ? GROUP BY id ORDER BY id`, horizon)
		if err != nil {
			return err
		}
		defer rows.Close()
		var all []Host
		for rows.Next() {
			var h Host
			var ns uint64
			if err := rows.Scan(&h.ID, &h.URL, &h.MemoryMB, &h.DiskMB, &h.CPUMilli, &h.Speed, &h.Labels, &ns); err != nil {
				return err
			}
			h.LastSeen = time.Unix(0, int64(ns)).UTC()
			all = append(all, h)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// A host that registered once and keeps pushing metrics is alive.
		seen := map[string]time.Time{}
		mrows, err := s.conn.Query(ctx, `SELECT host_id, max(at_ns) FROM host_metrics WHERE time >= toDateTime(?) AND at_ns <= ? GROUP BY host_id`, unix(seenSince), horizon)
		if err != nil {
			return err
		}
		defer mrows.Close()
		for mrows.Next() {
			var id string
			var ns uint64
			if err := mrows.Scan(&id, &ns); err != nil {
				return err
			}
			seen[id] = time.Unix(0, int64(ns)).UTC()
		}
		if err := mrows.Err(); err != nil {
			return err
		}
		for _, h := range all {
			if t, ok := seen[h.ID]; ok && t.After(h.LastSeen) {
				h.LastSeen = t
			}
			if h.LastSeen.After(now) {
				h.LastSeen = now
			}
			if !h.LastSeen.Before(seenSince) {
				out = append(out, h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	return out, nil
}

const hostMetricCols = hostreg.HostMetricCols

// scanHostMetrics reads one row of hostMetricCols; the time is taken from
// at_ns, which keeps nanoseconds.
func scanHostMetrics(rows scanner) (HostMetrics, error) {
	var m HostMetrics
	var ns uint64
	var leases uint32
	if err := rows.Scan(&m.Time, &ns, &m.HostID, &m.CPUUtil, &m.MemUsedMB, &m.MemAvailMB, &m.MemPressure, &m.IOLatencyMS,
		&m.ReservedMemMB, &m.ReservedDiskMB, &m.ReservedCPUMilli, &leases); err != nil {
		return HostMetrics{}, err
	}
	m.Time, m.Leases = time.Unix(0, int64(ns)).UTC(), int(leases)
	return m, nil
}

// RecordHostMetrics stores samples; a zero Time is now.
func (s *Store) RecordHostMetrics(ctx context.Context, ms []HostMetrics) error {
	return hostreg.Record(ctx, s.conn, ms)
}

// LatestHostMetricsWindow bounds how old a host's latest sample may be for
// LatestHostMetrics to return it (a host silent longer is gone).
const LatestHostMetricsWindow = 24 * time.Hour

// LatestHostMetrics returns each host's most recent sample of the last
// LatestHostMetricsWindow (none stamped more than MaxClockSkew ahead).
func (s *Store) LatestHostMetrics(ctx context.Context) (map[string]HostMetrics, error) {
	out := map[string]HostMetrics{}
	// The latest value of every column, in hostMetricCols' order so one
	// scanner reads both queries.
	var sel []string
	for _, c := range strings.Split(hostMetricCols, ", ") {
		switch c {
		case "host_id":
			sel = append(sel, c)
		case "at_ns":
			sel = append(sel, "max(at_ns)")
		default:
			sel = append(sel, "argMax("+c+", at_ns)")
		}
	}
	err := s.query(ctx, func(rows scanner) error {
		m, err := scanHostMetrics(rows)
		if err != nil {
			return err
		}
		out[m.HostID] = m
		return nil
	}, `SELECT `+strings.Join(sel, ", ")+` FROM host_metrics
			WHERE time >= toDateTime(?) AND at_ns <= ? GROUP BY host_id`, unix(time.Now().Add(-LatestHostMetricsWindow)), nanos(time.Now().Add(MaxClockSkew)))
	if err != nil {
		return nil, fmt.Errorf("read latest host metrics: %w", err)
	}
	return out, nil
}

// HostMetricsRange returns the samples of [from, to), by host then time.
func (s *Store) HostMetricsRange(ctx context.Context, from, to time.Time) ([]HostMetrics, error) {
	var out []HostMetrics
	err := s.query(ctx, func(rows scanner) error {
		m, err := scanHostMetrics(rows)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	}, `SELECT `+hostMetricCols+` FROM host_metrics
			WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ? ORDER BY host_id, at_ns`,
		unix(from), unix(to), nanos(from), nanos(to))
	if err != nil {
		return nil, fmt.Errorf("read host metrics: %w", err)
	}
	return out, nil
}
