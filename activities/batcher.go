package activities

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Batcher buffers rows that may be written late or lost on a crash
// (predictions: an audit trail, not state) and writes them in bulk, so
// thousands of loops ticking every second make one insert per interval
// instead of one per tick. When the store is down it keeps at most Max rows
// and drops the oldest, logging how many.
type Batcher[T any] struct {
	write    func(context.Context, []T) error
	interval time.Duration
	max      int
	log      *slog.Logger

	mu      sync.Mutex
	buf     []T
	dropped int
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

// NewBatcher starts a batcher that flushes every interval (or when max/2
// rows wait).
func NewBatcher[T any](write func(context.Context, []T) error, interval time.Duration, max int, log *slog.Logger) *Batcher[T] {
	b := &Batcher[T]{write: write, interval: interval, max: max, log: log,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go b.run()
	return b
}

// Add queues rows; it never blocks on the store.
func (b *Batcher[T]) Add(rows ...T) {
	b.mu.Lock()
	b.buf = append(b.buf, rows...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0:0], b.buf[over:]...)
		b.dropped += over
	}
	full := len(b.buf) >= b.max/2
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// Close flushes what is left and stops the batcher.
func (b *Batcher[T]) Close() {
	close(b.done)
	<-b.stopped
}

func (b *Batcher[T]) run() {
	defer close(b.stopped)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.kick:
		case <-b.done:
			b.flush()
			return
		}
		b.flush()
	}
}

func (b *Batcher[T]) flush() {
	b.mu.Lock()
	rows, dropped := b.buf, b.dropped
	b.buf, b.dropped = nil, 0
	b.mu.Unlock()
	if dropped > 0 {
		b.log.Warn("store too slow or down: dropped buffered rows", "rows", dropped)
	}
	if len(rows) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.write(ctx, rows); err != nil {
		b.log.Warn("batched write failed; keeping rows for the next flush", "rows", len(rows), "err", err)
		b.mu.Lock()
		b.buf = append(rows, b.buf...)
		if over := len(b.buf) - b.max; over > 0 {
			b.buf = b.buf[over:]
			b.dropped += over
		}
		b.mu.Unlock()
	}
}
