// Package batch writes rows in bulk, late and bounded: what the worker's
// activities and the gateway record but no state depends on. It is apart
// from the activities because the gateway uses it too.
package batch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Batcher buffers rows that may be written late or lost on a crash
// (predictions: an audit trail, not state) and writes them in bulk, so
// thousands of loops ticking every second make one insert per interval
// instead of one per tick. When the store is down it keeps at most max rows
// and drops the oldest, logging how many.
//
// A failed write pauses the early flushes Add triggers (at half full) for a
// backoff that starts at the interval and doubles on each failure up to
// maxBackoff (at least the interval); the periodic flush keeps retrying
// every interval. The rows of a failed write are retried as they are, not
// copied: an outage costs one failed write per interval, not one per Add.
type Batcher[T any] struct {
	write    func(context.Context, []T) error
	interval time.Duration
	max      int
	log      *slog.Logger

	mu sync.Mutex
	// retry holds the rows of the last failed write (or of the write in
	// flight), oldest first; buf the rows added since. Only their headers
	// change under mu: a write reads retry's rows while Add appends to buf.
	retry, buf []T
	inflight   bool // retry is being written: its rows cannot be dropped yet
	// cut: retry's oldest rows to drop if the write in flight fails (if it
	// succeeds they were written after all).
	cut      int
	dropped  int       // rows dropped and not yet logged
	failures int       // consecutive failed writes
	nextTry  time.Time // Add triggers no flush before this
	closeErr error

	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

// maxBackoff caps the pause of Add-triggered flushes after failed writes
// (raised to the interval when that is longer).
const maxBackoff = time.Minute

// New starts a batcher that flushes every interval (or when max/2
// rows wait and no failed write asks to wait longer).
func New[T any](write func(context.Context, []T) error, interval time.Duration, max int, log *slog.Logger) *Batcher[T] {
	b := &Batcher[T]{write: write, interval: interval, max: max, log: log,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go b.run()
	return b
}

// Add queues rows; it never blocks on the store.
func (b *Batcher[T]) Add(rows ...T) {
	b.mu.Lock()
	b.buf = append(b.buf, rows...)
	b.trim()
	full := b.kept() >= b.max/2 && !b.inflight && !time.Now().Before(b.nextTry)
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// kept is the number of rows waiting to be written (or retried); mu held.
func (b *Batcher[T]) kept() int { return len(b.retry) - b.cut + len(b.buf) }

// trim drops the oldest rows past max; mu held. The rows of a write in
// flight are only marked (cut) and dropped if that write fails. Reslicing,
// not copying: the arrays are released once written.
func (b *Batcher[T]) trim() {
	over := b.kept() - b.max
	if over <= 0 {
		return
	}
	k := min(over, len(b.retry)-b.cut)
	if b.inflight {
		b.cut += k
	} else {
		b.retry = b.retry[k:]
		b.dropped += k
	}
	if over -= k; over > 0 {
		b.buf = b.buf[over:]
		b.dropped += over
	}
}

// Close flushes what is left and stops the batcher. When that last write
// fails the rows are lost: Close logs how many (with the rows dropped
// earlier and not yet logged) and returns an error saying so. Rows added
// after Close are never written.
func (b *Batcher[T]) Close() error {
	close(b.done)
	<-b.stopped
	return b.closeErr
}

func (b *Batcher[T]) run() {
	defer close(b.stopped)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.kick:
			b.mu.Lock()
			wait := time.Now().Before(b.nextTry)
			b.mu.Unlock()
			if wait { // a kick sent before the last write failed
				continue
			}
		case <-b.done:
			b.closeErr = b.last()
			return
		}
		b.flush()
	}
}

// last writes everything kept, at close: the rows of a failed write first,
// then those added since.
func (b *Batcher[T]) last() error {
	for {
		n, err := b.flush()
		if err != nil {
			b.mu.Lock()
			lost := b.kept() + b.dropped
			b.retry, b.buf, b.cut, b.dropped = nil, nil, 0, 0
			b.mu.Unlock()
			b.log.Error("closing with the store refusing writes: dropped the rows never written", "rows", lost, "err", err)
			return fmt.Errorf("batched rows: %d dropped at close, never written: %w", lost, err)
		}
		if n == 0 {
			return nil
		}
	}
}

// flush writes the rows of the last failed write or, if none, the rows
// waiting; it returns how many it tried to write.
func (b *Batcher[T]) flush() (int, error) {
	b.mu.Lock()
	if len(b.retry) == 0 {
		b.retry, b.buf = b.buf, nil
	}
	rows, dropped := b.retry, b.dropped
	b.dropped = 0
	b.inflight = len(rows) > 0
	b.mu.Unlock()
	if dropped > 0 {
		b.log.Warn("store too slow or down: dropped buffered rows", "rows", dropped)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.write(ctx, rows)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight = false
	if err == nil {
		b.retry, b.cut, b.failures, b.nextTry = nil, 0, 0, time.Time{}
		return len(rows), nil
	}
	b.retry = b.retry[b.cut:]
	b.dropped += b.cut
	b.cut = 0
	b.failures++
	limit, backoff := max(maxBackoff, b.interval), b.interval
	for i := 1; i < b.failures && backoff < limit; i++ {
		backoff *= 2
	}
	backoff = min(backoff, limit)
	b.nextTry = time.Now().Add(backoff)
	b.log.Warn("batched write failed; rows kept for a later flush", "rows", len(rows), "kept", b.kept(),
		"failures", b.failures, "early_flush_paused", backoff, "err", err)
	return len(rows), err
}
