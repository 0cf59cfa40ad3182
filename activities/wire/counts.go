package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// Counts is requests per bin, oldest first. In memory it is a plain slice;
// its JSON form is compact, because a loop carries a day of bins in every
// continue-as-new input and most of them are zeros:
//
//	{"n":1440,"z":[3,1436],"v":[2,5]}
//
// is 1440 bins whose only requests are 2 after three idle bins and 5 after
// 1436 more (z: idle bins before each value; the rest of the n bins are
// idle). A mostly busy history is written as a plain array, the form loops
// wrote before, which is always read as it is.
type Counts []float64

// MaxCountBins bounds how many bins a Counts may hold when decoded.
const MaxCountBins = 1 << 20

type sparseCounts struct {
	N int       `json:"n"`
	Z []int     `json:"z"`
	V []float64 `json:"v"`
}

// MarshalJSON writes the shorter form: sparse when fewer than half the
// bins saw requests, a plain array otherwise.
func (c Counts) MarshalJSON() ([]byte, error) {
	nonzero := 0
	for _, v := range c {
		if v != 0 {
			nonzero++
		}
	}
	if c == nil || 2*nonzero >= len(c) {
		return json.Marshal([]float64(c))
	}
	s := sparseCounts{N: len(c), Z: make([]int, 0, nonzero), V: make([]float64, 0, nonzero)}
	gap := 0
	for _, v := range c {
		if v == 0 {
			gap++
			continue
		}
		s.Z, s.V = append(s.Z, gap), append(s.V, v)
		gap = 0
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads either form, refusing what no history can hold:
// negative or non-finite counts, gaps that do not fit, too many bins.
func (c *Counts) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		*c = nil
		return nil
	}
	if len(data) > 0 && data[0] == '[' {
		var v []float64
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("counts: %w", err)
		}
		if len(v) > MaxCountBins {
			return fmt.Errorf("counts: %d bins, more than %d", len(v), MaxCountBins)
		}
		for i, x := range v {
			if !(x >= 0) || math.IsInf(x, 0) {
				return fmt.Errorf("counts: bin %d holds %v, not a count", i, x)
			}
		}
		*c = v
		return nil
	}
	var s sparseCounts
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("counts: %w", err)
	}
	switch {
	case s.N < 0 || s.N > MaxCountBins:
		return fmt.Errorf("counts: n %d is outside [0, %d]", s.N, MaxCountBins)
	case len(s.Z) != len(s.V):
		return fmt.Errorf("counts: %d gaps for %d values", len(s.Z), len(s.V))
	}
	out := make(Counts, s.N)
	i := 0
	for k, z := range s.Z {
		v := s.V[k]
		switch {
		case z < 0:
			return fmt.Errorf("counts: gap %d is negative", k)
		case !(v > 0) || math.IsInf(v, 0):
			return fmt.Errorf("counts: value %d is %v, not a positive count", k, v)
		case z >= s.N-i:
			return fmt.Errorf("counts: value %d falls beyond the %d bins", k, s.N)
		}
		i += z
		out[i] = v
		i++
	}
	*c = out
	return nil
}
