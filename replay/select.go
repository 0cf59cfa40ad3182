package replay

import (
	"hash/fnv"
	"math"
	"slices"

	"github.com/forewarm/forewarm/trace"
)

// Shape is a coarse kind of demand pattern, used to pick a varied set of
// applications for a demo or a replay.
type Shape string

const (
	ShapeSteady   Shape = "steady"   // active in most bins
	ShapePeriodic Shape = "periodic" // regular gaps: timers
	ShapeBursty   Shape = "bursty"   // irregular gaps: sessions, bursts
	ShapeRare     Shape = "rare"     // a handful of active bins
)

// Classify names an app's shape from its counts in bins [0, upto).
func Classify(counts []uint32, upto int) Shape {
	var active []int
	for b := 0; b < upto && b < len(counts); b++ {
		if counts[b] > 0 {
			active = append(active, b)
		}
	}
	if upto == 0 || len(active) < 4 {
		return ShapeRare
	}
	if float64(len(active))/float64(upto) > 0.5 {
		return ShapeSteady
	}
	var sum, sq float64
	for i := 1; i < len(active); i++ {
		g := float64(active[i] - active[i-1])
		sum += g
		sq += g * g
	}
	n := float64(len(active) - 1)
	mean := sum / n
	cv := math.Sqrt(math.Max(sq/n-mean*mean, 0)) / mean
	if cv < 0.3 {
		return ShapePeriodic
	}
	return ShapeBursty
}

// SelectVaried picks up to n applications of varied shapes, judged on bins
// [0, upto), among those with at least one request in bins [from, to) and
// at most maxRate requests per active bin (so a demo is not flooded by a
// heavy hitter). The choice is deterministic: shapes take turns, and within
// a shape apps are ordered by a hash of their ID.
func SelectVaried(t *trace.Trace, n, upto, from, to int, maxRate float64) []string {
	return SelectVariedWithin(t, n, upto, from, to, maxRate, math.Inf(1))
}

// SelectVariedWithin is SelectVaried that also keeps the chosen
// applications' requests in [from, to) within budget in all, skipping an
// application that would exceed it: a replay whose request path serves a
// few requests a second can then serve every request of what it plays.
func SelectVariedWithin(t *trace.Trace, n, upto, from, to int, maxRate, budget float64) []string {
	byShape := map[Shape][]string{}
	window := map[string]float64{}
	for _, a := range t.Apps {
		var inWindow, total, activeBins float64
		for b := from; b < to && b < len(a.Counts); b++ {
			inWindow += float64(a.Counts[b])
		}
		for b := 0; b < upto && b < len(a.Counts); b++ {
			if a.Counts[b] > 0 {
				total += float64(a.Counts[b])
				activeBins++
			}
		}
		if inWindow == 0 || (activeBins > 0 && total/activeBins > maxRate) {
			continue
		}
		s := Classify(a.Counts, upto)
		byShape[s] = append(byShape[s], a.ID)
		window[a.ID] = inWindow
	}
	order := []Shape{ShapePeriodic, ShapeBursty, ShapeSteady, ShapeRare}
	for _, s := range order {
		slices.SortFunc(byShape[s], func(x, y string) int { return int64Cmp(hash(x), hash(y)) })
	}
	var out []string
	used := 0.0
	for len(out) < n {
		took := false
		for _, s := range order {
			for len(out) < n && len(byShape[s]) > 0 {
				id := byShape[s][0]
				byShape[s] = byShape[s][1:]
				if used+window[id] > budget {
					continue // too many requests: the next of this shape
				}
				out = append(out, id)
				used += window[id]
				took = true
				break
			}
		}
		if !took {
			break
		}
	}
	slices.Sort(out)
	return out
}

func hash(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64() >> 1)
}

func int64Cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
