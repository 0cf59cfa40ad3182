//go:build !cgo

package models

import "errors"

// ORTAvailable reports whether this build can use ONNX Runtime (cgo).
const ORTAvailable = false

var errNoCgo = errors.New("onnxruntime: this binary was built without cgo; use the pure-Go model (useORT=false) or rebuild with CGO_ENABLED=1")

// InitORT always fails without cgo.
func InitORT(libPath string) error { return errNoCgo }

type ortSession struct{}

func newORTSession(onnxBytes []byte, in, out string) (*ortSession, error) { return nil, errNoCgo }

func (s *ortSession) run(x []float32, inShape, outShape []int64) ([]float32, error) {
	return nil, errNoCgo
}

func (s *ortSession) Close() error { return nil }

func newORTDemand(onnxBytes []byte, gd *goDemand) (Demand, error) { return nil, errNoCgo }
