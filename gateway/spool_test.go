package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
)

// batches records what an arrivals writer was given.
type batches struct {
	mu  sync.Mutex
	got []store.ArrivalBatch
}

func (b *batches) write(_ context.Context, x store.ArrivalBatch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, x)
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// spooled is an arrivals counter with a spool in dir, under run.
func spooled(t *testing.T, dir, run string, write func(context.Context, store.ArrivalBatch) error, log *slog.Logger) *arrivals {
	t.Helper()
	a := newArrivals("gw-spool", time.Second, write, log)
	a.run = run
	require.NoError(t, a.useSpool(dir))
	return a
}

// abandon is the in-process equivalent of a SIGKILL: the files stay as
// they are and the run's lock goes (as the kernel drops it).
func (a *arrivals) abandon() {
	a.spool.f.Close()
	a.spool.lock.Close()
	for _, l := range a.left {
		l.lock.Close()
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// A dead run's bins are rebuilt from its spool: the one it wrote and
// marked is not written again, the one it cut keeps the name it was cut
// under, and the open one gets the name the dead run would have used.
func TestSpoolReplaysADeadRun(t *testing.T) {
	dir := t.TempDir()
	var first batches
	a := spooled(t, dir, "run1", first.write, quiet())
	for i := range 3 {
		a.count("a", t0.Add(time.Duration(i)*time.Millisecond))
	}
	a.count("b", t0.Add(time.Second))
	a.count("a", t0.Add(2*time.Second))
	a.cut(t0.Add(2*time.Second), false) // bins t0 and t0+1s end
	require.NoError(t, a.writeOne(context.Background(), a.pending[0].ArrivalBatch))
	a.pending = a.pending[1:]
	a.spool.written(t0.UnixNano()) // t0's batch acknowledged; t0+1s cut, not written
	a.count("a", t0.Add(2*time.Second+time.Millisecond))
	a.abandon()

	var second batches
	b := spooled(t, dir, "run2", second.write, quiet())
	require.Len(t, b.left, 1)
	require.Equal(t, []store.ArrivalBatch{
		{Router: "gw-spool", Batch: batchName("run1", t0.Add(time.Second).UnixNano(), false), Rows: []store.Arrival{{App: "b", Bin: t0.Add(time.Second), Requests: 1}}},
		{Router: "gw-spool", Batch: batchName("run1", t0.Add(2*time.Second).UnixNano(), false), Rows: []store.Arrival{{App: "a", Bin: t0.Add(2 * time.Second), Requests: 2}}},
	}, b.left[0].batches)
	require.NoError(t, b.writeLeft(context.Background()))
	require.Len(t, second.got, 2)
	names, _ := filepath.Glob(filepath.Join(dir, "run1*"))
	require.Empty(t, names, "a written run's files are removed")
	require.NoError(t, b.close(context.Background()))
	names, _ = filepath.Glob(filepath.Join(dir, "*"))
	require.Empty(t, names, "a run closed with everything written leaves nothing")
}

// A live run is not replayed by another gateway sharing the folder.
func TestSpoolLeavesALiveRunAlone(t *testing.T) {
	dir := t.TempDir()
	a := spooled(t, dir, "live", (&batches{}).write, quiet())
	a.count("a", t0)
	b := spooled(t, dir, "other", (&batches{}).write, quiet())
	require.Empty(t, b.left)
	a.abandon()
	b.abandon()
}

// A record cut short by a kill mid-write is skipped and logged, and the
// records before it count; a damaged record ends the segment's reading.
func TestSpoolSkipsAPartialRecord(t *testing.T) {
	dir := t.TempDir()
	a := spooled(t, dir, "run1", (&batches{}).write, quiet())
	for range 5 {
		a.count("a", t0)
	}
	path := a.spool.f.Name()
	a.abandon()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)-3], 0o600))

	var log bytes.Buffer
	b := spooled(t, dir, "run2", (&batches{}).write, slog.New(slog.NewTextHandler(&log, nil)))
	require.Len(t, b.left, 1)
	require.Equal(t, uint64(4), b.left[0].batches[0].Rows[0].Requests)
	require.Contains(t, log.String(), "partial trailing record")
	b.abandon()

	// A flipped byte in the second record: only the first counts.
	require.NoError(t, os.WriteFile(path, append([]byte(nil), data...), 0o600))
	_, n, err := nextRecord(data) // the header
	require.NoError(t, err)
	_, m, err := nextRecord(data[n:]) // the first count
	require.NoError(t, err)
	data[n+m+6] ^= 0xff // the second count's payload
	require.NoError(t, os.WriteFile(path, data, 0o600))
	log.Reset()
	c := spooled(t, dir, "run3", (&batches{}).write, slog.New(slog.NewTextHandler(&log, nil)))
	require.Equal(t, uint64(1), c.left[0].batches[0].Rows[0].Requests)
	require.Contains(t, log.String(), "damaged record")
	c.abandon()
}

// A spool folder the gateway cannot use is an error naming it.
func TestSpoolUnusableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	a := newArrivals("gw", time.Second, (&batches{}).write, quiet())
	err := a.useSpool(filepath.Join(file, "spool"))
	require.ErrorContains(t, err, "spool folder "+filepath.Join(file, "spool"))
}

// Against the real store: a batch the dead run wrote but had not marked
// is written again at replay under the same name and counts once; every
// counted request is in the store exactly once.
func TestSpoolReplayCountsOnceInTheStore(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := spooled(t, dir, "dead", st.RecordArrivals, quiet())
	for i := range 7 {
		a.count("app-x", t0.Add(time.Duration(i)*300*time.Millisecond)) // bins t0 … t0+1s
	}
	a.cut(t0.Add(time.Second), false)
	require.NoError(t, a.writeOne(ctx, a.pending[0].ArrivalBatch)) // written, the kill comes before the mark
	a.abandon()

	b := spooled(t, dir, "next", st.RecordArrivals, quiet())
	require.Len(t, b.left, 1)
	require.Len(t, b.left[0].batches, 2, "the unmarked bin and the open one")
	require.NoError(t, b.writeLeft(ctx))
	require.NoError(t, b.close(ctx))
	busy, err := st.BusyBins(ctx, t0.Add(-time.Minute), t0.Add(time.Minute), time.Second)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 3}, busy["app-x"].Counts)
}

// Once a segment's bins are all written it is rotated out and removed:
// the spool does not grow with the traffic. (Under steady traffic the
// current segment always holds the open bin: it is rotated at
// segmentMax instead, and removed once its bins are written.)
func TestSpoolRemovesWrittenSegments(t *testing.T) {
	dir := t.TempDir()
	var w batches
	a := spooled(t, dir, "run", w.write, quiet())
	n := segmentAfterAck/20 + 1 // at least segmentAfterAck bytes
	for range n {
		a.count("some-application", t0)
	}
	a.cut(t0.Add(time.Second), false)
	require.NoError(t, a.writePending(context.Background()))
	files, _ := filepath.Glob(filepath.Join(dir, "run.*.spool"))
	require.Equal(t, []string{segmentPath(dir, "run", 1)}, files, "the written segment is rotated out and removed")
	a.count("some-application", t0.Add(time.Second))
	a.count("some-application", t0.Add(time.Second))
	require.NoError(t, a.spool.rotate()) // as at segmentMax
	a.count("some-application", t0.Add(2*time.Second))
	a.cut(t0.Add(2*time.Second), false)
	require.NoError(t, a.writePending(context.Background()))
	files, _ = filepath.Glob(filepath.Join(dir, "run.*.spool"))
	require.Equal(t, []string{segmentPath(dir, "run", 2)}, files, "a closed segment whose bins are written is removed")
	require.Equal(t, []uint64{uint64(n), 2}, []uint64{w.got[0].Rows[0].Requests, w.got[1].Rows[0].Requests})
	a.abandon()
}

// After a failed write the next record starts a new segment, so the
// records after a short one are still read.
func TestSpoolStartsANewSegmentAfterAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	a := spooled(t, dir, "run1", (&batches{}).write, slog.New(slog.NewTextHandler(&log, nil)))
	a.count("a", t0)
	a.spool.f.Close() // the next write fails
	a.count("a", t0)
	require.Contains(t, log.String(), "spool write failed")
	a.count("a", t0)
	require.Contains(t, log.String(), "spool writes work again")
	require.Equal(t, uint64(3), a.open[t0.UnixNano()]["a"], "the request is counted in memory all the same")
	a.abandon()
	b := spooled(t, dir, "run2", (&batches{}).write, quiet())
	require.Equal(t, uint64(2), b.left[0].batches[0].Rows[0].Requests, "the record that failed is not in the spool; the rest is")
	b.abandon()
}

// A batch dropped from memory (the store down too long) stays in the
// spool through a graceful stop, and the next start writes it.
func TestSpoolKeepsADroppedBatch(t *testing.T) {
	dir := t.TempDir()
	a := spooled(t, dir, "run1", (&batches{}).write, quiet())
	a.count("a", t0)
	a.cut(t0.Add(time.Second), false)
	a.pending = nil // as maxPending drops it
	require.NoError(t, a.close(context.Background()))
	var w batches
	b := spooled(t, dir, "run2", w.write, quiet())
	require.NoError(t, b.writeLeft(context.Background()))
	require.Equal(t, []store.ArrivalBatch{{Router: "gw-spool", Batch: batchName("run1", t0.UnixNano(), false),
		Rows: []store.Arrival{{App: "a", Bin: t0, Requests: 1}}}}, w.got)
	require.NoError(t, b.close(context.Background()))
}

// The count's cost per request, with and without the spool's write.
func BenchmarkCount(b *testing.B) {
	for _, withSpool := range []bool{false, true} {
		b.Run(map[bool]string{false: "memory", true: "spool"}[withSpool], func(b *testing.B) {
			a := newArrivals("gw-bench", time.Second, (&batches{}).write, quiet())
			if withSpool {
				if err := a.useSpool(b.TempDir()); err != nil {
					b.Fatal(err)
				}
				defer a.abandon()
			}
			now := time.Now()
			b.ResetTimer()
			for range b.N {
				a.count("sample-trivial", now)
			}
		})
	}
}
