package demand

import (
	"math"
	"testing"

	"github.com/forewarm/forewarm/models"
)

func TestPlattFit(t *testing.T) {
	// Labels drawn as sigmoid(2z - 1): the fit should recover a~2, c~-1.
	var z []float64
	var y []bool
	for i := range 4000 {
		zi := float64(i%200)/50 - 2
		p := 1 / (1 + math.Exp(-(2*zi - 1)))
		// deterministic "sampling": positive for the first p share of each repeat
		z = append(z, zi)
		y = append(y, float64(i/200)/20 < p)
	}
	a, c := fitPlatt(z, y)
	if math.Abs(a-2) > 0.3 || math.Abs(c+1) > 0.3 {
		t.Errorf("Platt fit a=%.3f c=%.3f, want ~2, ~-1", a, c)
	}
}

func TestFlatDropsUndefinedAUC(t *testing.T) {
	m, err := models.Score([]float64{0.2, 0.3}, nil, []bool{false, false})
	if err != nil {
		t.Fatal(err)
	}
	ev := &Evaluation{Model: &m, Baselines: map[string]models.Metrics{}}
	if _, ok := ev.Flat()["model.roc_auc"]; ok {
		t.Error("Flat kept a NaN AUC")
	}
}
