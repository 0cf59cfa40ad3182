package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/forewarm/forewarm/store"
)

// arrivals counts requests per application and bin and writes each bin,
// once it has ended, as one batch named by the gateway, its start and the
// bin: a batch retried after a lost acknowledgement counts once, and
// gateways behind one load balancer each write their own.
type arrivals struct {
	id    string
	run   string // this process's start, in every batch name
	bin   time.Duration
	write func(context.Context, store.ArrivalBatch) error
	log   *slog.Logger

	mu      sync.Mutex
	open    map[int64]map[string]uint64 // bin start (Unix ns) → app → requests
	pending []store.ArrivalBatch        // ended bins not yet written, oldest first
	dropped int
}

// maxPending bounds the batches kept while the store is down (the oldest
// are dropped beyond it, and counted in the log).
const maxPending = 10_000

func newArrivals(id string, bin time.Duration, write func(context.Context, store.ArrivalBatch) error, log *slog.Logger) *arrivals {
	return &arrivals{id: id, run: time.Now().UTC().Format("20060102T150405.000000000"), bin: bin, write: write, log: log,
		open: map[int64]map[string]uint64{}}
}

// tick is how often ended bins are looked for: a twentieth of the bin,
// between 10 ms and 500 ms, so a bin's batch lands well within the grace
// the loops give late reports.
func (a *arrivals) tick() time.Duration {
	return min(max(a.bin/20, 10*time.Millisecond), 500*time.Millisecond)
}

func (a *arrivals) count(app string, at time.Time) {
	if a.write == nil {
		return
	}
	b := at.Truncate(a.bin).UnixNano()
	a.mu.Lock()
	m := a.open[b]
	if m == nil {
		m = map[string]uint64{}
		a.open[b] = m
	}
	m[app]++
	a.mu.Unlock()
}

// cut moves every bin that ended before now (all of them when final) into
// pending batches.
func (a *arrivals) cut(now time.Time, final bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := now.Truncate(a.bin).UnixNano()
	var ended []int64
	for b := range a.open {
		if b < cur || final {
			ended = append(ended, b)
		}
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i] < ended[j] })
	for _, b := range ended {
		rows := make([]store.Arrival, 0, len(a.open[b]))
		for app, n := range a.open[b] {
			rows = append(rows, store.Arrival{App: app, Bin: time.Unix(0, b).UTC(), Requests: n})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].App < rows[j].App })
		name := fmt.Sprintf("%s/%d", a.run, b)
		if b >= cur {
			name += "/final" // the open bin at shutdown; its later requests are another gateway's
		}
		a.pending = append(a.pending, store.ArrivalBatch{Router: a.id, Batch: name, Rows: rows})
		delete(a.open, b)
	}
	if over := len(a.pending) - maxPending; over > 0 {
		a.pending = a.pending[over:]
		a.dropped += over
	}
}

// flush writes the pending batches in order, stopping at the first that
// fails (it is retried as it is at the next tick).
func (a *arrivals) flush(ctx context.Context) {
	if a.write == nil {
		return
	}
	a.cut(time.Now(), false)
	_ = a.writePending(ctx)
}

func (a *arrivals) writePending(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.dropped > 0 {
			a.log.Error("arrival batches dropped: the store was unreachable too long", "batches", a.dropped)
			a.dropped = 0
		}
		if len(a.pending) == 0 {
			a.mu.Unlock()
			return nil
		}
		b := a.pending[0]
		a.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.write(wctx, b)
		cancel()
		if err != nil {
			a.log.Warn("arrival batch not written; retrying", "batch", b.Batch, "err", err)
			return err
		}
		a.mu.Lock()
		if len(a.pending) > 0 && a.pending[0].Batch == b.Batch {
			a.pending = a.pending[1:]
		}
		a.mu.Unlock()
	}
}

// close writes every bin, the open one too, trying for as long as ctx
// allows.
func (a *arrivals) close(ctx context.Context) error {
	if a.write == nil {
		return nil
	}
	a.cut(time.Now(), true)
	for {
		err := a.writePending(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			a.mu.Lock()
			n := len(a.pending)
			a.mu.Unlock()
			return errors.Join(fmt.Errorf("%d arrival batches not written at shutdown", n), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
