package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/forewarm/forewarm/store/records"
)

// GatewayRequest is one request as the gateway served it.
type GatewayRequest = records.GatewayRequest

const gatewayRequestCols = "time, at_ns, request_id, app, gateway, host, lease, outcome, retried, method, status, bytes_in, bytes_out, queue_ms, start_ms, app_ms, total_ms, error"

// RecordGatewayRequests stores a batch of the gateway's requests. A row no
// gateway can produce (no app, an unknown outcome, a negative time) fails
// the whole batch, naming the row.
func (s *Store) RecordGatewayRequests(ctx context.Context, rs []GatewayRequest) error {
	for i, r := range rs {
		switch {
		case r.App == "":
			return fmt.Errorf("gateway request %d: empty app", i)
		case !slices.Contains(records.GatewayOutcomes, r.Outcome):
			return fmt.Errorf("gateway request %d: unknown outcome %q (want one of %v)", i, r.Outcome, records.GatewayOutcomes)
		case r.Status < 0 || r.Status > 999:
			return fmt.Errorf("gateway request %d: status %d", i, r.Status)
		case r.QueueMS < 0 || r.StartMS < 0 || r.AppMS < 0 || r.TotalMS < 0 || r.BytesIn < 0 || r.BytesOut < 0:
			return fmt.Errorf("gateway request %d: negative time or size", i)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	now := time.Now()
	return s.insert(ctx, "gateway_requests", gatewayRequestCols, len(rs), func(i int) []any {
		r := rs[i]
		t := r.Time
		if t.IsZero() {
			t = now
		}
		return []any{t, nanos(t), r.RequestID, r.App, r.Gateway, r.Host, r.Lease, r.Outcome, boolByte(r.Retried), r.Method,
			uint16(r.Status), uint64(r.BytesIn), uint64(r.BytesOut), r.QueueMS, r.StartMS, r.AppMS, r.TotalMS, r.Error}
	})
}

// GatewayRequests reads the gateway's requests with from ≤ time < to, in
// time order.
func (s *Store) GatewayRequests(ctx context.Context, from, to time.Time) ([]GatewayRequest, error) {
	return s.gatewayRequests(ctx, from, to, 0)
}

// FirstGatewayRequests reads the first limit (> 0) of the gateway's
// requests with from ≤ time < to, in time order: a reader that goes
// through them in passes holds one pass's rows at a time.
func (s *Store) FirstGatewayRequests(ctx context.Context, from, to time.Time, limit int) ([]GatewayRequest, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("first gateway requests: limit %d, want > 0", limit)
	}
	return s.gatewayRequests(ctx, from, to, limit)
}

// gatewayRequests reads the rows of [from, to) in time order, at most
// limit of them (0: all).
func (s *Store) gatewayRequests(ctx context.Context, from, to time.Time, limit int) ([]GatewayRequest, error) {
	var out []GatewayRequest
	q := `SELECT at_ns, request_id, app, gateway, host, lease, outcome, retried, method, status, bytes_in, bytes_out,
		queue_ms, start_ms, app_ms, total_ms, error
		FROM gateway_requests WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ? ORDER BY at_ns`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	err := s.query(ctx, func(row scanner) error {
		var r GatewayRequest
		var ns uint64
		var retried uint8
		var status uint16
		var in, outB uint64
		if err := row.Scan(&ns, &r.RequestID, &r.App, &r.Gateway, &r.Host, &r.Lease, &r.Outcome, &retried, &r.Method, &status,
			&in, &outB, &r.QueueMS, &r.StartMS, &r.AppMS, &r.TotalMS, &r.Error); err != nil {
			return err
		}
		r.Time = time.Unix(0, int64(ns)).UTC()
		r.Retried, r.Status, r.BytesIn, r.BytesOut = retried == 1, int(status), int64(in), int64(outB)
		out = append(out, r)
		return nil
	}, q, unix(from), unix(to), nanos(from), nanos(to))
	if err != nil {
		return nil, fmt.Errorf("read gateway requests %v – %v: %w", from.UTC(), to.UTC(), err)
	}
	return out, nil
}

// GatewayUsualMS is, per app of apps, the usual time of its instances on
// the gateway's requests with from ≤ time < to: the median app_ms of the
// requests that measured one (not failed), as the affinity model's
// samples take it (affinity.Samples), estimated from a sample of 8192
// (ClickHouse's quantile: bounded memory however busy the app). Apps
// without such a request are absent.
func (s *Store) GatewayUsualMS(ctx context.Context, apps []string, from, to time.Time) (map[string]float64, error) {
	out := map[string]float64{}
	if len(apps) == 0 {
		return out, nil
	}
	err := s.query(ctx, func(row scanner) error {
		var app string
		var ms float64
		if err := row.Scan(&app, &ms); err != nil {
			return err
		}
		out[app] = ms
		return nil
	}, `SELECT app, quantile(0.5)(app_ms) FROM gateway_requests
		WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ? AND has(?, app) AND outcome != ? AND app_ms > 0
		GROUP BY app`, unix(from), unix(to), nanos(from), nanos(to), apps, records.GatewayFailed)
	if err != nil {
		return nil, fmt.Errorf("usual gateway times: %w", err)
	}
	return out, nil
}

// GatewayOutcomes counts the gateway's requests with from ≤ time < to
// that name a host: the ones the affinity model learns from.
func (s *Store) GatewayOutcomes(ctx context.Context, from, to time.Time) (uint64, error) {
	var n uint64
	err := s.query(ctx, func(row scanner) error { return row.Scan(&n) },
		`SELECT count() FROM gateway_requests WHERE at_ns >= ? AND at_ns < ? AND host != ''`, nanos(from), nanos(to))
	if err != nil {
		return 0, fmt.Errorf("count gateway requests: %w", err)
	}
	return n, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
