package sim

import (
	"fmt"
	"time"

	"github.com/forewarm/forewarm/models"
)

// DemandForecaster puts the production demand model behind Forecaster: at
// bin b it builds one models.DemandInput per application from the observed
// counts (the last Spec().HistoryBins() bins before b, fewer at the start of
// the trace, exactly what the prediction loop keeps) and asks the model once
// for the whole batch. Same feature code, same model file, same runtime as
// production.
type DemandForecaster struct {
	Model models.Demand

	in  []models.DemandInput
	buf []float64
}

func (d *DemandForecaster) Horizon() int { return d.Model.Spec().Horizon }

func (d *DemandForecaster) Forecast(b int, h *History) ([]float64, error) {
	env := h.Env()
	spec := d.Model.Spec()
	if env.Bin != spec.Bin() {
		return nil, fmt.Errorf("demand model %s was trained on %v bins, the trace has %v", d.Model.Version(), spec.Bin(), env.Bin)
	}
	if h.Now() != b {
		return nil, fmt.Errorf("forecast for bin %d with %d bins observed", b, h.Now())
	}
	n := min(b, spec.HistoryBins())
	apps := len(env.Apps)
	if len(d.buf) < apps*n {
		d.buf = make([]float64, apps*n)
	}
	d.in = d.in[:0]
	next := env.Start.Add(time.Duration(b) * env.Bin)
	for i, a := range env.Apps {
		c := d.buf[i*n : (i+1)*n : (i+1)*n]
		for j, v := range h.Counts(i)[b-n:] {
			c[j] = float64(v)
		}
		d.in = append(d.in, models.DemandInput{Counts: c, Next: next, Bin: env.Bin, MemoryMB: a.MemoryMB, ReadRatio: a.ReadRatio})
	}
	p, err := d.Model.Predict(d.in)
	if err != nil {
		return nil, fmt.Errorf("demand model %s at bin %d: %w", d.Model.Version(), b, err)
	}
	// The model's slice may be reused by it; the cache keeps ours.
	return append([]float64(nil), p...), nil
}
