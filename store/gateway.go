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
	var out []GatewayRequest
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
	}, `SELECT at_ns, request_id, app, gateway, host, lease, outcome, retried, method, status, bytes_in, bytes_out,
		queue_ms, start_ms, app_ms, total_ms, error
		FROM gateway_requests WHERE at_ns >= ? AND at_ns < ? ORDER BY at_ns`, nanos(from), nanos(to))
	return out, err
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
