package resident

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/forewarm/forewarm/activities/wire"
)

// Router-style arrivals: a platform's router records each application's
// requests per bin in the store, in batches, instead of telling the
// application's loop of every request. A loop started in router mode reads
// its counts from the worker's Mirror of the store at each wake, and the
// worker's Watch wakes it early only when an arrival can change a decision
// (see Watch).

// Grace is how long after a bin ends requests reported for it still count
// in it: a fifth of a bin, at most 2 s. A loop decides the next bin then,
// and the Mirror freezes the bin then.
func Grace(bin time.Duration) time.Duration { return min(bin/5, 2*time.Second) }

// ArrivalReader reads recorded requests per application and bin.
type ArrivalReader interface {
	// Arrivals returns, per application, every bin of width bin in
	// [from, to) that saw requests (bin starts as Unix seconds, ascending,
	// with their counts).
	Arrivals(ctx context.Context, from, to time.Time, bin time.Duration) (map[string]BinCounts, error)
}

// BinCounts is one application's busy bins.
type BinCounts struct {
	Starts []int64 // Unix seconds, ascending
	Counts []uint64
}

// Mirror is the worker's copy of the recorded arrivals of recent bins, for
// every application, read in bulk: once per bin, the bins that closed since
// (a single query for all applications), so a loop's wake reads memory, not
// the store. A bin is frozen once read: its counts never change after, so
// every decision about a bin, early or late, sees the same counts.
//
// A report that reaches the store after its bin was frozen (later than
// Grace after the bin: a router restarted on its spool writes the bin it
// died in when it starts again) is a late arrival. The same read that
// freezes the next bins also reads the last LateBins frozen bins again,
// and whatever it shows beyond what the mirror has heard of an
// (application, bin) is counted in that application's first bin frozen by
// the read: counted when heard of, so the loops and the watch see it like
// any arrival of that bin, and no frozen bin changes. The store keeps the
// true bin (training, reports). A report later than LateBins bins after
// its bin is seen by training and reports only.
type Mirror struct {
	Reader ArrivalReader
	Bin    time.Duration // the bins the router reports and router-mode loops decide
	Span   int           // bins kept: the longest history a loop reads (default 1440)
	// Chunk is the most bins one read of the store covers (default
	// DefaultChunk): the first load and a catch-up after an outage read
	// chunk after chunk, each frozen as it is read; a read that times out
	// halves the chunk for every later read.
	Chunk int
	// Timeout bounds one read of the store (default 2 minutes for the reads
	// of the first load, 10 s after).
	Timeout time.Duration
	// LateBins is how many frozen bins before the first bin it freezes a
	// freeze reads again, for late arrivals (0: DefaultLateBins; negative:
	// none; at most Span-1). They ride on the freeze's first read (one
	// query), within Chunk: a read never covers more than Chunk bins, so a
	// catch-up, whose reads are whole chunks, reads none again, and a read
	// that timed out (halving the chunk) makes room for fewer.
	LateBins int

	lock   chan struct{} // one freeze at a time, waited for with a context
	mu     sync.RWMutex
	frozen time.Time // bins starting before it are frozen
	chunk  int       // Chunk, halved by timeouts (0: not yet)
	start  time.Time // the first bin held
	apps   map[string]*busyBins
	seeds  map[string]seedHistory
	late   map[string]*lateHeard // applications with late arrivals in the bins still read again
	// Late arrivals counted since the mirror started: requests, and the
	// (application, bin) pairs they were reported for.
	lateReqs, lateKeys int64
}

// lateHeard is what the mirror heard late of one application, by bin
// index (start / Bin), for the bins a freeze may still read again.
type lateHeard struct {
	heard map[int64]uint64 // late requests reported for the bin
	added map[int64]uint64 // late requests counted in the bin (reported for earlier bins)
}

// seedHistory is the history a loop brought with it for the bins before
// its first live one (a trace replayed on a clock): the router never
// recorded those bins.
type seedHistory struct {
	end int64 // bin index (start / Bin) of the first bin after it
	n   []float64
}

// busyBins is one application's busy bins in the mirror, ascending.
type busyBins struct {
	idx []int64 // bin start / Bin
	n   []float64
}

// BinWidth is Bin (activities.Arrivals).
func (m *Mirror) BinWidth() time.Duration { return m.Bin }

func (m *Mirror) span() int {
	if m.Span <= 0 {
		return 1440
	}
	return m.Span
}

func (m *Mirror) init() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock == nil {
		m.lock = make(chan struct{}, 1)
		m.apps = map[string]*busyBins{}
		m.seeds = map[string]seedHistory{}
		m.late = map[string]*lateHeard{}
	}
}

// Frozen is the end of the frozen bins (zero before the first freeze).
func (m *Mirror) Frozen() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.frozen
}

// Freeze reads every bin that starts before through (a bin boundary) and
// is not frozen yet, at most Span bins back (the first call reads Span
// bins), in reads of at most Chunk bins. Concurrent callers wait for one
// read; a failed read keeps the bins read before it frozen. A bin is frozen Grace after it ends at the earliest:
// Freeze waits for the grace of a bin that has ended and refuses a
// boundary whose bin is still open.
func (m *Mirror) Freeze(ctx context.Context, through time.Time) error {
	if m.Bin <= 0 || m.Reader == nil {
		return errors.New("arrival mirror: no bin width or reader")
	}
	if !through.Equal(through.Truncate(m.Bin)) {
		return fmt.Errorf("arrival mirror: %v is not a boundary of %v bins", through, m.Bin)
	}
	m.init()
	if !through.After(m.Frozen()) {
		return nil
	}
	// A bin is frozen for every loop of the worker: never before its grace
	// has passed, when late reports may still be on their way. A bin that
	// has ended is waited for (a timer set by another clock may fire a
	// little early); one still open is refused.
	if wait := time.Until(through.Add(Grace(m.Bin))); wait > 0 {
		if wait > Grace(m.Bin) {
			return fmt.Errorf("arrival mirror: the bin before %v has not ended", through.UTC())
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("arrival mirror: waiting for the grace of the bin before %v: %w", through.UTC(), ctx.Err())
		}
	}
	select {
	case m.lock <- struct{}{}:
		defer func() { <-m.lock }()
	case <-ctx.Done():
		return fmt.Errorf("arrival mirror: waiting for a read of the store: %w", ctx.Err())
	}
	from := m.Frozen()
	if !through.After(from) {
		return nil // another caller read them
	}
	timeout := m.Timeout
	if from.IsZero() && timeout <= 0 {
		timeout = 2 * time.Minute
	} else if timeout <= 0 {
		timeout = 10 * time.Second
	}
	// Bins older than the span are never read: a catch-up after a longer
	// outage starts a span back.
	if keep := through.Add(-time.Duration(m.span()) * m.Bin); from.Before(keep) {
		from = keep
	}
	// Catch up chunk by chunk, each frozen as it is read, so a store whose
	// reads slow down with the bins they cover still lets the mirror catch
	// up; a read that times out halves the chunk and is tried again. The
	// first read also reads the frozen bins just before again, for late
	// arrivals, within the chunk.
	for first := true; from.Before(through); {
		n := m.chunkBins()
		to := from.Add(time.Duration(n) * m.Bin)
		if to.After(through) {
			to = through
		}
		lo := from
		if first {
			lo = m.lateFrom(from, to, n)
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		rows, err := m.Reader.Arrivals(rctx, lo, to, m.Bin)
		cancel()
		if err != nil {
			if n > 1 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				m.mu.Lock()
				m.chunk = n / 2
				m.mu.Unlock()
				continue
			}
			return fmt.Errorf("arrival mirror: read bins %v – %v: %w", from.UTC(), to.UTC(), err)
		}
		m.add(rows, lo, from, to)
		from, first = to, false
	}
	return nil
}

// DefaultLateWindow is how long after a bin ends a report of it is still
// heard of by default: a router restarted on its spool (the gateway's
// --spool) writes the bin it died in as it starts again, seconds to a
// minute after.
const DefaultLateWindow = time.Minute

// DefaultLateBins is the frozen bins a freeze reads again by default: the
// bins of DefaultLateWindow, at least 2.
func DefaultLateBins(bin time.Duration) int {
	if bin <= 0 {
		return 2
	}
	return max(2, int((DefaultLateWindow+bin-1)/bin))
}

// LateWindow is how many frozen bins each freeze reads again: LateBins
// with its default, at most Span-1.
func (m *Mirror) LateWindow() int { return m.lateBins() }

// lateBins is LateBins with its default, at most Span-1.
func (m *Mirror) lateBins() int {
	n := m.LateBins
	switch {
	case n < 0:
		return 0
	case n == 0:
		n = DefaultLateBins(m.Bin)
	}
	return min(n, m.span()-1)
}

// lateFrom is where the first read of a freeze of [from, to), in reads of
// n bins, begins: the frozen bins just before from that fit in the read,
// at most lateBins of them, none held before the mirror's first. None when
// nothing was frozen just before from (the first load, a catch-up after an
// outage longer than the span).
func (m *Mirror) lateFrom(from, to time.Time, n int) time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.frozen.IsZero() || !from.Equal(m.frozen) {
		return from
	}
	k := min(m.lateBins(), n-int(to.Sub(from)/m.Bin))
	if k <= 0 {
		return from
	}
	lo := from.Add(-time.Duration(k) * m.Bin)
	if lo.Before(m.start) {
		lo = m.start
	}
	return lo
}

// MirrorStats are a Mirror's counters since it started.
type MirrorStats struct {
	LateRequests int64 // requests heard of after their bin was frozen (late arrivals)
	LateBins     int64 // (application, bin) pairs they were reported for
}

// Stats returns the counters.
func (m *Mirror) Stats() MirrorStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return MirrorStats{LateRequests: m.lateReqs, LateBins: m.lateKeys}
}

// DefaultChunk is the most bins one read of a mirror covers by default.
const DefaultChunk = 120

// chunkBins is the most bins the next read covers.
func (m *Mirror) chunkBins() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.chunk > 0 {
		return m.chunk
	}
	if m.Chunk > 0 {
		return m.Chunk
	}
	return DefaultChunk
}

// add freezes the bins [from, to) just read, with the frozen bins
// [lo, from) read again: their late arrivals are counted in from.
func (m *Mirror) add(rows map[string]BinCounts, lo, from, to time.Time) {
	sec := int64(m.Bin / time.Second)
	keepFrom := to.Add(-time.Duration(m.span()) * m.Bin)
	first, read := from.Unix()/sec, lo.Unix()/sec
	m.mu.Lock()
	defer m.mu.Unlock()
	for app, bc := range rows {
		b := m.apps[app]
		k := 0
		var late uint64
		for ; k < len(bc.Starts) && bc.Starts[k]/sec < first; k++ {
			if i := bc.Starts[k] / sec; i >= read {
				late += m.hearLate(app, b, i, bc.Counts[k])
			}
		}
		if b == nil && (late > 0 || k < len(bc.Starts)) {
			b = &busyBins{}
			m.apps[app] = b
		}
		if late > 0 && (len(b.idx) == 0 || first > b.idx[len(b.idx)-1]) {
			// Counted in the app's first bin frozen now: no frozen bin
			// changes, and no loop has read this one yet.
			m.lateOf(app).added[first] += late
			n := late
			if k < len(bc.Starts) && bc.Starts[k]/sec == first {
				n += bc.Counts[k]
				k++
			}
			b.idx = append(b.idx, first)
			b.n = append(b.n, float64(n))
		}
		for ; k < len(bc.Starts); k++ {
			i := bc.Starts[k] / sec
			if bc.Counts[k] == 0 || len(b.idx) > 0 && i <= b.idx[len(b.idx)-1] {
				continue // not after what is frozen: cannot come from this read
			}
			b.idx = append(b.idx, i)
			b.n = append(b.n, float64(bc.Counts[k]))
		}
	}
	// Forget what was heard late of the bins no freeze reads again.
	if len(m.late) > 0 {
		oldest := to.Unix()/sec - int64(m.lateBins())
		for app, la := range m.late {
			for i := range la.heard {
				if i < oldest {
					delete(la.heard, i)
				}
			}
			for i := range la.added {
				if i < oldest {
					delete(la.added, i)
				}
			}
			if len(la.heard) == 0 && len(la.added) == 0 {
				delete(m.late, app)
			}
		}
	}
	if m.start.IsZero() {
		m.start = from
	}
	// Forget bins older than the span, a few times per span.
	if keepFrom.Sub(m.start) >= time.Duration(m.span()/8+1)*m.Bin {
		first := keepFrom.Unix() / sec
		for app, b := range m.apps {
			k, _ := slices.BinarySearch(b.idx, first)
			if k == len(b.idx) {
				delete(m.apps, app)
				continue
			}
			b.idx, b.n = slices.Clone(b.idx[k:]), slices.Clone(b.n[k:])
		}
		for app, sd := range m.seeds {
			if sd.end <= first {
				delete(m.seeds, app)
			}
		}
		m.start = keepFrom
	}
	m.frozen = to
}

// lateOf is app's late book, made on first use (under mu).
func (m *Mirror) lateOf(app string) *lateHeard {
	la := m.late[app]
	if la == nil {
		la = &lateHeard{heard: map[int64]uint64{}, added: map[int64]uint64{}}
		m.late[app] = la
	}
	return la
}

// hearLate takes n, what a read shows now for app's frozen bin i, and
// returns what of it the mirror had not heard of: what was frozen in bin
// i (without the late arrivals counted in it) and what was heard late of
// it before. A read that shows less (a replica that has not fetched a
// part yet) adds nothing and forgets nothing: a count is never taken back
// nor counted twice. Under mu.
func (m *Mirror) hearLate(app string, b *busyBins, i int64, n uint64) uint64 {
	var heard uint64
	if b != nil {
		if k, ok := slices.BinarySearch(b.idx, i); ok {
			heard = uint64(b.n[k])
		}
	}
	if la := m.late[app]; la != nil {
		// What was counted in i late was reported for another bin.
		heard = heard - min(heard, la.added[i]) + la.heard[i]
	}
	if n <= heard {
		return 0
	}
	d := n - heard
	la := m.lateOf(app)
	if la.heard[i] == 0 {
		m.lateKeys++
	}
	la.heard[i] += d
	m.lateReqs += int64(d)
	return d
}

// Window is app's counts of the n bins before end (a frozen boundary),
// oldest first; bins before the mirror's first are zeros.
func (m *Mirror) Window(app string, end time.Time, n int) (wire.Counts, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if end.After(m.frozen) {
		return nil, fmt.Errorf("arrival mirror: bins before %v are not frozen (frozen until %v)", end.UTC(), m.frozen.UTC())
	}
	out := make(wire.Counts, n)
	sec := int64(m.Bin / time.Second)
	hi := end.Unix() / sec
	lo := hi - int64(n)
	first := lo // the first bin the router's counts are this app's history
	if s, ok := m.seeds[app]; ok {
		// The seed's last count is of bin s.end-1.
		for i := max(lo, s.end-int64(len(s.n))); i < min(hi, s.end); i++ {
			out[i-lo] = s.n[int64(len(s.n))-(s.end-i)]
		}
		first = max(lo, s.end)
	}
	b := m.apps[app]
	if b == nil {
		return out, nil
	}
	k, _ := slices.BinarySearch(b.idx, first)
	for ; k < len(b.idx) && b.idx[k] < hi; k++ {
		out[b.idx[k]-lo] = b.n[k]
	}
	return out, nil
}

// Seed gives app the history of the bins before end (a bin boundary) that
// the router cannot have recorded: a loop on a trace clock, seeded from the
// trace, whose live bins begin at end. Window reads it for every bin before
// end: what the router recorded then (an earlier replay of the same
// applications, say) is not the history the loop brought. A seed replaces
// the app's previous one; it is dropped once every bin of it is older than
// the mirror's span.
func (m *Mirror) Seed(app string, end time.Time, counts []float64) error {
	sec := int64(m.Bin / time.Second)
	if sec <= 0 || !end.Equal(end.Truncate(m.Bin)) || len(counts) > wire.MaxCountBins {
		return fmt.Errorf("arrival mirror: seed of %s ending %v with %d bins: want a boundary of %v bins and at most %d bins", app, end.UTC(), len(counts), m.Bin, wire.MaxCountBins)
	}
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(counts) == 0 {
		delete(m.seeds, app)
		return nil
	}
	m.seeds[app] = seedHistory{end: end.Unix() / sec, n: slices.Clone(counts)}
	return nil
}

// Active says whether app saw a request in the frozen bins [from, to).
func (m *Mirror) Active(app string, from, to time.Time) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := m.apps[app]
	if b == nil {
		return false
	}
	sec := int64(m.Bin / time.Second)
	k, _ := slices.BinarySearch(b.idx, from.Unix()/sec)
	return k < len(b.idx) && b.idx[k] < to.Unix()/sec
}

// ActiveApps lists the applications that saw a request in the frozen bins
// [from, to), in no particular order.
func (m *Mirror) ActiveApps(from, to time.Time) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	sec := int64(m.Bin / time.Second)
	lo, hi := from.Unix()/sec, to.Unix()/sec
	var out []string
	for app, b := range m.apps {
		if k, _ := slices.BinarySearch(b.idx, lo); k < len(b.idx) && b.idx[k] < hi {
			out = append(out, app)
		}
	}
	return out
}

// Apps is how many applications have busy bins in the mirror.
func (m *Mirror) Apps() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.apps)
}
