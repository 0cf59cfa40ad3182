package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

// visible restricts activity rows to live ones and to the winning attempt
// of every committed load. GLOBAL: in a cluster the subquery runs once over
// every shard's loads (on one server it is a plain IN).
const visible = `(load_id = '' OR load_id GLOBAL IN (SELECT min(load_id) FROM loads GROUP BY content_key))`

// Stats are the figures a user checks after a load.
type Stats struct {
	Apps         uint64    `json:"apps"`          // applications with activity
	Bins         uint64    `json:"bins"`          // distinct bin starts with activity
	Requests     uint64    `json:"requests"`      // total requests in the activity history
	First        time.Time `json:"first"`         // first bin with activity (zero if none)
	Last         time.Time `json:"last"`          // start of the last bin with activity
	Loads        uint64    `json:"loads"`         // committed trace loads
	LiveRequests uint64    `json:"live_requests"` // requests recorded live (within retention)
}

// Stats summarises the stored history.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, args := activityRows("1")
		err := s.conn.QueryRow(ctx, `SELECT uniqExact(app), uniqExact(bin_start), sum(requests), min(bin_start), max(bin_start)
			FROM `+rows, args...).Scan(&st.Apps, &st.Bins, &st.Requests, &st.First, &st.Last)
		if err != nil {
			return err
		}
		if err := s.conn.QueryRow(ctx, `SELECT uniqExact(content_key) FROM loads`).Scan(&st.Loads); err != nil {
			return err
		}
		return s.conn.QueryRow(ctx, `SELECT count() FROM requests`).Scan(&st.LiveRequests)
	})
	if err != nil {
		return st, fmt.Errorf("history stats: %w", err)
	}
	if st.Requests == 0 {
		st.First, st.Last = time.Time{}, time.Time{}
	}
	st.First, st.Last = st.First.UTC(), st.Last.UTC()
	return st, nil
}

// ErrTooLarge is returned when a read would hold more apps × bins than
// one trace may (trace.MaxCells): retrying cannot help, a narrower range or
// a wider bin can.
var ErrTooLarge = errors.New("too large for one read")

// maxAppFilter is the longest app list sent as an IN clause; longer lists
// read every app and filter here (cheaper than a huge query text).
const maxAppFilter = 500

// RecentActivity returns, per app, the request counts of the last bins
// bins before end, oldest first, zero-filled, in one query. With appIDs nil
// it returns every app with activity in that window; listed apps without
// any are returned as zeros. bin must be whole seconds and no finer than
// the stored data (trace minutes stay in the first second of a finer bin).
func (s *Store) RecentActivity(ctx context.Context, appIDs []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error) {
	from := end.Add(-time.Duration(bins) * bin)
	counts, err := s.binned(ctx, appIDs, from, bins, bin)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]float64, max(len(appIDs), len(counts)))
	for _, id := range appIDs {
		out[id] = make([]float64, bins)
	}
	for id, c := range counts {
		f := make([]float64, bins)
		for i, n := range c {
			f[i] = float64(n)
		}
		out[id] = f
	}
	return out, nil
}

// binned sums activity into bins bins of width bin from from, per app.
func (s *Store) binned(ctx context.Context, appIDs []string, from time.Time, bins int, bin time.Duration) (map[string][]uint32, error) {
	if bin < time.Second || bin%time.Second != 0 {
		return nil, fmt.Errorf("bin width %v: use whole seconds", bin)
	}
	if bins <= 0 {
		return map[string][]uint32{}, nil
	}
	binSec := int64(bin / time.Second)
	lo := from.Unix()
	hi := lo + int64(bins)*binSec
	lo, hi = max(lo, 0), min(hi, math.MaxUint32)
	// One row per app with its (bin index, count) pairs; pairs repeating an
	// index (unmerged parts, several loads, live rows, coarser bins) are
	// added up here, which is cheaper than a second GROUP BY on the server.
	cond := `bin_start >= toDateTime(?) AND bin_start < toDateTime(?)`
	condArgs := []any{lo, hi}
	var wanted map[string]bool
	if len(appIDs) > 0 && len(appIDs) <= maxAppFilter {
		cond += ` AND has(?, app)`
		condArgs = append(condArgs, appIDs)
	} else if len(appIDs) > 0 {
		wanted = make(map[string]bool, len(appIDs))
		for _, id := range appIDs {
			wanted[id] = true
		}
	}
	src, srcArgs := activityRows(cond, condArgs...)
	query := `SELECT app, groupArray(toUInt32(intDiv(toInt64(toUInt32(bin_start)) - ?, ?))), groupArray(requests)
		FROM ` + src + `
		GROUP BY app`
	args := append([]any{from.Unix(), binSec}, srcArgs...)
	out := map[string][]uint32{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			app string
			idx []uint32
			cnt []uint64
		)
		for rows.Next() {
			if err := rows.Scan(&app, &idx, &cnt); err != nil {
				return err
			}
			if wanted != nil && !wanted[app] {
				continue
			}
			c := out[app]
			if c == nil {
				if int64(len(out)+1)*int64(bins) > trace.MaxCells {
					return fmt.Errorf("%w: more than %d apps × %d bins; narrow the time range or widen the bin", ErrTooLarge, len(out), bins)
				}
				c = make([]uint32, bins)
				out[app] = c
			}
			for k, i := range idx {
				if int(i) < bins {
					c[i] = uint32(min(uint64(c[i])+cnt[k], math.MaxUint32))
				}
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read activity %v – %v: %w", from.UTC(), from.Add(time.Duration(bins)*bin).UTC(), err)
	}
	return out, nil
}

// Trace returns the stored activity of [from, to) on a grid of bin as a
// trace (every app with activity in the range), with each app's profile.
func (s *Store) Trace(ctx context.Context, from, to time.Time, bin time.Duration) (*trace.Trace, error) {
	if !to.After(from) {
		return nil, fmt.Errorf("empty time range %v – %v", from, to)
	}
	bins := int((to.Sub(from) + bin - 1) / bin)
	counts, err := s.binned(ctx, nil, from, bins, bin)
	if err != nil {
		return nil, err
	}
	profiles, err := s.AppProfiles(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]AppProfile, len(profiles))
	for _, p := range profiles {
		byID[p.ID] = p
	}
	tr := &trace.Trace{Start: from.UTC(), Bin: bin, Bins: bins, Apps: make([]trace.App, 0, len(counts))}
	for id, c := range counts {
		a := trace.App{ID: id, Counts: c, ReadRatio: trace.DefaultReadRatio}
		if p, ok := byID[id]; ok {
			a.MemoryMB, a.ReadRatio, a.DurationMS = p.MemoryMB, p.ReadRatio, p.DurationMS
		}
		tr.Apps = append(tr.Apps, a)
	}
	slices.SortFunc(tr.Apps, func(a, b trace.App) int { return strings.Compare(a.ID, b.ID) })
	return tr, nil
}

// AppProfile is what the store knows of an application's usage.
type AppProfile struct {
	ID         string  `json:"id"`
	MemoryMB   float64 `json:"memory_mb"` // 0 when unknown (see trace.DefaultMemoryMB)
	ReadRatio  float64 `json:"read_ratio"`
	DurationMS float64 `json:"duration_ms"`
	VolumeType string  `json:"volume_type"` // "" when unknown
	// RequestBytes is the mean bytes in + out of the gateway's requests (0
	// when unknown). It is not MemoryMB: bytes on the wire say nothing of
	// the memory an instance holds, which sizes leases.
	RequestBytes float64 `json:"request_bytes"`
}

// readMethods are the HTTP methods a gateway request reads by; every
// other method writes.
var readMethods = []string{"GET", "HEAD", "OPTIONS"}

// liveProfiles sums, per app, what both kinds of live rows say: the
// workflow's requests (size, read ratio, work time each) and the
// gateway's (a method that reads or writes, app_ms, bytes). Sums and
// counts, so the means weigh every request alike whichever path served
// it. Rows without a measured time (cold or failed requests, gateway
// failures) count in the read ratio, not in the duration.
const liveProfiles = `SELECT app, sum(n), sum(reads), sum(mem_n), sum(mem_sum), sum(work_n), sum(work_sum), sum(bytes_n), sum(bytes_sum),
		argMax(vol, vol_ns)
	FROM (
		SELECT app, count() AS n, sum(read_ratio) AS reads, count() AS mem_n, sum(size_mb) AS mem_sum,
			countIf(work_ms > 0) AS work_n, sumIf(work_ms, work_ms > 0) AS work_sum,
			toUInt64(0) AS bytes_n, toFloat64(0) AS bytes_sum, argMax(volume_type, at_ns) AS vol, max(at_ns) AS vol_ns
		FROM requests GROUP BY app
		UNION ALL
		SELECT app, count(), toFloat64(countIf(has(?, upper(method)))), toUInt64(0), toFloat64(0),
			countIf(outcome != ? AND app_ms > 0), sumIf(app_ms, outcome != ? AND app_ms > 0),
			count(), toFloat64(sum(bytes_in + bytes_out)), '', toUInt64(0)
		FROM gateway_requests GROUP BY app
	) GROUP BY app`

// liveProfile is one app's sums from liveProfiles.
type liveProfile struct {
	id                string
	n, memN           uint64
	workN, bytesN     uint64
	reads, memSum     float64
	workSum, bytesSum float64
	volumeType        string
}

// apply sets what the live rows know over the loaded profile p: each
// mean only where some row measured it.
func (l liveProfile) apply(p *AppProfile) {
	if l.n > 0 {
		p.ReadRatio = l.reads / float64(l.n)
	}
	if l.memN > 0 {
		p.MemoryMB = l.memSum / float64(l.memN)
	}
	if l.workN > 0 {
		p.DurationMS = l.workSum / float64(l.workN)
	}
	if l.bytesN > 0 {
		p.RequestBytes = l.bytesSum / float64(l.bytesN)
	}
	if l.volumeType != "" {
		p.VolumeType = l.volumeType
	}
}

// AppProfiles returns every known application's profile, sorted by ID:
// from loaded traces, overridden by the means of its live requests
// (workflow and gateway rows together, see liveProfiles).
func (s *Store) AppProfiles(ctx context.Context) ([]AppProfile, error) {
	byID := map[string]*AppProfile{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT app, argMax(memory_mb, updated_ns), argMax(read_ratio, updated_ns), argMax(duration_ms, updated_ns)
			FROM app_profiles WHERE load_id GLOBAL IN (SELECT min(load_id) FROM loads GROUP BY content_key) GROUP BY app`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p AppProfile
			if err := rows.Scan(&p.ID, &p.MemoryMB, &p.ReadRatio, &p.DurationMS); err != nil {
				return err
			}
			byID[p.ID] = &p
		}
		if err := rows.Err(); err != nil {
			return err
		}
		live, err := s.conn.Query(ctx, liveProfiles, readMethods, records.GatewayFailed, records.GatewayFailed)
		if err != nil {
			return err
		}
		defer live.Close()
		for live.Next() {
			var l liveProfile
			if err := live.Scan(&l.id, &l.n, &l.reads, &l.memN, &l.memSum, &l.workN, &l.workSum, &l.bytesN, &l.bytesSum, &l.volumeType); err != nil {
				return err
			}
			p := byID[l.id]
			if p == nil {
				p = &AppProfile{ID: l.id}
				byID[l.id] = p
			}
			l.apply(p)
		}
		return live.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read app profiles: %w", err)
	}
	out := make([]AppProfile, 0, len(byID))
	for _, p := range byID {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b AppProfile) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// BinActivity is one bin of an application's activity.
type BinActivity struct {
	Start      time.Time `json:"start"`
	Requests   uint64    `json:"requests"`
	MeanSizeMB float64   `json:"mean_size_mb"` // 0 when the sizes are unknown
	ReadRatio  float64   `json:"read_ratio"`
	MeanWorkMS float64   `json:"mean_work_ms"`
}

// AppActivity returns one application's bins with requests in [from, to)
// on a grid of bin from from, with the mean size, read ratio and work.
func (s *Store) AppActivity(ctx context.Context, app string, from, to time.Time, bin time.Duration) ([]BinActivity, error) {
	if bin < time.Second || bin%time.Second != 0 {
		return nil, fmt.Errorf("bin width %v: use whole seconds", bin)
	}
	binSec := int64(bin / time.Second)
	src, srcArgs := activityRows(`app = ? AND bin_start >= toDateTime(?) AND bin_start < toDateTime(?)`,
		app, max(from.Unix(), 0), min(to.Unix(), math.MaxUint32))
	var out []BinActivity
	err := s.query(ctx, func(rows scanner) error {
		var (
			i                  int64
			n                  uint64
			size, read, workMS float64
		)
		if err := rows.Scan(&i, &n, &size, &read, &workMS); err != nil {
			return err
		}
		b := BinActivity{Start: from.Add(time.Duration(i) * bin).UTC(), Requests: n}
		if n > 0 {
			b.MeanSizeMB, b.ReadRatio, b.MeanWorkMS = size/float64(n), read/float64(n), workMS/float64(n)
		}
		out = append(out, b)
		return nil
	}, `SELECT intDiv(toInt64(toUInt32(bin_start)) - ?, ?) AS i, sum(requests), sum(size_mb_sum), sum(read_ratio_sum), sum(work_ms_sum)
			FROM `+src+`
			GROUP BY i ORDER BY i`, append([]any{from.Unix(), binSec}, srcArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("read activity of %s: %w", app, err)
	}
	return out, nil
}
