package store

import (
	"context"
	"fmt"
	"strings"
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
	if len(reqs) == 0 {
		return nil
	}
	n := len(reqs)
	var (
		times    = make([]time.Time, n)
		ns       = make([]uint64, n)
		ids      = make([]uuid.UUID, n)
		apps     = make([]string, n)
		volumes  = make([]string, n)
		sizes    = make([]float64, n)
		reads    = make([]float64, n)
		hosts    = make([]string, n)
		warm     = make([]uint8, n)
		expected = make([]float64, n)
		setup    = make([]float64, n)
		work     = make([]float64, n)
		latency  = make([]float64, n)
		outcome  = make([]string, n)
		now      = time.Now()
	)
	for i, r := range reqs {
		t := r.Time
		if t.IsZero() {
			t = now
		}
		if r.RequestID == uuid.Nil {
			r.RequestID = uuid.New()
		}
		times[i], ns[i], ids[i], apps[i], volumes[i] = t, nanos(t), r.RequestID, r.App, r.VolumeType
		sizes[i], reads[i], hosts[i], expected[i] = r.SizeMB, r.ReadRatio, r.Host, r.ExpectedScore
		setup[i], work[i], latency[i], outcome[i] = r.SetupMS, r.WorkMS, r.LatencyMS, r.Outcome
		if r.Warm {
			warm[i] = 1
		}
	}
	return s.insertColumns(ctx, "requests", requestCols, times, ns, ids, apps, volumes, sizes, reads, hosts, warm, expected, setup, work, latency, outcome)
}

// RecordedRequestIDs says which of ids app already has recorded within a
// minute of at. The requests table keeps every row it is given, so a
// retried write (whose first attempt may have landed before its answer
// was lost) asks first.
func (s *Store) RecordedRequestIDs(ctx context.Context, app string, at time.Time, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	out := map[uuid.UUID]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = "toUUID('" + id.String() + "')" // hex and dashes only
	}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT DISTINCT request_id FROM requests
			WHERE app = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND request_id IN (`+strings.Join(list, ", ")+`)`,
			app, unix(at.Add(-time.Minute)), unix(at.Add(time.Minute)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("recorded requests of %s: %w", app, err)
	}
	return out, nil
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
