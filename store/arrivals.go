package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Arrival is one application's requests in one bin, as a platform's
// router reports them: counted where requests are routed, written here in
// batches, never one call per request.
type Arrival struct {
	App      string    `json:"app"`
	Bin      time.Time `json:"bin"` // start of the bin
	Requests uint64    `json:"requests"`
}

const arrivalCols = "bin_start, app, load_id, requests, size_mb_sum, read_ratio_sum, work_ms_sum"

// RecordArrivals writes a router's batch to the live activity history
// (rows of one bin may come in several batches: they add up). A batch with
// a row no router can report (no app, no requests, no time) is refused
// whole, naming the row.
func (s *Store) RecordArrivals(ctx context.Context, as []Arrival) error {
	for i, a := range as {
		switch {
		case a.App == "":
			return fmt.Errorf("arrival %d: empty app", i)
		case a.Requests == 0:
			return fmt.Errorf("arrival %d (%s): zero requests", i, a.App)
		case a.Bin.Unix() <= 0 || a.Bin.Unix() > math.MaxUint32:
			return fmt.Errorf("arrival %d (%s): bin %v is outside what a DateTime holds", i, a.App, a.Bin)
		}
	}
	if len(as) == 0 {
		return nil
	}
	n := len(as)
	var (
		bins  = make([]time.Time, n)
		apps  = make([]string, n)
		loads = make([]string, n)
		reqs  = make([]uint64, n)
		zeros = make([]float64, n)
	)
	for i, a := range as {
		bins[i], apps[i], reqs[i] = a.Bin, a.App, a.Requests
	}
	return s.insertColumns(ctx, "activity", arrivalCols, bins, apps, loads, reqs, zeros, zeros, zeros)
}

// BusyBins is one application's bins with requests, ascending.
type BusyBins struct {
	Starts []int64 // bin starts, Unix seconds
	Counts []uint64
}

// BusyBins returns, per app, every bin of width bin in [from, to) with
// requests (loaded history and live rows alike, summed), in one query: a
// sparse read, for fleets where most bins are idle.
func (s *Store) BusyBins(ctx context.Context, from, to time.Time, bin time.Duration) (map[string]BusyBins, error) {
	if bin < time.Second || bin%time.Second != 0 {
		return nil, fmt.Errorf("bin width %v: use whole seconds", bin)
	}
	sec := int64(bin / time.Second)
	lo, hi := max(from.Unix(), 0), min(to.Unix(), math.MaxUint32)
	query := `SELECT app, groupArray(intDiv(toUInt32(bin_start), ?) * ?), groupArray(requests)
		FROM activity
		WHERE bin_start >= toDateTime(?) AND bin_start < toDateTime(?) AND ` + visible + `
		GROUP BY app`
	out := map[string]BusyBins{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, query, sec, sec, lo, hi)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			app    string
			starts []uint64
			counts []uint64
		)
		for rows.Next() {
			if err := rows.Scan(&app, &starts, &counts); err != nil {
				return err
			}
			out[app] = busyBins(starts, counts)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read busy bins %v – %v: %w", from.UTC(), to.UTC(), err)
	}
	return out, nil
}

// busyBins sorts one app's (start, count) pairs and adds up repeated
// starts (unmerged parts, several batches, live and loaded rows).
func busyBins(starts, counts []uint64) BusyBins {
	idx := make([]int, len(starts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case starts[a] < starts[b]:
			return -1
		case starts[a] > starts[b]:
			return 1
		}
		return 0
	})
	var b BusyBins
	for _, i := range idx {
		st := int64(starts[i])
		if k := len(b.Starts) - 1; k >= 0 && b.Starts[k] == st {
			b.Counts[k] += counts[i]
			continue
		}
		if counts[i] > 0 {
			b.Starts, b.Counts = append(b.Starts, st), append(b.Counts, counts[i])
		}
	}
	return b
}
