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
	"time"

	"github.com/forewarm/forewarm/trace"
)

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
	err := s.query(ctx, func(rows scanner) error {
		if err := rows.Scan(&id); err != nil {
			return err
		}
		return nil
	}, "SELECT min(load_id) FROM loads WHERE content_key = ? GROUP BY content_key", key)
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
		// The rows live in the replicas' tables: a mutation there, on every shard.
		stmt := "ALTER TABLE " + s.layout.ref(s.layout.local(table)) + s.layout.onCluster() + " DELETE WHERE load_id = ?"
		if err := s.conn.Exec(ddlContext(ctx, s.layout.cluster), stmt, loadID); err != nil {
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
	err := s.query(ctx, func(rows scanner) error {
		var l Load
		var apps, bins, binSec uint32
		var nrows uint64
		if err := rows.Scan(&l.ID, &l.ContentKey, &l.Format, &l.Source, &apps, &bins, &binSec, &nrows, &l.Requests, &l.First, &l.Last, &l.LoadedAt); err != nil {
			return err
		}
		l.Apps, l.Bins, l.Bin, l.BinSeconds, l.Rows = int(apps), int(bins), time.Duration(binSec)*time.Second, int(binSec), int64(nrows)
		l.First, l.Last, l.LoadedAt = l.First.UTC(), l.Last.UTC(), l.LoadedAt.UTC()
		out = append(out, l)
		return nil
	}, `SELECT load_id, content_key, format, source, apps, bins, bin_seconds, rows, requests, first_bin, last_bin, loaded_at
			FROM loads WHERE load_id GLOBAL IN (SELECT min(load_id) FROM loads GROUP BY content_key) ORDER BY load_id`)
	if err != nil {
		return nil, fmt.Errorf("list loads: %w", err)
	}
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
