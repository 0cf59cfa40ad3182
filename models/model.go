package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/forewarm/forewarm/models/kind"
)

// Model kinds in the registry (package kind holds them for pure code).
const (
	KindDemand   = kind.Demand
	KindAffinity = kind.Affinity
)

// ErrIncompatible marks a model this build cannot serve (unknown format or
// version, mismatched spec, corrupt file). Callers keep their current model.
var ErrIncompatible = errors.New("incompatible model")

// Incompatible is an error wrapping ErrIncompatible.
func Incompatible(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrIncompatible, fmt.Sprintf(format, a...))
}

// InputError is a bad model input; Index is its position in the batch.
type InputError struct {
	Kind  string // demand or affinity
	Index int
	Field string
	Msg   string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s input %d: %s: %s", e.Kind, e.Index, e.Field, e.Msg)
}

// Finite says v is neither NaN nor infinite.
func Finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Meta is the description every exported model carries, in its ONNX
// metadata and in the registry row: kind, version and the kind's spec.
type Meta[S any] struct {
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Spec    S      `json:"spec"`
}

// String is the registry form (JSON).
func (m Meta[S]) String() string {
	b, _ := json.Marshal(m)
	return string(b)
}

// ParseMeta reads and checks a model description of kind; validate checks
// the spec. Every refusal wraps ErrIncompatible.
func ParseMeta[S any](s, kind string, validate func(S) error) (Meta[S], error) {
	var m Meta[S]
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return m, Incompatible("%s model metadata is not valid JSON: %v", kind, err)
	}
	if m.Kind != kind {
		return m, Incompatible("model kind %q, want %q", m.Kind, kind)
	}
	if m.Version == "" {
		return m, Incompatible("%s model metadata has no version", kind)
	}
	if err := validate(m.Spec); err != nil {
		return m, Incompatible("model %s: %v", m.Version, err)
	}
	return m, nil
}

// LoadMeta parses an exported file and its description, and checks that
// the registry's description (when given) names the same model.
func LoadMeta[S any](onnxBytes []byte, registryMeta, kind string, validate func(S) error, same func(a, b S) bool) (*Parsed, Meta[S], error) {
	p, err := Parse(onnxBytes)
	if err != nil {
		return nil, Meta[S]{}, err
	}
	fm, err := ParseMeta(p.Meta, kind, validate)
	if err != nil {
		return nil, fm, err
	}
	if registryMeta != "" {
		rm, err := ParseMeta(registryMeta, kind, validate)
		if err != nil {
			return nil, fm, err
		}
		if rm.Version != fm.Version {
			return nil, fm, Incompatible("registry says version %q but the ONNX file is %q", rm.Version, fm.Version)
		}
		if !same(rm.Spec, fm.Spec) {
			return nil, fm, Incompatible("model %s: registry spec differs from the ONNX file's spec", fm.Version)
		}
	}
	return p, fm, nil
}
