//go:build !cgo

package models

import "errors"

// ORTAvailable reports whether this build can use ONNX Runtime (cgo).
const ORTAvailable = false

var errNoCgo = errors.New("onnxruntime: this binary was built without cgo; use the pure-Go model (useORT=false) or rebuild with CGO_ENABLED=1")

// InitORT always fails without cgo.
func InitORT(libPath string) error { return errNoCgo }

// Session stands for an ONNX Runtime session; without cgo none can be made.
type Session struct{}

// NewSession always fails without cgo.
func NewSession(onnxBytes []byte, in, out string) (*Session, error) { return nil, errNoCgo }

// Run always fails without cgo.
func (s *Session) Run(x []float32, inShape, outShape []int64) ([]float32, error) {
	return nil, errNoCgo
}

// Close does nothing without cgo.
func (s *Session) Close() error { return nil }
