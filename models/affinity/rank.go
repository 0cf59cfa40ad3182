package affinity

import "github.com/forewarm/forewarm/models/affinity/score"

// The ranking's rules live in package score, which workflow code imports
// without the model's runtime; these names keep the affinity API whole.

// Parts is a host's score and what it is made of (score.Parts).
type Parts = score.Parts

// MaxAdjustment bounds an observed adjustment (score.MaxAdjustment).
const MaxAdjustment = score.MaxAdjustment

// Fits is score.Fits.
func Fits(needMB, freeMB float64) (bool, string) { return score.Fits(needMB, freeMB) }

// Combine is score.Combine.
func Combine(model, adjustment float64) Parts { return score.Combine(model, adjustment) }

// NextAdjustment is score.NextAdjustment.
func NextAdjustment(old, expected, actual, tolerance, rate float64) (float64, bool) {
	return score.NextAdjustment(old, expected, actual, tolerance, rate)
}
