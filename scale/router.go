package scale

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/forewarm/forewarm/store"
)

// Router reports the fleet's requests as a platform's router would: when
// each live bin ends, one batch of (application, bin, requests) rows for
// the applications that had requests in it, written to the store. It
// never signals a loop: the worker's arrival watch wakes the loops an
// arrival can change.
type Router struct {
	Fleet  *Fleet
	Start  time.Time     // start of live bin 0
	Bin    time.Duration // live bin width
	Record func(context.Context, store.ArrivalBatch) error
	// ID is the router's identity in its batches (default "scale-router");
	// each batch is named by the run's start, the bin and its first row,
	// so a retried batch counts once and no two batches share a name.
	ID string
	// Delay is how long after a bin ends its batch is written (default a
	// twentieth of the bin, at most 500 ms): within the grace the loops
	// give late reports.
	Delay time.Duration
	// Grace is when a batch counts as late (the worker freezes the bin).
	Grace time.Duration
	Batch int // rows per insert (default 200,000)

	mu    sync.Mutex
	stats RouterStats
}

// RouterStats is what the router reported.
type RouterStats struct {
	Bins     int           // live bins reported
	Rows     int64         // (application, bin) rows written
	Requests uint64        // requests in them
	Late     int           // bins whose batch landed after the grace
	MaxWrite time.Duration // the slowest batch
}

// Stats returns the counters so far.
func (r *Router) Stats() RouterStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Router) rows(i int, buf []store.Arrival) []store.Arrival {
	at := r.Start.Add(time.Duration(i) * r.Bin)
	for k := range r.Fleet.Apps {
		if c := r.Fleet.Count(k, i); c > 0 {
			buf = append(buf, store.Arrival{App: r.Fleet.Apps[k].ID, Bin: at, Requests: uint64(c)})
		}
	}
	return buf
}

// record writes buf as the batch named name.
func (r *Router) record(ctx context.Context, name string, buf []store.Arrival) error {
	id := r.ID
	if id == "" {
		id = "scale-router"
	}
	return r.Record(ctx, store.ArrivalBatch{Router: id, Batch: r.Start.UTC().Format(time.RFC3339Nano) + "/" + name, Rows: buf})
}

func (r *Router) batch() int {
	if r.Batch <= 0 {
		return 200_000
	}
	return r.Batch
}

// History writes the bins bins before the start, as the router would have
// reported them: the loops' history.
func (r *Router) History(ctx context.Context, bins int) (int64, error) {
	var buf []store.Arrival
	var rows int64
	for i := -bins; i < 0; i++ {
		buf = r.rows(i, buf)
		if len(buf) >= r.batch() || i == -1 {
			if err := r.record(ctx, fmt.Sprintf("history/%d", i), buf); err != nil {
				return rows, fmt.Errorf("history bin %d: %w", i, err)
			}
			rows += int64(len(buf))
			buf = buf[:0]
		}
	}
	return rows, nil
}

// Run reports live bin 0, 1, … as each ends, until ctx ends. A failed
// write is returned: a router that loses a batch would leave the loops
// deciding on requests that never arrived.
func (r *Router) Run(ctx context.Context) error {
	delay := r.Delay
	if delay <= 0 {
		delay = min(r.Bin/20, 500*time.Millisecond)
	}
	var buf []store.Arrival
	for i := 0; ; i++ {
		due := r.Start.Add(time.Duration(i+1) * r.Bin).Add(delay)
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		buf = r.rows(i, buf[:0])
		began := time.Now()
		for lo := 0; lo < len(buf); lo += r.batch() {
			if err := r.record(ctx, fmt.Sprintf("%d/%d", i, lo), buf[lo:min(lo+r.batch(), len(buf))]); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("report live bin %d: %w", i, err)
			}
		}
		took := time.Since(began)
		var reqs uint64
		for _, a := range buf {
			reqs += a.Requests
		}
		r.mu.Lock()
		r.stats.Bins++
		r.stats.Rows += int64(len(buf))
		r.stats.Requests += reqs
		r.stats.MaxWrite = max(r.stats.MaxWrite, took)
		if r.Grace > 0 && time.Now().After(due.Add(-delay).Add(r.Grace)) {
			r.stats.Late++
		}
		r.mu.Unlock()
	}
}
