// Package scale is the scale benchmark's machinery (make bench-scale): a
// fleet of N applications cycled from a trace's, the requests of each bin
// reported router-style (one batch of per-application counts written to
// the store when the bin ends), and what the benchmark measures on the
// worker, the Temporal server and the loops' histories.
package scale

import (
	"fmt"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// Fleet is n applications replaying a trace's: application k replays the
// trace's application k mod len(Apps), each copy from its own offset into
// the day, so copies of one application are not in step.
type Fleet struct {
	Trace *trace.Trace
	Apps  []App
}

// App is one application of the fleet.
type App struct {
	ID       string
	Src      int // index into Trace.Apps
	Offset   int // the trace bin the fleet's live bin 0 stands for
	MemoryMB float64
}

// offsetStride spreads the copies of one application over the day (a
// prime, so consecutive copies land far apart).
const offsetStride = 97

// NewFleet cycles tr's applications to n, the first copy of each from
// trace bin from, later copies at other offsets within [from, tr.Bins).
func NewFleet(tr *trace.Trace, n, from int) (*Fleet, error) {
	if len(tr.Apps) == 0 || tr.Bins == 0 {
		return nil, fmt.Errorf("the trace has no applications")
	}
	if n < 1 {
		return nil, fmt.Errorf("%d applications: need at least one", n)
	}
	if from < 0 || from >= tr.Bins {
		return nil, fmt.Errorf("first bin %d is outside the trace's %d", from, tr.Bins)
	}
	f := &Fleet{Trace: tr, Apps: make([]App, n)}
	span := tr.Bins - from
	for k := range f.Apps {
		src, round := k%len(tr.Apps), k/len(tr.Apps)
		f.Apps[k] = App{ID: fmt.Sprintf("scale-%06d", k), Src: src, Offset: from + round*offsetStride%span,
			MemoryMB: tr.Apps[src].MemoryOrDefault()}
	}
	return f, nil
}

// Count is application k's requests in live bin i (negative: before the
// fleet's start); the day repeats.
func (f *Fleet) Count(k, i int) uint32 {
	a := f.Apps[k]
	b := (a.Offset + i) % f.Trace.Bins
	if b < 0 {
		b += f.Trace.Bins
	}
	return f.Trace.Apps[a.Src].Counts[b]
}

// TraceStart is the trace time application k's live bin 0 stands for.
func (f *Fleet) TraceStart(k int) time.Time { return f.Trace.BinStart(f.Apps[k].Offset) }
