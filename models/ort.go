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
			ortInit.err = fmt.Errorf("onnxruntime library: %w (set --onnxruntime-lib / $ONNXRUNTIME_LIB to libonnxruntime.so; local stack: `make up` installs it)", err)
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

// Session runs one float32 input -> one float32 output graph in ONNX
// Runtime. Close releases it.
type Session struct {
	sess    *ort.DynamicAdvancedSession
	in, out string
}

// NewSession loads a graph with input in and output out (InitORT first).
func NewSession(onnxBytes []byte, in, out string) (*Session, error) {
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
		return nil, Incompatible("onnxruntime refused the model: %v", err)
	}
	return &Session{sess: s, in: in, out: out}, nil
}

// Run feeds x with shape inShape and returns the output of shape outShape.
func (s *Session) Run(x []float32, inShape, outShape []int64) ([]float32, error) {
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

// Close releases the session.
func (s *Session) Close() error { return s.sess.Destroy() }
