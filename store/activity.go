package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// visible restricts activity rows to live ones and to the winning attempt
// of every committed load.
const visible = `(load_id = '' OR load_id IN (SELECT min(load_id) FROM loads GROUP BY content_key))`

// LoadOptions describes a trace load.
type LoadOptions struct {
	Format    string             // recorded with the load: azure2019, events, synth…
	Source    string             // recorded: the file or generator settings
	BatchRows int                // activity rows per insert; 0 = 250,000
	Progress  func(LoadProgress) // called after each batch; may be nil
}

// LoadProgress reports how far a load is.
type LoadProgress struct {
	Rows, TotalRows int64 // activity rows (bins with requests) written / to write
	Requests        uint64
	TotalRequests   uint64
	Elapsed         time.Duration
}

// LoadResult says what a load stored.
type LoadResult struct {
	LoadID     string        `json:"load_id"`     // this attempt's ID, or the earlier load's when Duplicate
	ContentKey string        `json:"content_key"` // hash of the trace's content: the load's identity
	Duplicate  bool          `json:"duplicate"`   // the same content was loaded before: nothing written
	InProgress bool          `json:"in_progress"` // Duplicate because another attempt (LoadID) is loading it now
	Apps       int           `json:"apps"`
	Bins       int           `json:"bins"`
	Rows       int64         `json:"rows"`     // activity rows (bins with at least one request)
	Requests   uint64        `json:"requests"` // total requests
	First      time.Time     `json:"first"`
	Last       time.Time     `json:"last"` // start of the last bin
	Elapsed    time.Duration `json:"-"`
}

// LoadTrace stores a trace's activity and application profiles. The load
// is identified by a hash of the trace's content: loading the same content
// again (even concurrently) is reported as Duplicate and changes nothing.
// Rows become visible only once all are written; after a failure nothing of
// the load is visible (its rows are deleted on a best-effort basis).
func (s *Store) LoadTrace(ctx context.Context, tr *trace.Trace, opt LoadOptions) (LoadResult, error) {
	started := time.Now()
	if err := tr.Validate(); err != nil {
		return LoadResult{}, err
	}
	if tr.Bin < time.Second || tr.Bin%time.Second != 0 {
		return LoadResult{}, fmt.Errorf("bin width %v: the store keeps whole seconds, use a bin of 1s or more", tr.Bin)
	}
	if tr.Start.Unix() < 0 || tr.End().Unix() > math.MaxUint32 || tr.Start.Nanosecond() != 0 {
		return LoadResult{}, fmt.Errorf("trace %v – %v: the store keeps whole seconds between 1970 and 2106", tr.Start, tr.End())
	}
	if opt.BatchRows <= 0 {
		opt.BatchRows = 250_000
	}
	res := LoadResult{ContentKey: contentKey(tr), Apps: len(tr.Apps), Bins: tr.Bins, Requests: tr.Total(),
		First: tr.Start, Last: tr.BinStart(max(0, tr.Bins-1))}
	for _, a := range tr.Apps {
		for _, c := range a.Counts {
			if c > 0 {
				res.Rows++
			}
		}
	}
	if prev, err := s.committedLoad(ctx, res.ContentKey); err != nil {
		return res, err
	} else if prev != "" {
		res.LoadID, res.Duplicate, res.Elapsed = prev, true, time.Since(started)
		return res, nil
	}
	res.LoadID = newLoadID()
	log := s.log.With("load", res.LoadID, "source", opt.Source)
	if holder, committed, err := s.claim(ctx, res.ContentKey, res.LoadID); err != nil {
		return res, err
	} else if holder != res.LoadID {
		log.Info("the same content is loaded by another attempt", "holder", holder, "committed", committed)
		res.LoadID, res.Duplicate, res.InProgress, res.Elapsed = holder, true, !committed, time.Since(started)
		return res, nil
	}
	log.Info("loading trace", "apps", res.Apps, "bins", res.Bins, "rows", res.Rows, "requests", res.Requests)

	if err := s.writeLoad(ctx, tr, opt, &res, started); err != nil {
		s.discardLoad(res.ContentKey, res.LoadID)
		return res, err
	}
	// Commit: the load record makes the rows visible.
	err := s.insert(ctx, "loads", "load_id, content_key, format, source, apps, bins, bin_seconds, rows, requests, first_bin, last_bin, loaded_at", 1, func(int) []any {
		return []any{res.LoadID, res.ContentKey, opt.Format, opt.Source, uint32(res.Apps), uint32(res.Bins),
			uint32(tr.Bin / time.Second), uint64(res.Rows), res.Requests, res.First, res.Last, time.Now()}
	})
	if err != nil {
		s.discardLoad(res.ContentKey, res.LoadID)
		return res, fmt.Errorf("commit load %s: %w", res.LoadID, err)
	}
	// A concurrent load of the same content may have committed too; the
	// smallest load ID wins, the other is discarded and reports Duplicate.
	winner, err := s.committedLoad(ctx, res.ContentKey)
	if err != nil {
		return res, err
	}
	if winner != res.LoadID {
		log.Info("a concurrent load of the same content won", "winner", winner)
		s.discardLoad(res.ContentKey, res.LoadID)
		res.LoadID, res.Duplicate = winner, true
	} else {
		s.releaseClaim(ctx, res.ContentKey, res.LoadID)
	}
	res.Elapsed = time.Since(started)
	return res, nil
}

// writeLoad writes the profiles and the activity rows under res.LoadID.
func (s *Store) writeLoad(ctx context.Context, tr *trace.Trace, opt LoadOptions, res *LoadResult, started time.Time) error {
	now := nanos(time.Now())
	err := s.insert(ctx, "app_profiles", "app, load_id, memory_mb, read_ratio, duration_ms, volume_type, updated_ns", len(tr.Apps), func(i int) []any {
		a := &tr.Apps[i]
		return []any{a.ID, res.LoadID, a.MemoryMB, a.ReadRatio, a.DurationMS, "", now}
	})
	if err != nil {
		return err
	}
	// Columns of one batch, reused. Rows go out bin by bin (the sort key's
	// first column), so each block lands mostly in order.
	n := min(int64(opt.BatchRows), res.Rows)
	var (
		bins     = make([]int64, 0, n)
		apps     = make([]string, 0, n)
		loadIDs  = make([]string, 0, n)
		requests = make([]uint64, 0, n)
		sizes    = make([]float64, 0, n)
		reads    = make([]float64, 0, n)
		works    = make([]float64, 0, n)
		done     LoadProgress
	)
	done.TotalRows, done.TotalRequests = res.Rows, res.Requests
	flush := func() error {
		if len(bins) == 0 {
			return nil
		}
		err := s.insertColumns(ctx, "activity", "bin_start, app, load_id, requests, size_mb_sum, read_ratio_sum, work_ms_sum",
			bins, apps, loadIDs, requests, sizes, reads, works)
		if err != nil {
			return fmt.Errorf("load %s: %w", res.LoadID, err)
		}
		if err := s.refreshClaim(ctx, res.ContentKey, res.LoadID); err != nil {
			return err
		}
		done.Rows += int64(len(bins))
		for _, r := range requests {
			done.Requests += r
		}
		done.Elapsed = time.Since(started)
		if opt.Progress != nil {
			opt.Progress(done)
		}
		bins, apps, loadIDs, requests = bins[:0], apps[:0], loadIDs[:0], requests[:0]
		sizes, reads, works = sizes[:0], reads[:0], works[:0]
		return nil
	}
	binSec := int64(tr.Bin / time.Second)
	for b := range tr.Bins {
		at := tr.Start.Unix() + int64(b)*binSec
		for i := range tr.Apps {
			a := &tr.Apps[i]
			c := a.Counts[b]
			if c == 0 {
				continue
			}
			n := float64(c)
			bins = append(bins, at)
			apps = append(apps, a.ID)
			loadIDs = append(loadIDs, res.LoadID)
			requests = append(requests, uint64(c))
			sizes = append(sizes, n*a.MemoryMB)
			reads = append(reads, n*a.ReadRatio)
			works = append(works, n*a.DurationMS)
			if len(bins) == opt.BatchRows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("load %s: %w", res.LoadID, err)
		}
	}
	return flush()
}

// committedLoad returns the winning load ID of a content key, "" if none.
func (s *Store) committedLoad(ctx context.Context, key string) (string, error) {
	var id string
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, "SELECT min(load_id) FROM loads WHERE content_key = ? GROUP BY content_key", key)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&id); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return "", fmt.Errorf("look up loads: %w", err)
	}
	return id, nil
}

// discardLoad deletes an uncommitted or losing attempt's rows. They are
// invisible anyway, so failure here only costs disk space.
func (s *Store) discardLoad(key, loadID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.releaseClaim(ctx, key, loadID)
	for _, table := range []string{"activity", "app_profiles"} {
		if err := s.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE load_id = ?", loadID); err != nil {
			s.log.Warn("cannot delete the rows of a discarded load (they stay invisible)", "load", loadID, "table", table, "err", err)
		}
	}
}

// newLoadID orders attempts by start time: the earliest committed wins.
func newLoadID() string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("L%016x%s", time.Now().UnixNano(), hex.EncodeToString(r[:]))
}

// contentKey hashes everything a load stores.
func contentKey(tr *trace.Trace) string {
	h := sha256.New()
	var buf [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	put(uint64(tr.Start.Unix()))
	put(uint64(tr.Bin))
	put(uint64(tr.Bins))
	counts := make([]byte, 0, 4*tr.Bins)
	for _, a := range tr.Apps {
		put(uint64(len(a.ID)))
		h.Write([]byte(a.ID))
		put(math.Float64bits(a.MemoryMB))
		put(math.Float64bits(a.ReadRatio))
		put(math.Float64bits(a.DurationMS))
		counts = counts[:0]
		for _, c := range a.Counts {
			counts = binary.LittleEndian.AppendUint32(counts, c)
		}
		h.Write(counts)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Load is a committed trace load.
type Load struct {
	ID         string        `json:"id"`
	ContentKey string        `json:"content_key"`
	Format     string        `json:"format"`
	Source     string        `json:"source"`
	Apps       int           `json:"apps"`
	Bins       int           `json:"bins"`
	Bin        time.Duration `json:"-"`
	BinSeconds int           `json:"bin_seconds"`
	Rows       int64         `json:"rows"`
	Requests   uint64        `json:"requests"`
	First      time.Time     `json:"first"`
	Last       time.Time     `json:"last"` // start of the last bin
	LoadedAt   time.Time     `json:"loaded_at"`
}

// Loads lists the visible loads, oldest first.
func (s *Store) Loads(ctx context.Context) ([]Load, error) {
	var out []Load
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT load_id, content_key, format, source, apps, bins, bin_seconds, rows, requests, first_bin, last_bin, loaded_at
			FROM loads WHERE load_id IN (SELECT min(load_id) FROM loads GROUP BY content_key) ORDER BY load_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l Load
			var apps, bins, binSec uint32
			var nrows uint64
			if err := rows.Scan(&l.ID, &l.ContentKey, &l.Format, &l.Source, &apps, &bins, &binSec, &nrows, &l.Requests, &l.First, &l.Last, &l.LoadedAt); err != nil {
				return err
			}
			l.Apps, l.Bins, l.Bin, l.BinSeconds, l.Rows = int(apps), int(bins), time.Duration(binSec)*time.Second, int(binSec), int64(nrows)
			l.First, l.Last, l.LoadedAt = l.First.UTC(), l.Last.UTC(), l.LoadedAt.UTC()
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list loads: %w", err)
	}
	return out, nil
}

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
		err := s.conn.QueryRow(ctx, `SELECT uniqExact(app), uniqExact(bin_start), sum(requests), min(bin_start), max(bin_start)
			FROM activity WHERE `+visible).Scan(&st.Apps, &st.Bins, &st.Requests, &st.First, &st.Last)
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
	query := `SELECT app, groupArray(toUInt32(intDiv(toInt64(toUInt32(bin_start)) - ?, ?))), groupArray(requests)
		FROM activity
		WHERE bin_start >= toDateTime(?) AND bin_start < toDateTime(?) AND ` + visible
	args := []any{from.Unix(), binSec, lo, hi}
	var wanted map[string]bool
	if len(appIDs) > 0 && len(appIDs) <= maxAppFilter {
		query += ` AND has(?, app)`
		args = append(args, appIDs)
	} else if len(appIDs) > 0 {
		wanted = make(map[string]bool, len(appIDs))
		for _, id := range appIDs {
			wanted[id] = true
		}
	}
	query += ` GROUP BY app`
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
					return fmt.Errorf("more than %d apps × %d bins: too large for one read; narrow the time range or widen the bin", len(out), bins)
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
}

// AppProfiles returns every known application's profile, sorted by ID:
// from loaded traces, overridden by the means of its live requests.
func (s *Store) AppProfiles(ctx context.Context) ([]AppProfile, error) {
	byID := map[string]*AppProfile{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT app, argMax(memory_mb, updated_ns), argMax(read_ratio, updated_ns), argMax(duration_ms, updated_ns)
			FROM app_profiles WHERE load_id IN (SELECT min(load_id) FROM loads GROUP BY content_key) GROUP BY app`)
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
		live, err := s.conn.Query(ctx, `SELECT app, avg(size_mb), avg(read_ratio), avg(work_ms), argMax(volume_type, at_ns) FROM requests GROUP BY app`)
		if err != nil {
			return err
		}
		defer live.Close()
		for live.Next() {
			var p AppProfile
			if err := live.Scan(&p.ID, &p.MemoryMB, &p.ReadRatio, &p.DurationMS, &p.VolumeType); err != nil {
				return err
			}
			if old, ok := byID[p.ID]; ok && p.DurationMS == 0 {
				p.DurationMS = old.DurationMS // requests served cold or failed carry no work time
			}
			byID[p.ID] = &p
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

// LoadFile reads a trace file in the given format, validating all of it,
// and loads it; a bad file returns the reader's *trace.InputError and
// stores nothing. opt.Format and opt.Source default to the format and path.
func (s *Store) LoadFile(ctx context.Context, format, path string, ropt trace.ReadOptions, opt LoadOptions) (LoadResult, error) {
	tr, err := trace.Read(format, path, ropt)
	if err != nil {
		return LoadResult{}, err
	}
	opt.Format = cmp.Or(opt.Format, format)
	opt.Source = cmp.Or(opt.Source, path)
	return s.LoadTrace(ctx, tr, opt)
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
	var out []BinActivity
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT intDiv(toInt64(toUInt32(bin_start)) - ?, ?) AS i, sum(requests), sum(size_mb_sum), sum(read_ratio_sum), sum(work_ms_sum)
			FROM activity
			WHERE app = ? AND bin_start >= toDateTime(?) AND bin_start < toDateTime(?) AND `+visible+`
			GROUP BY i ORDER BY i`, from.Unix(), binSec, app, max(from.Unix(), 0), min(to.Unix(), math.MaxUint32))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
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
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read activity of %s: %w", app, err)
	}
	return out, nil
}
