package demand

import (
	"fmt"
	"sync"

	"github.com/forewarm/forewarm/models"
)

// Model predicts, for each input, P(at least one request in the next bin). Implementations are safe for concurrent use. One
// loaded with ONNX Runtime holds a session: it implements io.Closer, and
// a caller replacing it should Close the old one.
type Model interface {
	Predict(in []Input) ([]float64, error)
	Version() string
	Spec() Spec
}

type meta = models.Meta[Spec]

func sameSpec(a, b Spec) bool { return a.Equal(b) }

// Load builds a predictor from registry bytes. meta is the registry's
// Meta (may be empty); when given it must describe the same model as the
// ONNX file's own metadata. With useORT the ONNX Runtime session runs the
// model (InitORT first); otherwise the pure-Go forward pass does. Every
// refusal wraps ErrIncompatible.
func Load(onnxBytes []byte, registryMeta string, useORT bool) (Model, error) {
	p, fileMeta, err := models.LoadMeta(onnxBytes, registryMeta, models.KindDemand, Spec.Validate, sameSpec)
	if err != nil {
		return nil, err
	}
	m, err := demandFromONNX(p, fileMeta.Spec)
	if err != nil {
		return nil, models.Incompatible("model %s: %v", fileMeta.Version, err)
	}
	gd := newGoDemand(m, fileMeta.Version, fileMeta.Spec)
	if !useORT {
		return gd, nil
	}
	od, err := newORTDemand(onnxBytes, gd)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", fileMeta.Version, err)
	}
	return od, nil
}

// goDemand runs the model with the pure-Go forward pass.
type goDemand struct {
	m       *lstm
	version string
	spec    Spec
	tapes   sync.Pool
}

func newGoDemand(m *lstm, version string, spec Spec) *goDemand {
	return &goDemand{m: m, version: version, spec: spec,
		tapes: sync.Pool{New: func() any { return &lstmTape{} }}}
}

func (d *goDemand) Version() string { return d.version }
func (d *goDemand) Spec() Spec      { return d.spec }

func (d *goDemand) Predict(in []Input) ([]float64, error) {
	x, err := encodeBatch(d.spec, in)
	if err != nil {
		return nil, err
	}
	return d.PredictEncoded(x, len(in))
}

// PredictEncoded runs n already encoded sequences ([n][T][F], see
// Spec.Encode).
func (d *goDemand) PredictEncoded(x []float32, n int) ([]float64, error) {
	if err := checkEncoded(d.spec, x, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	tp := d.tapes.Get().(*lstmTape)
	defer d.tapes.Put(tp)
	// Chunks keep the activation tape in cache (a 256-sequence tape is ~10 MB).
	const chunk = 32
	step := d.spec.SeqLen * d.spec.NumFeatures()
	out := make([]float64, 0, n)
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		for _, v := range d.m.predict(x[lo*step:hi*step], hi-lo, d.spec.SeqLen, tp) {
			out = append(out, float64(v))
		}
	}
	return out, nil
}

// encodeBatch validates and encodes inputs into one [n][T][F] tensor.
func encodeBatch(spec Spec, in []Input) ([]float32, error) {
	step := spec.SeqLen * spec.NumFeatures()
	x := make([]float32, len(in)*step)
	idle := NewIdleTimes(nil, spec.GapCap, spec.Hazard)
	for i := range in {
		if err := spec.encodeInput(x[i*step:(i+1)*step], in[i], i, idle); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// checkEncoded refuses tensors of the wrong length or with non-finite values.
func checkEncoded(spec Spec, x []float32, n int) error {
	step := spec.SeqLen * spec.NumFeatures()
	if n < 0 || len(x) != n*step {
		return fmt.Errorf("demand input: %d values for %d sequences; the model wants sequences of %d bins x %d features (%d values each)",
			len(x), n, spec.SeqLen, spec.NumFeatures(), step)
	}
	for i, v := range x {
		if !models.Finite(float64(v)) {
			return fmt.Errorf("demand input: sequence %d bin %d feature %s is %v", i/step, (i%step)/spec.NumFeatures(), spec.Features[i%spec.NumFeatures()], v)
		}
	}
	return nil
}
