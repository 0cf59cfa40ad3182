package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/store/records"
)

// Request is one served request (package records defines it and its
// outcomes).
type Request = records.Request

const requestCols = "time, at_ns, request_id, app, volume_type, size_mb, read_ratio, host, warm, expected_score, setup_ms, work_ms, latency_ms, outcome"

// RecordRequests stores requests; the activity per bin follows through a
// materialized view. A zero Time is now; an empty RequestID gets a random
// one.
func (s *Store) RecordRequests(ctx context.Context, reqs []Request) error {
	for i := range reqs {
		if reqs[i].App == "" {
			return fmt.Errorf("request %d: empty app", i)
		}
		if !slices.Contains(records.Outcomes, reqs[i].Outcome) {
			return fmt.Errorf("request %d: unknown outcome %q (want one of %v)", i, reqs[i].Outcome, records.Outcomes)
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
		times[i], ns[i], ids[i], apps[i], volumes[i] = t, nanos(t), requestUUID(r.RequestID), r.App, r.VolumeType
		sizes[i], reads[i], hosts[i], expected[i] = r.SizeMB, r.ReadRatio, r.Host, r.ExpectedScore
		setup[i], work[i], latency[i], outcome[i] = r.SetupMS, r.WorkMS, r.LatencyMS, r.Outcome
		if r.Warm {
			warm[i] = 1
		}
	}
	return s.insertColumns(ctx, "requests", requestCols, times, ns, ids, apps, volumes, sizes, reads, hosts, warm, expected, setup, work, latency, outcome)
}

// RecordedRequestIDs says which of ids (request IDs as recorded: UUIDs or
// not, see requestUUID) app already has recorded within a minute of at.
// The requests table keeps every row it is given, so a retried write
// (whose first attempt may have landed before its answer was lost) asks
// first.
func (s *Store) RecordedRequestIDs(ctx context.Context, app string, at time.Time, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	byUUID := make(map[uuid.UUID]string, len(ids))
	list := make([]string, 0, len(ids))
	for _, id := range ids {
		u := requestUUID(id)
		byUUID[u] = id
		list = append(list, "toUUID('"+u.String()+"')") // hex and dashes only
	}
	err := s.query(ctx, func(rows scanner) error {
		var u uuid.UUID
		if err := rows.Scan(&u); err != nil {
			return err
		}
		out[byUUID[u]] = true
		return nil
	}, `SELECT DISTINCT request_id FROM requests
			WHERE app = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND request_id IN (`+strings.Join(list, ", ")+`)`,
		app, unix(at.Add(-time.Minute)), unix(at.Add(time.Minute)))
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
				id   uuid.UUID
			)
			if err := rows.Scan(&r.Time, &ns, &id, &r.App, &r.VolumeType, &r.SizeMB, &r.ReadRatio, &r.Host, &warm,
				&r.ExpectedScore, &r.SetupMS, &r.WorkMS, &r.LatencyMS, &r.Outcome); err != nil {
				return err
			}
			r.Time, r.Warm, r.RequestID = time.Unix(0, int64(ns)).UTC(), warm == 1, id.String()
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read requests %v – %v: %w", from.UTC(), to.UTC(), err)
	}
	return out, nil
}

// requestUUID is a request ID as the requests table keys it: the ID itself
// when it is a UUID, otherwise one derived from it (the same ID, the same
// UUID), and a random one when it is empty.
func requestUUID(id string) uuid.UUID {
	if id == "" {
		return uuid.New()
	}
	if u, err := uuid.Parse(id); err == nil {
		return u
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("forewarm-request:"+id))
}
