package lifecycle

import (
	"fmt"
	"time"

	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/trace"
)

// Range is the stored history a training run reads, and how it was chosen
// (said in the run's output so an operator knows what was left out).
type Range struct {
	From, To time.Time
	Chosen   string
}

// ChooseRange picks the history to train on from what the store holds
// (first and last stored bin starts): from..to when both are given;
// otherwise the span (<= 0: DefaultSpan) of history that ends with the
// last stored bin, so that a store holding traces of different dates reads
// only the most recent one instead of every bin between them.
func ChooseRange(first, last, from, to time.Time, span, bin time.Duration) (Range, error) {
	if bin <= 0 {
		return Range{}, fmt.Errorf("bin %v: must be positive", bin)
	}
	if !from.IsZero() && !to.IsZero() {
		if !to.After(from) {
			return Range{}, fmt.Errorf("range %s .. %s: the end must be after the start", from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		return Range{From: from, To: to, Chosen: "the range asked for"}, nil
	}
	if last.IsZero() {
		return Range{}, fmt.Errorf("the store holds no activity")
	}
	if span <= 0 {
		span = rule.DefaultSpan
	}
	end := last.Truncate(bin).Add(bin)
	if !to.IsZero() {
		end = to
	}
	start := end.Add(-span)
	if !from.IsZero() {
		start = from
		if !end.After(start) {
			return Range{}, fmt.Errorf("--from %s is after the last stored bin %s", from.Format(time.RFC3339), last.Format(time.RFC3339))
		}
	}
	why := fmt.Sprintf("the last %s of stored history", span)
	if !from.IsZero() {
		why = "from the start asked for to the last stored bin"
	} else if !first.IsZero() && first.Truncate(bin).After(start) {
		start = first.Truncate(bin)
		why = fmt.Sprintf("all stored history (less than %s)", span)
	}
	return Range{From: start, To: end, Chosen: why}, nil
}

// FirstActiveBin is the first bin of tr in which any application had a
// request (0 when none had).
func FirstActiveBin(tr *trace.Trace) int {
	first := tr.Bins
	for _, a := range tr.Apps {
		for i, c := range a.Counts[:min(first, len(a.Counts))] {
			if c > 0 {
				first = i
				break
			}
		}
	}
	if first == tr.Bins {
		return 0
	}
	return first
}
