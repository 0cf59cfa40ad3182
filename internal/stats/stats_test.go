package stats

import "testing"

func TestPercentileInterpolatesLikeNumpy(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	for q, want := range map[float64]float64{0: 1, 0.5: 2.5, 0.75: 3.25, 1: 4} {
		if got := Percentile(xs, q); got != want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, q, got, want)
		}
	}
	if xs[0] != 4 {
		t.Error("Percentile reordered its input")
	}
	if Percentile(nil, 0.5) != 0 || Percentile([]float64{7}, 0.9) != 7 {
		t.Error("no data is 0; one value is itself")
	}
}
