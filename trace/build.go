package trace

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// newTrace assembles a trace from apps keyed by ID, sorted by ID.
func newTrace(start time.Time, bin time.Duration, bins int, apps map[string]*App) *Trace {
	t := &Trace{Start: start.UTC(), Bin: bin, Bins: bins, Apps: make([]App, 0, len(apps))}
	for _, a := range apps {
		t.Apps = append(t.Apps, *a)
	}
	slices.SortFunc(t.Apps, func(a, b App) int { return strings.Compare(a.ID, b.ID) })
	return t
}

// Validate checks the invariants every consumer relies on: a positive bin,
// IDs non-empty, unique and sorted, every Counts of length Bins, profiles
// in range.
func (t *Trace) Validate() error {
	if t.Bin <= 0 {
		return fmt.Errorf("trace: bin width %v is not positive", t.Bin)
	}
	if t.Bins < 0 {
		return fmt.Errorf("trace: %d bins", t.Bins)
	}
	for i := range t.Apps {
		a := &t.Apps[i]
		switch {
		case a.ID == "":
			return fmt.Errorf("trace: app %d has an empty ID", i)
		case i > 0 && t.Apps[i-1].ID >= a.ID:
			return fmt.Errorf("trace: app IDs not sorted and unique at %q after %q", a.ID, t.Apps[i-1].ID)
		case len(a.Counts) != t.Bins:
			return fmt.Errorf("trace: app %q has %d counts, want %d", a.ID, len(a.Counts), t.Bins)
		case !(a.MemoryMB >= 0) || !(a.DurationMS >= 0) || !(a.ReadRatio >= 0 && a.ReadRatio <= 1): // NaN fails too
			return fmt.Errorf("trace: app %q has an out-of-range profile (memory %v MB, read ratio %v, duration %v ms)", a.ID, a.MemoryMB, a.ReadRatio, a.DurationMS)
		}
	}
	return nil
}

// End is the end of the last bin.
func (t *Trace) End() time.Time { return t.BinStart(t.Bins) }
