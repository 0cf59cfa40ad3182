package sim

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/forewarm/forewarm/models/demand"
)

// DemandForecaster puts the production demand model behind Forecaster: at
// bin b it builds one demand.Input per application from the observed
// counts (the last Spec().HistoryBins() bins before b, fewer at the start of
// the trace, exactly what the prediction loop keeps) and asks the model once
// for the whole batch. Same feature code, same model file, same runtime as
// production. Large batches are split into chunks of BatchSize (default
// 512) and run by Workers goroutines (default 1).
type DemandForecaster struct {
	Model     demand.Model
	BatchSize int
	Workers   int

	in  []demand.Input
	buf []float64
}

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
	for i := range env.Apps {
		c := d.buf[i*n : (i+1)*n : (i+1)*n]
		for j, v := range h.Counts(i)[b-n:] {
			c[j] = float64(v)
		}
		d.in = append(d.in, demand.Input{Counts: c, Next: next, Bin: env.Bin})
	}
	out := make([]float64, apps)
	bs, workers := d.BatchSize, d.Workers
	if bs <= 0 {
		bs = 512
	}
	if workers <= 0 {
		workers = 1
	}
	chunks := (apps + bs - 1) / bs
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for c := range chunks {
		lo, hi := c*bs, min((c+1)*bs, apps)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := d.Model.Predict(d.in[lo:hi])
			if err == nil && len(p) != hi-lo {
				err = fmt.Errorf("%d outputs for %d inputs", len(p), hi-lo)
			}
			if err != nil {
				errs[c] = fmt.Errorf("demand model %s at bin %d: %w", d.Model.Version(), b, err)
				return
			}
			copy(out[lo:hi], p) // the model may reuse its slice
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
