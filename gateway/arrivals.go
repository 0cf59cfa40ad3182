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
	cutTo   int64                       // bins before this one are cut: later counts go to it
	pending []pendingBatch              // ended bins not yet written, oldest first
	dropped int
	spool   *spool     // nil: counts live in memory only
	left    []*leftRun // previous runs' batches to write (from the spool)
}

// pendingBatch is an ended bin's batch.
type pendingBatch struct {
	bin int64
	store.ArrivalBatch
}

// maxPending bounds the batches kept in memory while the store is down
// (the oldest are dropped beyond it, and counted in the log; with a spool
// they stay in it, and the next start writes them).
const maxPending = 10_000

func newArrivals(id string, bin time.Duration, write func(context.Context, store.ArrivalBatch) error, log *slog.Logger) *arrivals {
	return &arrivals{id: id, run: time.Now().UTC().Format("20060102T150405.000000000"), bin: bin, write: write, log: log,
		open: map[int64]map[string]uint64{}}
}

// useSpool opens this run's spool in dir and reads the runs that died
// there before (written by the flush loop, ahead of this run's batches).
func (a *arrivals) useSpool(dir string) error {
	if a.write == nil {
		return fmt.Errorf("spool folder %s: the spool needs an arrivals writer (Config.Arrivals)", dir)
	}
	sp, err := openSpool(dir, a.id, a.run, a.bin, a.log)
	if err != nil {
		return err
	}
	left, err := leftovers(dir, a.run, a.log)
	if err != nil {
		sp.close(true)
		for _, l := range left {
			l.lock.Close()
		}
		return err
	}
	a.spool, a.left = sp, left
	return nil
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
	// A request that arrived as its bin was cut counts in the next one: a
	// batch name is never used for two different sets of rows.
	b = max(b, a.cutTo)
	if a.spool != nil {
		a.spool.count(b, app)
	}
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
		// The open bin at shutdown is its own batch: its later requests
		// are another gateway's.
		name := batchName(a.run, b, b >= cur)
		if a.spool != nil {
			a.spool.cut(b, name)
		}
		a.pending = append(a.pending, pendingBatch{b, store.ArrivalBatch{Router: a.id, Batch: name, Rows: rowsOf(b, a.open[b])}})
		delete(a.open, b)
	}
	a.cutTo = max(a.cutTo, cur)
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
	if a.writeLeft(ctx) == nil {
		_ = a.writePending(ctx)
	}
}

// writeLeft writes the batches of previous runs replayed from the spool,
// removing a run's files once all of them are written.
func (a *arrivals) writeLeft(ctx context.Context) error {
	for len(a.left) > 0 {
		l := a.left[0]
		for len(l.batches) > 0 {
			if err := a.writeOne(ctx, l.batches[0]); err != nil {
				return err
			}
			l.batches = l.batches[1:]
		}
		l.finish()
		a.log.Info("spool: previous run written", "run", l.run)
		a.left = a.left[1:]
	}
	return nil
}

func (a *arrivals) writeOne(ctx context.Context, b store.ArrivalBatch) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := a.write(wctx, b)
	if err != nil {
		a.log.Warn("arrival batch not written; retrying", "router", b.Router, "batch", b.Batch, "err", err)
	}
	return err
}

func (a *arrivals) writePending(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.dropped > 0 {
			a.log.Error("arrival batches dropped from memory: the store was unreachable too long (a spool keeps them for the next start)", "batches", a.dropped, "spool", a.spool != nil)
			a.dropped = 0
		}
		if len(a.pending) == 0 {
			a.mu.Unlock()
			return nil
		}
		b := a.pending[0]
		a.mu.Unlock()
		if err := a.writeOne(ctx, b.ArrivalBatch); err != nil {
			return err
		}
		a.mu.Lock()
		if len(a.pending) > 0 && a.pending[0].Batch == b.Batch {
			a.pending = a.pending[1:]
		}
		if a.spool != nil {
			a.spool.written(b.bin)
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
		err := a.writeLeft(ctx)
		if err == nil {
			err = a.writePending(ctx)
		}
		if err == nil {
			a.closeSpool(true)
			return nil
		}
		select {
		case <-ctx.Done():
			a.mu.Lock()
			n := len(a.pending)
			a.mu.Unlock()
			a.closeSpool(false)
			return errors.Join(fmt.Errorf("%d arrival batches not written at shutdown", n), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// closeSpool ends the spool: removed when everything is written, left
// (with the previous runs not yet written) for the next start otherwise.
func (a *arrivals) closeSpool(done bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spool != nil {
		a.spool.close(done)
	}
	for _, l := range a.left {
		l.lock.Close()
	}
	a.left = nil
}
