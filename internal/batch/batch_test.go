package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logRecords is a slog handler that keeps every record, for tests that
// check what a component said against what it did.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// sum adds up the int attribute key of the records whose message holds
// substr.
func (l *logRecords) sum(substr, key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, r := range l.recs {
		if !strings.Contains(r.Message, substr) {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				n += a.Value.Int64()
			}
			return true
		})
	}
	return n
}

func (l *logRecords) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.recs {
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		b.WriteString("\n")
	}
	return b.String()
}

// failingWriter refuses every write until healed, counting the calls and
// keeping the rows of the writes it accepted.
type failingWriter struct {
	calls  atomic.Int64
	mu     sync.Mutex
	healed bool
	rows   []int
}

func (w *failingWriter) write(_ context.Context, rows []int) error {
	w.calls.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.healed {
		return errors.New("clickhouse down")
	}
	w.rows = append(w.rows, rows...)
	return nil
}

func (w *failingWriter) heal() {
	w.mu.Lock()
	w.healed = true
	w.mu.Unlock()
}

func (w *failingWriter) written() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.rows...)
}

// During an outage, rows added past half full do not each trigger a write:
// after a failed flush, Add starts no flush before the backoff has passed.
func TestBatcherBacksOffDuringAnOutage(t *testing.T) {
	w := &failingWriter{}
	const capacity = 1000
	b := New(w.write, time.Hour, capacity, slog.New(&logRecords{}))
	for i := range 5 * capacity { // 4500 adds past half full
		b.Add(i)
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // let the flusher run, as a live worker would
		}
	}
	time.Sleep(50 * time.Millisecond)
	calls := w.calls.Load()
	t.Logf("writer calls for %d adds past half full during an outage: %d", 5*capacity-capacity/2, calls)
	require.LessOrEqual(t, calls, int64(3), "a failed flush must pause the flushes Add triggers")

	// The newest capacity rows are kept and written once the store is back.
	w.heal()
	require.NoError(t, b.Close())
	got := w.written()
	require.Len(t, got, capacity)
	for i, r := range got {
		require.Equal(t, 4*capacity+i, r, "the oldest rows are dropped, the rest written in order")
	}
}

// With a short interval, the periodic flusher keeps retrying during the
// outage and everything kept is written, once and in order, when the store
// is back.
func TestBatcherRetriesOnItsScheduleAndCatchesUp(t *testing.T) {
	w := &failingWriter{}
	const capacity = 100
	b := New(w.write, 10*time.Millisecond, capacity, slog.New(&logRecords{}))
	for i := range 80 {
		b.Add(i)
		time.Sleep(time.Millisecond)
	}
	require.Eventually(t, func() bool { return w.calls.Load() >= 3 }, 5*time.Second, 5*time.Millisecond,
		"the periodic flusher retries during the outage")
	w.heal()
	require.Eventually(t, func() bool { return len(w.written()) == 80 }, 5*time.Second, 5*time.Millisecond)
	b.Close()
	got := w.written()
	require.Len(t, got, 80, "written once")
	for i, r := range got {
		require.Equal(t, i, r)
	}
}

// What Close says about the rows it could not write is what happened to
// them: the rows its log reports dropped are exactly those the store never
// got.
func TestBatcherCloseReportsWhatItDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int
		adds int
	}{
		{"within the bound", 100, 7},
		{"past the bound", 5, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecords{}
			w := &failingWriter{}
			b := New(w.write, time.Hour, tc.max, slog.New(logs))
			for i := range tc.adds {
				b.Add(i)
			}
			err := b.Close() // the store is still down
			lost := int64(tc.adds - len(w.written()))
			require.Equal(t, int64(tc.adds), lost, "nothing was written")
			require.Equal(t, lost, logs.sum("dropped", "rows"),
				"the rows the log says were dropped are the rows never written; the log:\n%s", logs)
			require.ErrorContains(t, err, "clickhouse down")
			require.ErrorContains(t, err, fmt.Sprintf("%d dropped at close", min(tc.adds, tc.max)))
		})
	}
}
