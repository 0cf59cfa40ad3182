//go:build cgo

package models

import (
	"fmt"
	"os"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTAvailable reports whether this build can use ONNX Runtime (cgo).
const ORTAvailable = true

var ortInit struct {
	once sync.Once
	lib  string
	err  error
}

// InitORT loads the ONNX Runtime shared library and creates the process-wide
// environment. Only the first call does work; later calls return its result
// (a different libPath afterwards is an error: one library per process).
func InitORT(libPath string) error {
	ortInit.once.Do(func() {
		ortInit.lib = libPath
		if libPath == "" {
			ortInit.err = fmt.Errorf("onnxruntime: no library path (set --onnxruntime-lib or ONNXRUNTIME_LIB)")
			return
		}
		if _, err := os.Stat(libPath); err != nil {
			ortInit.err = fmt.Errorf("onnxruntime library: %w (run `make up` to install it)", err)
			return
		}
		ort.SetSharedLibraryPath(libPath)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			ortInit.err = fmt.Errorf("onnxruntime: initialise with %s: %w", libPath, err)
		}
	})
	if ortInit.err == nil && libPath != ortInit.lib {
		return fmt.Errorf("onnxruntime: already initialised with %s, cannot switch to %s", ortInit.lib, libPath)
	}
	return ortInit.err
}

// ortSession runs one float32 input -> one float32 output graph.
type ortSession struct {
	sess    *ort.DynamicAdvancedSession
	in, out string
}

func newORTSession(onnxBytes []byte, in, out string) (*ortSession, error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("onnxruntime: not initialised; call models.InitORT first")
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: session options: %w", err)
	}
	defer opts.Destroy()
	// One thread each: stable latency on small shared machines; callers
	// parallelise across requests, not inside one.
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(onnxBytes, []string{in}, []string{out}, opts)
	if err != nil {
		return nil, incompatible("onnxruntime refused the model: %v", err)
	}
	return &ortSession{sess: s, in: in, out: out}, nil
}

// run feeds x with shape inShape and returns outLen floats of output shape outShape.
func (s *ortSession) run(x []float32, inShape, outShape []int64) ([]float32, error) {
	it, err := ort.NewTensor(ort.NewShape(inShape...), x)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime input tensor: %w", err)
	}
	defer it.Destroy()
	ot, err := ort.NewEmptyTensor[float32](ort.NewShape(outShape...))
	if err != nil {
		return nil, fmt.Errorf("onnxruntime output tensor: %w", err)
	}
	defer ot.Destroy()
	if err := s.sess.Run([]ort.Value{it}, []ort.Value{ot}); err != nil {
		return nil, fmt.Errorf("onnxruntime run: %w", err)
	}
	return append([]float32(nil), ot.GetData()...), nil
}

func (s *ortSession) Close() error { return s.sess.Destroy() }

// ortDemand runs the demand model in ONNX Runtime; encoding and validation
// are shared with the Go model it wraps.
type ortDemand struct {
	*goDemand
	s *ortSession
}

func newORTDemand(onnxBytes []byte, gd *goDemand) (*ortDemand, error) {
	s, err := newORTSession(onnxBytes, demandInput, demandOutput)
	if err != nil {
		return nil, err
	}
	return &ortDemand{goDemand: gd, s: s}, nil
}

func (d *ortDemand) Predict(in []DemandInput) ([]float64, error) {
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
	p, err := d.s.run(xt, []int64{int64(T), int64(n), int64(F)}, []int64{int64(n), 1})
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
