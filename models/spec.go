package models

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// DemandFormat names the feature encoding this code implements. A model
// whose metadata names another format is refused: its inputs would mean
// something else.
const DemandFormat = "forewarm.demand/v1"

// demandFeatures are the per-bin input features, in tensor order.
var demandFeatures = []string{
	"log_count",      // log1p(count) / CountScale
	"active",         // 1 when the bin had a request
	"tod_sin",        // time of day of the bin start
	"tod_cos",        //
	"dow_sin",        // day of week of the bin start
	"dow_cos",        //
	"recency",        // log1p(bins since last request, capped) / log1p(GapCap)
	"active_rate",    // share of active bins over the last RateWindow bins before the prediction (constant over the sequence)
	"log_memory",     // log1p(MB) / MemoryScale (constant)
	"read_ratio",     // 0..1 (constant)
	"recent_density", // share of active bins among the last Horizon bins up to this one
}

// DemandSpec is everything needed to turn raw activity into the model's
// input tensor and to read its output. It travels inside the ONNX file
// (metadata_props) and in the registry's Meta, and is checked on load.
type DemandSpec struct {
	Format      string   `json:"format"`
	Features    []string `json:"features"`
	SeqLen      int      `json:"seq_len"`     // T: bins per input sequence
	Horizon     int      `json:"horizon"`     // H: the output is P(>=1 request in the next H bins)
	Hidden      int      `json:"hidden"`      // LSTM hidden size
	BinSeconds  float64  `json:"bin_seconds"` // bin width the model was trained on
	CountScale  float64  `json:"count_scale"`
	GapCap      int      `json:"gap_cap"`     // bins; recency saturates here
	RateWindow  int      `json:"rate_window"` // bins of history behind active_rate
	MemoryScale float64  `json:"memory_scale"`
	// TimeFeatures enables the time-of-day and day-of-week features. With
	// less than two days of training history they cannot be learnt (every
	// later hour is unseen), so training turns them off (zeros) then.
	TimeFeatures bool `json:"time_features"`
}

// DefaultDemandSpec is the spec used when TrainOptions leave fields zero.
func DefaultDemandSpec(bin time.Duration) DemandSpec {
	return DemandSpec{
		Format:       DemandFormat,
		Features:     slices.Clone(demandFeatures),
		SeqLen:       64,
		Horizon:      5,
		Hidden:       32,
		BinSeconds:   bin.Seconds(),
		CountScale:   8,    // log1p(~3000 requests per bin) -> 1
		GapCap:       1440, // a day of one-minute bins
		RateWindow:   1440,
		MemoryScale:  10, // log1p(~22 GB) -> 1
		TimeFeatures: true,
	}
}

// NumFeatures is the width of one time step of the input tensor.
func (s DemandSpec) NumFeatures() int { return len(s.Features) }

// Validate checks that the spec is one this code can encode.
func (s DemandSpec) Validate() error {
	switch {
	case s.Format != DemandFormat:
		return fmt.Errorf("demand spec format %q is not supported (this build speaks %q)", s.Format, DemandFormat)
	case !slices.Equal(s.Features, demandFeatures):
		return fmt.Errorf("demand spec features %v do not match this build's %v", s.Features, demandFeatures)
	case s.SeqLen < 1 || s.SeqLen > 10000:
		return fmt.Errorf("demand spec seq_len %d out of range 1..10000", s.SeqLen)
	case s.Horizon < 1:
		return fmt.Errorf("demand spec horizon %d must be >= 1", s.Horizon)
	case s.Hidden < 1 || s.Hidden > 1024:
		return fmt.Errorf("demand spec hidden %d out of range 1..1024", s.Hidden)
	case !(s.BinSeconds > 0):
		return fmt.Errorf("demand spec bin_seconds %v must be > 0", s.BinSeconds)
	case !(s.CountScale > 0) || !(s.MemoryScale > 0):
		return fmt.Errorf("demand spec scales must be > 0 (count_scale %v, memory_scale %v)", s.CountScale, s.MemoryScale)
	case s.GapCap < 1 || s.RateWindow < 1:
		return fmt.Errorf("demand spec gap_cap %d and rate_window %d must be >= 1", s.GapCap, s.RateWindow)
	}
	return nil
}

// Equal reports whether two specs describe the same encoding.
func (s DemandSpec) Equal(o DemandSpec) bool {
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// Bin is the bin width as a duration.
func (s DemandSpec) Bin() time.Duration {
	return time.Duration(s.BinSeconds * float64(time.Second))
}

// HistoryBins is how many trailing bins of history the features can use;
// callers may pass fewer (missing bins count as idle) or more (ignored).
func (s DemandSpec) HistoryBins() int { return max(s.SeqLen, s.RateWindow, s.GapCap) }

// DemandInput is one application's recent activity at one prediction point.
type DemandInput struct {
	Counts    []float64     // requests per bin, oldest first, ending with the last complete bin
	Next      time.Time     // start of the first bin being predicted
	Bin       time.Duration // bin width; must match the model's (zero = assume it does)
	MemoryMB  float64
	ReadRatio float64
}

// InputError is a bad prediction input; Index is its position in the batch.
type InputError struct {
	Index int
	Field string
	Msg   string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("demand input %d: %s: %s", e.Index, e.Field, e.Msg)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Encode writes the model input for one prediction into dst, time-major per
// sequence: dst[j*F+f] for step j (oldest first) and feature f.
// len(dst) must be SeqLen*NumFeatures.
func (s DemandSpec) Encode(dst []float32, in DemandInput, index int) error {
	if !in.Next.IsZero() && in.Bin > 0 && in.Bin != s.Bin() {
		return &InputError{index, "Bin", fmt.Sprintf("bin %v does not match the model's %v", in.Bin, s.Bin())}
	}
	if in.Next.IsZero() {
		return &InputError{index, "Next", "zero time"}
	}
	if !finite(in.MemoryMB) || in.MemoryMB < 0 {
		return &InputError{index, "MemoryMB", fmt.Sprintf("%v is not a finite non-negative number", in.MemoryMB)}
	}
	if !finite(in.ReadRatio) || in.ReadRatio < 0 || in.ReadRatio > 1 {
		return &InputError{index, "ReadRatio", fmt.Sprintf("%v is not in 0..1", in.ReadRatio)}
	}
	for i, c := range in.Counts {
		if !finite(c) || c < 0 {
			return &InputError{index, "Counts", fmt.Sprintf("bin %d of %d is %v, want a finite count >= 0", i, len(in.Counts), c)}
		}
	}
	s.encode(dst, in.Counts, in.Next, in.MemoryMB, in.ReadRatio)
	return nil
}

// encode assumes validated input. counts ends with the bin just before next.
func (s DemandSpec) encode(dst []float32, counts []float64, next time.Time, memMB, readRatio float64) {
	F := s.NumFeatures()
	T := s.SeqLen
	n := len(counts)
	bin := s.Bin()

	// Scalars over the long window.
	active := 0
	w := min(n, s.RateWindow)
	for _, c := range counts[n-w:] {
		if c > 0 {
			active++
		}
	}
	rate := 0.0
	if w > 0 {
		rate = float64(active) / float64(w)
	}
	logMem := float32(math.Log1p(memMB) / s.MemoryScale)
	rr := float32(readRatio)
	gapNorm := math.Log1p(float64(s.GapCap))

	// Recency at the step before the window: scan back from the window start.
	start := n - T // index in counts of step 0; may be negative
	gap := s.GapCap
	for i := min(start, n) - 1; i >= 0 && i >= start-s.GapCap; i-- {
		if counts[i] > 0 {
			gap = start - 1 - i
			break
		}
	}
	// Activity in the H bins before the window, for recent_density.
	inWin := 0
	for i := start - s.Horizon; i < start; i++ {
		if i >= 0 && i < n && counts[i] > 0 {
			inWin++
		}
	}

	for j := range T {
		i := start + j
		c := 0.0
		if i >= 0 {
			c = counts[i]
		}
		act := c > 0
		if act {
			gap = 0
		} else if gap < s.GapCap {
			gap++
		}
		if act {
			inWin++
		}
		if old := i - s.Horizon; old >= 0 && old < n && counts[old] > 0 {
			inWin--
		}
		x := dst[j*F : (j+1)*F : (j+1)*F]
		x[0] = float32(math.Log1p(c) / s.CountScale)
		x[1] = b2f(act)
		if s.TimeFeatures {
			t := next.Add(-time.Duration(T-j) * bin).UTC()
			day := float64(t.Hour()*3600+t.Minute()*60+t.Second()) / 86400
			week := (float64(t.Weekday()) + day) / 7
			x[2] = float32(math.Sin(2 * math.Pi * day))
			x[3] = float32(math.Cos(2 * math.Pi * day))
			x[4] = float32(math.Sin(2 * math.Pi * week))
			x[5] = float32(math.Cos(2 * math.Pi * week))
		} else {
			x[2], x[3], x[4], x[5] = 0, 0, 0, 0
		}
		x[6] = float32(math.Log1p(float64(gap)) / gapNorm)
		x[7] = float32(rate)
		x[8] = logMem
		x[9] = rr
		x[10] = float32(inWin) / float32(s.Horizon)
	}
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// metaJSON is the registry Meta and the ONNX metadata for a demand model.
type demandMeta struct {
	Kind    string             `json:"kind"`
	Version string             `json:"version"`
	Spec    DemandSpec         `json:"spec"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}
