// Package score is how a host's fitness for an application is judged and
// learned, apart from the affinity model that scores it: a pure package so
// that workflow code can explain and update scores without loading the
// model's runtime.
package score

import (
	"fmt"
	"math"
)

// Ranking a host for an application is two questions, asked apart (as a
// scheduler's feasibility checks and rank iterators are): can the host
// take the application at all (Fits), and how well will it serve it
// (Parts: the model's score and the adjustment observed for the pair).

// Fits says whether a host with freeMB of memory free can take an
// application needing needMB, and why not. Unknown free memory (0) fits:
// the host itself refuses a reservation it cannot hold.
func Fits(needMB, freeMB float64) (bool, string) {
	if freeMB > 0 && needMB > freeMB {
		return false, fmt.Sprintf("needs %.0f MB, %.0f MB free", needMB, freeMB)
	}
	return true, ""
}

// Parts is a host's score for an application and what it is made of, kept
// with the ranking, the lease and the loop's state so that a choice can be
// explained.
type Parts struct {
	Model      float64 // the affinity model's score, 0..1
	Adjustment float64 // what this (application, host) pair's requests taught, -1..1
	Score      float64 // Model + Adjustment, clamped to 0..1: what the ranking orders by
}

// Combine adds the observed adjustment to the model's score.
func Combine(model, adjustment float64) Parts {
	return Parts{Model: model, Adjustment: adjustment, Score: min(1, max(0, model+adjustment))}
}

// String explains the score: "0.83 (model 0.80, adjustment +0.03)".
func (p Parts) String() string {
	return fmt.Sprintf("%.2f (model %.2f, adjustment %+.2f)", p.Score, p.Model, p.Adjustment)
}

// MaxAdjustment bounds an observed adjustment: it can move a model score
// by at most this much either way.
const MaxAdjustment = 0.5

// NextAdjustment moves an (app, host) adjustment by rate × the gap between
// actual and expected when the gap exceeds the tolerance; ok is false when
// the gap is within tolerance (nothing to record). The one update rule,
// whether a served request's workflow or the gateway's learner applies it.
func NextAdjustment(old, expected, actual, tolerance, rate float64) (next float64, ok bool) {
	gap := actual - expected
	if math.Abs(gap) <= tolerance {
		return old, false
	}
	return min(MaxAdjustment, max(-MaxAdjustment, old+rate*gap)), true
}
