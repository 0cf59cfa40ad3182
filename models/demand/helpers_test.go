package demand

import (
	"math/rand/v2"
	"testing"
	"time"
)

// randomDemand is an untrained model with spread-out weights, so that
// agreement is tested away from the saturated regions.
func randomDemand(t testing.TB, hidden int, seed uint64) (*Result, []Input) {
	t.Helper()
	spec := DefaultSpec(time.Minute)
	spec.Hidden = hidden
	rng := rand.New(rand.NewPCG(seed, 3))
	m := newLSTM(spec.NumFeatures(), hidden, rng)
	m.Bout[0] = -0.5
	res := &Result{Spec: spec, Version: "test-random", model: m}
	in := make([]Input, 64)
	start := time.Date(2024, 3, 4, 5, 6, 0, 0, time.UTC)
	for i := range in {
		c := make([]float64, 30+rng.IntN(200))
		for j := range c {
			if rng.Float64() < 0.3 {
				c[j] = float64(rng.IntN(50))
			}
		}
		in[i] = Input{Counts: c, Next: start.Add(time.Duration(i) * 7 * time.Minute), Bin: time.Minute}
	}
	return res, in
}
