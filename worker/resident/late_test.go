package resident

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
)

// batchReports is a store routers report to in named batches, in memory,
// read as the store reads them: one row per batch (a batch written twice
// counts once). A hidden batch is one the replica read has not fetched
// yet. It records the range of every read.
type batchReports struct {
	mu      sync.Mutex
	batches map[string]map[string]map[int64]uint64 // batch → app → bin start → requests
	hidden  map[string]bool
	asked   [][2]time.Time
}

func (r *batchReports) write(batch, app string, bin time.Time, n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[string]map[string]map[int64]uint64{}
	}
	if r.batches[batch] == nil {
		r.batches[batch] = map[string]map[int64]uint64{}
	}
	if r.batches[batch][app] == nil {
		r.batches[batch][app] = map[int64]uint64{}
	}
	r.batches[batch][app][bin.Unix()] = n // the same batch again: the same row
}

func (r *batchReports) hide(batch string, hidden bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hidden == nil {
		r.hidden = map[string]bool{}
	}
	r.hidden[batch] = hidden
}

func (r *batchReports) Arrivals(_ context.Context, from, to time.Time, _ time.Duration) (map[string]BinCounts, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, [2]time.Time{from, to})
	sum := map[string]map[int64]uint64{}
	for batch, apps := range r.batches {
		if r.hidden[batch] {
			continue
		}
		for app, bins := range apps {
			for s, n := range bins {
				if s >= from.Unix() && s < to.Unix() {
					if sum[app] == nil {
						sum[app] = map[int64]uint64{}
					}
					sum[app][s] += n
				}
			}
		}
	}
	out := map[string]BinCounts{}
	for app, bins := range sum {
		var bc BinCounts
		for _, s := range slices.Sorted(maps.Keys(bins)) {
			bc.Starts, bc.Counts = append(bc.Starts, s), append(bc.Counts, bins[s])
		}
		out[app] = bc
	}
	return out, nil
}

func (r *batchReports) lastRead() [2]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[len(r.asked)-1]
}

// A report that reaches the store after its bin was frozen (a gateway
// restarted on its spool writes the bin it died in) is a late arrival: the
// next freeze reads the frozen bins before it again and counts what they
// show beyond what was frozen in the first bin it freezes, for that
// application; the watch sees it like any arrival of that bin and wakes
// the sleeping loop holding nothing. Frozen bins do not change, and a
// batch counts once however often it is written or read again.
func TestWatchWakesALoopOnALateArrival(t *testing.T) {
	st := &batchReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8, LateBins: 3}
	waker := &recordingWaker{}
	p := &activities.Predictor{Models: oneRegistry{lastCountModel{"v1"}}}
	w := &Watch{Mirror: m, Predictor: p, Waker: waker, Parallel: 1}
	ctx := context.Background()
	require.NoError(t, w.Check(ctx, bin(0)))
	w.Register(activities.Plan{WorkflowID: "a", App: "a", Wake: bin(0), NextWake: bin(30), Bin: time.Minute,
		Keep: 0.5, Next: bin(0), ModelBin: time.Minute, Window: 8, Model: "v1"})
	st.write("gw/b0", "b", bin(0), 1) // another application's, on time
	require.NoError(t, w.Check(ctx, bin(1)))
	require.Empty(t, waker.take(), "bin 0 frozen: nothing arrived for a")

	// The gateway restarted: its spool writes bin 0's batch, and again
	// (its acknowledgement was lost).
	st.write("gw/b0-dead-run", "a", bin(0), 2)
	st.write("gw/b0-dead-run", "a", bin(0), 2)
	require.NoError(t, w.Check(ctx, bin(2)))
	require.Equal(t, []wake{{"a", bin(2), WakeColdArrival}}, waker.take(), "woken for the bin after the one the late arrival is counted in")
	require.Equal(t, [2]time.Time{bin(-2), bin(2)}, st.lastRead(), "one read: bin 1 and the frozen bins before it, within the span held")
	win, err := m.Window("a", bin(2), 3)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 2}, win[1:], "bin 0 stays frozen as read; its late requests count in bin 1")
	win, err = m.Window("b", bin(2), 3)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{1, 0}, win[1:], "an on-time count is not late")
	require.Equal(t, MirrorStats{LateRequests: 2, LateBins: 1}, m.Stats())

	// Read again at the next freezes, the batch counts no more; a late
	// batch for a bin that already had a late one adds what it brings.
	st.write("gw/b0-dead-run", "a", bin(0), 2)
	st.write("gw/b0-other", "a", bin(0), 1)
	require.NoError(t, w.Check(ctx, bin(3)))
	require.NoError(t, w.Check(ctx, bin(4)))
	win, err = m.Window("a", bin(4), 5)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0, 2, 1, 0}, win[1:])
	require.Equal(t, MirrorStats{LateRequests: 3, LateBins: 1}, m.Stats())
	require.Empty(t, waker.take(), "woken once: the loop registers its next plan")

	// Later than LateBins bins after its bin: training and reports only.
	st.write("gw/b0-much-later", "a", bin(0), 5)
	require.NoError(t, w.Check(ctx, bin(5)))
	win, err = m.Window("a", bin(5), 1)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{0}, win)
	require.Equal(t, int64(3), m.Stats().LateRequests)
}

// A bin read again from a replica that has not fetched a part yet shows
// less than was frozen: nothing is taken back and nothing is forgotten, so
// the part counts once, when it is there.
func TestMirrorLateReadsNeverCountBackOrTwice(t *testing.T) {
	st := &batchReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 8}
	ctx := context.Background()
	require.NoError(t, m.Freeze(ctx, bin(0)))
	st.write("x", "a", bin(0), 3)
	require.NoError(t, m.Freeze(ctx, bin(1)))
	st.hide("x", true)
	st.write("y", "a", bin(0), 2) // late
	require.NoError(t, m.Freeze(ctx, bin(2)))
	require.Equal(t, MirrorStats{}, m.Stats(), "the read showed 2 of the 3+2: nothing late heard yet")
	st.hide("x", false)
	require.NoError(t, m.Freeze(ctx, bin(3)))
	require.NoError(t, m.Freeze(ctx, bin(4)))
	win, err := m.Window("a", bin(4), 4)
	require.NoError(t, err)
	require.Equal(t, wire.Counts{3, 0, 2, 0}, win, "y counted once, in the bin frozen when it was seen")
	require.Equal(t, MirrorStats{LateRequests: 2, LateBins: 1}, m.Stats())

	// Negative LateBins: none read again.
	m2 := &Mirror{Reader: st, Bin: time.Minute, Span: 8, LateBins: -1}
	require.NoError(t, m2.Freeze(ctx, bin(1)))
	st.write("z", "a", bin(0), 4)
	require.NoError(t, m2.Freeze(ctx, bin(2)))
	require.Equal(t, [2]time.Time{bin(1), bin(2)}, st.lastRead())
	require.Equal(t, MirrorStats{}, m2.Stats())
}

// The late bins ride on a freeze's first read within its chunk: a
// catch-up, whose reads are whole chunks, reads no frozen bin again, and
// the one read of an ordinary freeze covers at most a chunk.
func TestMirrorLateReadStaysWithinTheChunk(t *testing.T) {
	st := &batchReports{}
	m := &Mirror{Reader: st, Bin: time.Minute, Span: 100, Chunk: 4, LateBins: 3}
	ctx := context.Background()
	require.NoError(t, m.Freeze(ctx, bin(0)))
	st.asked = nil
	require.NoError(t, m.Freeze(ctx, bin(10))) // an outage of 10 bins
	require.Equal(t, [][2]time.Time{{bin(0), bin(4)}, {bin(4), bin(8)}, {bin(8), bin(10)}}, st.asked, "whole chunks: no bin read again")
	require.NoError(t, m.Freeze(ctx, bin(12)))
	require.Equal(t, [2]time.Time{bin(8), bin(12)}, st.lastRead(), "2 bins and 2 read again: 4")
	require.NoError(t, m.Freeze(ctx, bin(13)))
	require.Equal(t, [2]time.Time{bin(9), bin(13)}, st.lastRead(), "1 bin and LateBins read again")
	// By default a minute's bins, at least 2.
	require.Equal(t, 2, DefaultLateBins(time.Minute))
	require.Equal(t, 2, DefaultLateBins(time.Hour))
	require.Equal(t, 60, DefaultLateBins(time.Second))
	require.Equal(t, 6, DefaultLateBins(10*time.Second))
}
