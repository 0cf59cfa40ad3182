package demand

import (
	"fmt"

	"github.com/forewarm/forewarm/models"
)

// ortDemand runs the demand model in ONNX Runtime; encoding and validation
// are shared with the Go model it wraps.
type ortDemand struct {
	*goDemand
	s *models.Session
}

func newORTDemand(onnxBytes []byte, gd *goDemand) (*ortDemand, error) {
	s, err := models.NewSession(onnxBytes, demandInput, demandOutput)
	if err != nil {
		return nil, err
	}
	return &ortDemand{goDemand: gd, s: s}, nil
}

func (d *ortDemand) Predict(in []Input) ([]float64, error) {
	x, err := encodeBatch(d.spec, in)
	if err != nil {
		return nil, err
	}
	return d.PredictEncoded(x, len(in))
}

// PredictEncoded runs n sequences given as [n][T][F].
func (d *ortDemand) PredictEncoded(x []float32, n int) ([]float64, error) {
	if err := checkEncoded(d.spec, x, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	T, F := d.spec.SeqLen, d.spec.NumFeatures()
	xt := x
	if n > 1 { // ONNX LSTM input is [T][n][F]
		xt = make([]float32, len(x))
		for i := range n {
			for t := range T {
				copy(xt[(t*n+i)*F:(t*n+i+1)*F], x[(i*T+t)*F:(i*T+t+1)*F])
			}
		}
	}
	p, err := d.s.Run(xt, []int64{int64(T), int64(n), int64(F)}, []int64{int64(n), 1})
	if err != nil {
		return nil, fmt.Errorf("demand model %s: %w", d.version, err)
	}
	out := make([]float64, n)
	for i, v := range p {
		out[i] = float64(v)
	}
	return out, nil
}

// Close releases the ONNX Runtime session.
func (d *ortDemand) Close() error { return d.s.Close() }
