// Package modelstest helps tests that run models in ONNX Runtime.
package modelstest

import (
	"testing"

	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/models"
)

// InitORT loads the ONNX Runtime library for a test; a missing or unusable
// one skips the test, or fails it under CI (testenv.Missing).
func InitORT(t testing.TB) {
	t.Helper()
	if err := models.InitORT(testenv.ORTLib(t)); err != nil {
		testenv.Missing(t, "ONNX Runtime", err)
	}
}
