package scale

// Counting what the loops decided, from their own state: the benchmark
// queries a sample of loops at the window's start and end and compares
// the decisions they settled with the bins that fell due.

import (
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// LoopCount is one loop's state as its status query reports it.
type LoopCount struct {
	At        time.Time // when the answer came back
	Decisions int       // settled decisions, every outcome (LoopStats.Decisions summed)
	Wakes     int
	BinEnd    time.Time // end of the last bin a wake settled
	NextWake  time.Time
	// BoundWake: the next wake is the bound on the sleep, not a decision
	// the policy planned.
	BoundWake bool
}

// IsBoundReason says whether a loop's WakeReason is the bound on its
// sleep (workflows' untilReason).
func IsBoundReason(reason string) bool { return strings.Contains(reason, "bound on the sleep") }

// DecisionCount is what the sampled loops settled between two snapshots.
type DecisionCount struct {
	Sampled int // loops answered at both ends
	// Due is, summed over the loops, the bins whose decision time (the
	// bin's start and grace) fell between the loop's two answers.
	Due int
	// Counted is the decisions the loops settled in between: a wake
	// settles the bins it slept through and its own.
	Counted int
	// PendingStart and PendingEnd are the bins due at each end that no wake
	// had settled yet: the loops slept through them on their plan, and
	// their next wake settles them. Due = Counted + PendingEnd -
	// PendingStart for loops that count each bin once.
	PendingStart, PendingEnd int
	Advanced                 int      // loops whose settled decisions grew
	NotAdvanced              []string // loops that settled nothing in the window (asleep on their plan, or stuck)
	// Behind are loops whose next wake was more than a bin overdue at the
	// end: not deciding. Unanswered are loops that did not answer at one end.
	Behind     []string
	Unanswered []string
	// BoundWakes are loops whose next wake at the start was their sleep's
	// bound, due within the window, and that woke by the end.
	BoundWakes int
}

// Unaccounted is Due less what the loops settled and still hold on
// their plans: 0 when every due bin is accounted for once.
func (d DecisionCount) Unaccounted() int {
	return d.Due - (d.Counted + d.PendingEnd - d.PendingStart)
}

// dueThrough is the end of the last bin whose decision time (its start
// plus grace) is at or before t.
func dueThrough(t time.Time, bin, grace time.Duration) time.Time {
	return t.Add(-grace).Truncate(bin).Add(bin)
}

// pending is how many bins due by c.At no wake of the loop has settled.
func (c LoopCount) pending(bin, grace time.Duration) int {
	return int(dueThrough(c.At, bin, grace).Sub(c.BinEnd) / bin)
}

// CountDecisions compares two snapshots of the same loops (by workflow
// ID); a loop missing from either is Unanswered.
func CountDecisions(a, z map[string]LoopCount, bin, grace time.Duration) DecisionCount {
	d := DecisionCount{NotAdvanced: []string{}, Behind: []string{}, Unanswered: []string{}} // [] in JSON, not null
	for id, c0 := range a {
		c1, ok := z[id]
		if !ok {
			d.Unanswered = append(d.Unanswered, id)
			continue
		}
		d.Sampled++
		d.Due += int(dueThrough(c1.At, bin, grace).Sub(dueThrough(c0.At, bin, grace)) / bin)
		d.Counted += c1.Decisions - c0.Decisions
		d.PendingStart += c0.pending(bin, grace)
		d.PendingEnd += c1.pending(bin, grace)
		if c1.Decisions > c0.Decisions {
			d.Advanced++
		} else {
			d.NotAdvanced = append(d.NotAdvanced, id)
		}
		if c1.At.Sub(c1.NextWake) > bin {
			d.Behind = append(d.Behind, id)
		}
		if c0.BoundWake && c0.NextWake.After(c0.At) && !c0.NextWake.After(c1.At) && c1.Wakes > c0.Wakes {
			d.BoundWakes++
		}
	}
	for id := range z {
		if _, ok := a[id]; !ok {
			d.Unanswered = append(d.Unanswered, id)
		}
	}
	sort.Strings(d.NotAdvanced)
	sort.Strings(d.Behind)
	sort.Strings(d.Unanswered)
	return d
}

// FirstSleeps draws each loop's first sleep bound uniformly in [1,
// bound(k)]: an idle loop of a long-running fleet is that far from its
// next bound wake, so loops started together wake as such a fleet does.
func FirstSleeps(n int, bound func(k int) int, rng *rand.Rand) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = 1 + rng.IntN(max(1, bound(k)))
	}
	return out
}

// Sample picks n of ids at random (all of them, in order, when n >= len).
func Sample(ids []string, n int, rng *rand.Rand) []string {
	if n >= len(ids) {
		return append([]string(nil), ids...)
	}
	idx := rng.Perm(len(ids))[:n]
	sort.Ints(idx)
	out := make([]string, n)
	for i, k := range idx {
		out[i] = ids[k]
	}
	return out
}

// PerAppHour is events per application and trace hour for loops of total
// age `age` (summed over the loops) at live bin width liveBin, each live
// bin standing for traceBin of trace time.
func PerAppHour(events int64, age, liveBin, traceBin time.Duration) float64 {
	if age <= 0 || liveBin <= 0 {
		return 0
	}
	hours := age.Seconds() / liveBin.Seconds() * traceBin.Hours()
	return float64(events) / hours
}
