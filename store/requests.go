package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Request is one resource request as served: what was asked, where it ran
// and how it went. Times keep nanoseconds.
type Request struct {
	Time          time.Time `json:"time"`
	RequestID     uuid.UUID `json:"request_id"`
	App           string    `json:"app"`
	VolumeType    string    `json:"volume_type"`
	SizeMB        float64   `json:"size_mb"`
	ReadRatio     float64   `json:"read_ratio"`
	Host          string    `json:"host"`
	Warm          bool      `json:"warm"`
	ExpectedScore float64   `json:"expected_score"` // affinity the model expected
	SetupMS       float64   `json:"setup_ms"`
	WorkMS        float64   `json:"work_ms"`
	LatencyMS     float64   `json:"latency_ms"`
	Outcome       string    `json:"outcome"` // e.g. ok, failed, rejected
}

const requestCols = "time, at_ns, request_id, app, volume_type, size_mb, read_ratio, host, warm, expected_score, setup_ms, work_ms, latency_ms, outcome"

// RecordRequests stores requests; the activity per bin follows through a
// materialized view. A zero Time is now; a nil RequestID gets a random one.
func (s *Store) RecordRequests(ctx context.Context, reqs []Request) error {
	for i := range reqs {
		if reqs[i].App == "" {
			return fmt.Errorf("request %d: empty app", i)
		}
	}
	return s.insert(ctx, "requests", requestCols, len(reqs), func(i int) []any {
		r := reqs[i]
		r.Time = orNow(r.Time)
		if r.RequestID == uuid.Nil {
			r.RequestID = uuid.New()
		}
		var warm uint8
		if r.Warm {
			warm = 1
		}
		return []any{r.Time, nanos(r.Time), r.RequestID, r.App, r.VolumeType, r.SizeMB, r.ReadRatio, r.Host, warm,
			r.ExpectedScore, r.SetupMS, r.WorkMS, r.LatencyMS, r.Outcome}
	})
}

// Requests returns the requests of [from, to), in time order.
func (s *Store) Requests(ctx context.Context, from, to time.Time) ([]Request, error) {
	var out []Request
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT `+requestCols+` FROM requests
			WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ?
			ORDER BY at_ns`, unix(from), unix(to), nanos(from), nanos(to))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r    Request
				ns   uint64
				warm uint8
			)
			if err := rows.Scan(&r.Time, &ns, &r.RequestID, &r.App, &r.VolumeType, &r.SizeMB, &r.ReadRatio, &r.Host, &warm,
				&r.ExpectedScore, &r.SetupMS, &r.WorkMS, &r.LatencyMS, &r.Outcome); err != nil {
				return err
			}
			r.Time, r.Warm = time.Unix(0, int64(ns)).UTC(), warm == 1
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read requests %v – %v: %w", from.UTC(), to.UTC(), err)
	}
	return out, nil
}
