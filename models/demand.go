package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Demand predicts, for each input, P(at least one request in the next bin). Implementations are safe for concurrent use. One
// loaded with ONNX Runtime holds a session: it implements io.Closer, and
// a caller replacing it should Close the old one.
type Demand interface {
	Predict(in []DemandInput) ([]float64, error)
	Version() string
	Spec() DemandSpec
}

// ErrIncompatible marks a model this build cannot serve (unknown format or
// version, mismatched spec, corrupt file). Callers keep their current model.
var ErrIncompatible = errors.New("incompatible model")

func incompatible(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrIncompatible, fmt.Sprintf(format, a...))
}

// parseDemandMeta reads and checks the JSON that describes a demand model.
func parseDemandMeta(s string) (demandMeta, error) {
	var m demandMeta
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return m, incompatible("model metadata is not valid JSON: %v", err)
	}
	if m.Kind != KindDemand {
		return m, incompatible("model kind %q, want %q", m.Kind, KindDemand)
	}
	if m.Version == "" {
		return m, incompatible("model metadata has no version")
	}
	if err := m.Spec.Validate(); err != nil {
		return m, incompatible("model %s: %v", m.Version, err)
	}
	return m, nil
}

// Model kinds in the registry.
const (
	KindDemand   = "demand"
	KindAffinity = "affinity"
)

// LoadDemand builds a predictor from registry bytes. meta is the registry's
// Meta (may be empty); when given it must describe the same model as the
// ONNX file's own metadata. With useORT the ONNX Runtime session runs the
// model (InitORT first); otherwise the pure-Go forward pass does. Every
// refusal wraps ErrIncompatible.
func LoadDemand(onnxBytes []byte, meta string, useORT bool) (Demand, error) {
	p, err := parseONNX(onnxBytes)
	if err != nil {
		return nil, incompatible("%v", err)
	}
	fileMeta, err := parseDemandMeta(p.meta)
	if err != nil {
		return nil, err
	}
	if meta != "" {
		regMeta, err := parseDemandMeta(meta)
		if err != nil {
			return nil, err
		}
		if regMeta.Version != fileMeta.Version {
			return nil, incompatible("registry says version %q but the ONNX file is %q", regMeta.Version, fileMeta.Version)
		}
		if !regMeta.Spec.Equal(fileMeta.Spec) {
			return nil, incompatible("model %s: registry spec differs from the ONNX file's spec", fileMeta.Version)
		}
	}
	m, err := demandFromONNX(p, fileMeta.Spec)
	if err != nil {
		return nil, incompatible("model %s: %v", fileMeta.Version, err)
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
	spec    DemandSpec
	tapes   sync.Pool
}

func newGoDemand(m *lstm, version string, spec DemandSpec) *goDemand {
	return &goDemand{m: m, version: version, spec: spec,
		tapes: sync.Pool{New: func() any { return &lstmTape{} }}}
}

func (d *goDemand) Version() string  { return d.version }
func (d *goDemand) Spec() DemandSpec { return d.spec }

func (d *goDemand) Predict(in []DemandInput) ([]float64, error) {
	x, err := encodeBatch(d.spec, in)
	if err != nil {
		return nil, err
	}
	return d.PredictEncoded(x, len(in))
}

// PredictEncoded runs n already encoded sequences ([n][T][F], see
// DemandSpec.Encode).
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
func encodeBatch(spec DemandSpec, in []DemandInput) ([]float32, error) {
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
func checkEncoded(spec DemandSpec, x []float32, n int) error {
	step := spec.SeqLen * spec.NumFeatures()
	if n < 0 || len(x) != n*step {
		return fmt.Errorf("demand input: %d values for %d sequences; the model wants sequences of %d bins x %d features (%d values each)",
			len(x), n, spec.SeqLen, spec.NumFeatures(), step)
	}
	for i, v := range x {
		if !finite(float64(v)) {
			return fmt.Errorf("demand input: sequence %d bin %d feature %s is %v", i/step, (i%step)/spec.NumFeatures(), spec.Features[i%spec.NumFeatures()], v)
		}
	}
	return nil
}
