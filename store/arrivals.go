package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/forewarm/forewarm/store/chconn"
)

// Arrival is one application's requests in one bin, as a platform's
// router reports them: counted where requests are routed, written here in
// batches, never one call per request.
type Arrival struct {
	App      string    `json:"app"`
	Bin      time.Time `json:"bin"` // start of the bin
	Requests uint64    `json:"requests"`
}

// ArrivalBatch is one batch of a router's reports. Router and Batch are
// its identity: a batch written twice (a retry after a lost
// acknowledgement) counts once, and two batches count twice even when
// their rows are the same.
type ArrivalBatch struct {
	Router string    `json:"router"` // the reporting router: each router its own
	Batch  string    `json:"batch"`  // the same on every retry of the batch, never reused by the router for other rows
	Rows   []Arrival `json:"rows"`
}

// Settings of a router's batch on a cluster: written to two replicas
// before it is acknowledged (18.16 waits for one quorum write at a time per
// table, and tells a write it cannot wait for to retry, which a batch can:
// it counts once).
const (
	arrivalsQuorum               = 2
	arrivalsQuorumTimeout        = 10 * time.Second
	codeTooFewLiveReplicas       = 285
	codeUnsatisfiedQuorumForPrev = 286
	codeUnknownStatusOfInsert    = 319
)

const arrivalCols = "bin_start, app, router, batch, requests"

// RecordArrivals writes a router's batch (rows of one bin may come in
// several batches: they add up; the same batch written again does not). A
// batch without an identity, or with a row no router can report (no app,
// no requests, no time), is refused whole, naming the row.
//
// In a cluster the batch is acknowledged once two replicas hold it
// (insert_quorum), so a worker's mirror, which reads with
// select_sequential_consistency, never freezes a bin without an
// acknowledged batch, whichever replica it reads. The price: while a
// replica is down the batches are refused (the router retries them).
func (s *Store) RecordArrivals(ctx context.Context, b ArrivalBatch) error {
	switch {
	case b.Router == "":
		return errors.New("arrival batch: empty router ID")
	case b.Batch == "":
		return fmt.Errorf("arrival batch of router %s: empty batch ID", b.Router)
	}
	type key struct {
		app string
		bin int64
	}
	at := map[key]int{}
	var (
		bins []time.Time
		apps []string
		reqs []uint64
	)
	for i, a := range b.Rows {
		switch {
		case a.App == "":
			return fmt.Errorf("arrival %d: empty app", i)
		case a.Requests == 0:
			return fmt.Errorf("arrival %d (%s): zero requests", i, a.App)
		case a.Bin.Unix() <= 0 || a.Bin.Unix() > math.MaxUint32:
			return fmt.Errorf("arrival %d (%s): bin %v is outside what a DateTime holds", i, a.App, a.Bin)
		}
		// One row per (app, bin) of a batch: its identity in the table.
		k := key{a.App, a.Bin.Unix()}
		if j, ok := at[k]; ok {
			reqs[j] += a.Requests
			continue
		}
		at[k] = len(bins)
		bins, apps, reqs = append(bins, a.Bin), append(apps, a.App), append(reqs, a.Requests)
	}
	if len(bins) == 0 {
		return nil
	}
	routers, batches := make([]string, len(bins)), make([]string, len(bins))
	for i := range bins {
		routers[i], batches[i] = b.Router, b.Batch
	}
	if s.layout.cluster == "" {
		return s.insertColumns(ctx, "arrivals", arrivalCols, bins, apps, routers, batches, reqs)
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_quorum":         arrivalsQuorum,
		"insert_quorum_timeout": int(arrivalsQuorumTimeout.Milliseconds()),
	}))
	ctx, cancel := context.WithTimeout(qctx, s.timeout)
	defer cancel()
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := s.insertColumns(ctx, "arrivals", arrivalCols, bins, apps, routers, batches, reqs)
		if err == nil || !chconn.HasCode(err, codeUnsatisfiedQuorumForPrev, codeUnknownStatusOfInsert) {
			if chconn.HasCode(err, codeTooFewLiveReplicas) {
				err = fmt.Errorf("%w (a router's batch is acknowledged once %d replicas hold it)", err, arrivalsQuorum)
			}
			return err
		}
		// Another batch's quorum is still pending, or this one's is
		// unknown: write it again (it counts once).
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retried until: %v)", err, ctx.Err())
		}
	}
}

// activityRows is the activity reads see, as a subquery with the columns
// bin_start, app, requests, size_mb_sum, read_ratio_sum and work_ms_sum:
// the visible rows of the activity table (live requests, committed loads)
// and the routers' batches, each batch counted once however often it was
// written. cond restricts both (bin_start and app only); its arguments
// are bound once per part, so the returned arguments repeat args.
func activityRows(cond string, args ...any) (string, []any) {
	q := `(SELECT bin_start, app, requests, size_mb_sum, read_ratio_sum, work_ms_sum
			FROM activity WHERE ` + cond + ` AND ` + visible + `
		UNION ALL
		SELECT bin_start, app, any(requests) AS batch_requests, toFloat64(0) AS size_mb_sum, toFloat64(0) AS read_ratio_sum, toFloat64(0) AS work_ms_sum
			FROM arrivals WHERE ` + cond + `
			GROUP BY bin_start, app, router, batch)`
	return q, append(slices.Clone(args), args...)
}

// BusyBins is one application's bins with requests, ascending.
type BusyBins struct {
	Starts []int64 // bin starts, Unix seconds
	Counts []uint64
}

// BusyBins returns, per app, every bin of width bin in [from, to) with
// requests (loaded history, live rows and routers' batches alike, summed),
// in one query: a sparse read, for fleets where most bins are idle. In a
// cluster it reads with select_sequential_consistency: a replica that
// lacks a batch acknowledged by the quorum refuses the read rather than
// answer without it.
func (s *Store) BusyBins(ctx context.Context, from, to time.Time, bin time.Duration) (map[string]BusyBins, error) {
	if bin < time.Second || bin%time.Second != 0 {
		return nil, fmt.Errorf("bin width %v: use whole seconds", bin)
	}
	sec := int64(bin / time.Second)
	lo, hi := max(from.Unix(), 0), min(to.Unix(), math.MaxUint32)
	rows, args := activityRows(`bin_start >= toDateTime(?) AND bin_start < toDateTime(?)`, lo, hi)
	query := `SELECT app, groupArray(intDiv(toUInt32(bin_start), ?) * ?), groupArray(requests)
		FROM ` + rows + `
		GROUP BY app`
	args = append([]any{sec, sec}, args...)
	if s.layout.cluster != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"select_sequential_consistency": 1}))
	}
	out := map[string]BusyBins{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, query, args...)
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
