package demand

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/forewarm/forewarm/models"
)

// Format names the feature encoding this code implements. A model
// whose metadata names another format is refused: its inputs would mean
// something else. v2: the output is P(a request in the next bin), the
// application's own idle-time hazard is an input, and nothing the trace
// knows only in hindsight (its whole-day memory average) is.
const Format = "forewarm.demand/v2"

// demandFeatures are the per-bin input features, in tensor order. Every one
// is computed from the counts before the prediction point only.
var demandFeatures = []string{
	"log_count",       // log1p(count) / CountScale
	"active",          // 1 when the bin had a request
	"tod_sin",         // time of day of the bin start (0 unless TimeOfDay)
	"tod_cos",         //
	"dow_sin",         // day of week of the bin start (0 unless DayOfWeek)
	"dow_cos",         //
	"recency",         // log1p(bins since last request, capped) / log1p(GapCap)
	"active_rate",     // share of active bins over the last RateWindow bins before the prediction (constant over the sequence)
	"recent_density",  // share of active bins among the last DensityBins bins up to this one
	"hazard",          // the app's empirical chance of a request in the bin after this one, from its idle times (see Hazard)
	"hazard_evidence", // log1p(idle times behind the hazard) / log1p(HazardEvidenceCap) (constant)
}

// Spec is everything needed to turn raw activity into the model's
// input tensor and to read its output. It travels inside the ONNX file
// (metadata_props) and in the registry's Meta, and is checked on load.
type Spec struct {
	Format     string   `json:"format"`
	Features   []string `json:"features"`
	SeqLen     int      `json:"seq_len"` // T: bins per input sequence
	Horizon    int      `json:"horizon"` // always 1: the output is P(>=1 request in the next bin)
	Hidden     int      `json:"hidden"`  // LSTM hidden size
	BinSeconds float64  `json:"bin_seconds"`
	CountScale float64  `json:"count_scale"`
	GapCap     int      `json:"gap_cap"`     // bins; recency saturates here, and idle times are read over this window
	RateWindow int      `json:"rate_window"` // bins of history behind active_rate
	// DensityBins is the window of recent_density.
	DensityBins int `json:"density_bins"`
	// Hazard is how idle times become the hazard feature.
	Hazard HazardSpec `json:"hazard"`
	// TimeOfDay and DayOfWeek enable the calendar features. A model can
	// only learn them from a training range that covers every hour (a day)
	// or every weekday (a week); training turns each on when it does.
	TimeOfDay bool `json:"time_of_day"`
	DayOfWeek bool `json:"day_of_week"`
}

// HazardSpec turns an application's observed idle times into the chance of
// a request in the next bin, given the bins it has been idle so far: the
// discrete hazard of its idle-time distribution, smoothed.
//
// With k bins idle so far, an idle time t "matches" when |t - k| <= w(k)
// and "survives" when t >= k - w(k), w(k) = KernelBins + floor(KernelRel·k)
// (timers drift by a bin; long periods by a few percent). Then
//
//	hazard(k) = (matches + Prior·rate) / (survivors + Prior)
//
// where rate is the application's share of active bins, the hazard of a
// memoryless application: with no idle times observed the feature falls
// back to it. Idle times are read from the last GapCap bins.
type HazardSpec struct {
	KernelBins int     `json:"kernel_bins"`
	KernelRel  float64 `json:"kernel_rel"`
	Prior      float64 `json:"prior"`
	// EvidenceCap scales hazard_evidence (log1p of the idle-time count).
	EvidenceCap int `json:"evidence_cap"`
}

// DefaultSpec is the spec used when TrainOptions leave fields zero.
func DefaultSpec(bin time.Duration) Spec {
	return Spec{
		Format:      Format,
		Features:    slices.Clone(demandFeatures),
		SeqLen:      32,
		Horizon:     1,
		Hidden:      32,
		BinSeconds:  bin.Seconds(),
		CountScale:  8,    // log1p(~3000 requests per bin) -> 1
		GapCap:      1440, // a day of one-minute bins
		RateWindow:  1440,
		DensityBins: 5,
		Hazard:      HazardSpec{KernelBins: 1, KernelRel: 0.05, Prior: 0.5, EvidenceCap: 1000},
	}
}

// NumFeatures is the width of one time step of the input tensor.
func (s Spec) NumFeatures() int { return len(s.Features) }

// Validate checks that the spec is one this code can encode.
func (s Spec) Validate() error {
	switch {
	case s.Format != Format:
		return fmt.Errorf("demand spec format %q is not supported (this build speaks %q; retrain the model)", s.Format, Format)
	case !slices.Equal(s.Features, demandFeatures):
		return fmt.Errorf("demand spec features %v do not match this build's %v", s.Features, demandFeatures)
	case s.SeqLen < 1 || s.SeqLen > 10000:
		return fmt.Errorf("demand spec seq_len %d out of range 1..10000", s.SeqLen)
	case s.Horizon != 1:
		return fmt.Errorf("demand spec horizon %d: this format predicts the next bin only (1)", s.Horizon)
	case s.Hidden < 1 || s.Hidden > 1024:
		return fmt.Errorf("demand spec hidden %d out of range 1..1024", s.Hidden)
	case !(s.BinSeconds > 0):
		return fmt.Errorf("demand spec bin_seconds %v must be > 0", s.BinSeconds)
	case !(s.CountScale > 0):
		return fmt.Errorf("demand spec count_scale %v must be > 0", s.CountScale)
	case s.GapCap < 1 || s.RateWindow < 1 || s.DensityBins < 1:
		return fmt.Errorf("demand spec gap_cap %d, rate_window %d and density_bins %d must be >= 1", s.GapCap, s.RateWindow, s.DensityBins)
	case s.Hazard.KernelBins < 0 || !(s.Hazard.KernelRel >= 0 && s.Hazard.KernelRel < 1) || !(s.Hazard.Prior > 0) || s.Hazard.EvidenceCap < 1:
		return fmt.Errorf("demand spec hazard %+v: kernel_bins >= 0, 0 <= kernel_rel < 1, prior > 0 and evidence_cap >= 1", s.Hazard)
	}
	return nil
}

// Equal reports whether two specs describe the same encoding.
func (s Spec) Equal(o Spec) bool {
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// Bin is the bin width as a duration.
func (s Spec) Bin() time.Duration {
	return time.Duration(s.BinSeconds * float64(time.Second))
}

// HistoryBins is how many trailing bins of history the features can use;
// callers may pass fewer (missing bins count as idle) or more (ignored).
func (s Spec) HistoryBins() int { return max(s.SeqLen, s.RateWindow, s.GapCap) }

// Input is one application's recent activity at one prediction point.
type Input struct {
	Counts []float64     // requests per bin, oldest first, ending with the last complete bin
	Next   time.Time     // start of the bin being predicted
	Bin    time.Duration // bin width; must match the model's (zero = assume it does)
}

// Encode writes the model input for one prediction into dst, time-major per
// sequence: dst[j*F+f] for step j (oldest first) and feature f.
// len(dst) must be SeqLen*NumFeatures.
func (s Spec) Encode(dst []float32, in Input, index int) error {
	return s.encodeInput(dst, in, index, NewIdleTimes(nil, s.GapCap, s.Hazard))
}

// encodeInput validates and encodes in, reusing idle as scratch.
func (s Spec) encodeInput(dst []float32, in Input, index int, idle *IdleTimes) error {
	if !in.Next.IsZero() && in.Bin > 0 && in.Bin != s.Bin() {
		return &models.InputError{Kind: models.KindDemand, Index: index, Field: "Bin", Msg: fmt.Sprintf("bin %v does not match the model's %v", in.Bin, s.Bin())}
	}
	if in.Next.IsZero() {
		return &models.InputError{Kind: models.KindDemand, Index: index, Field: "Next", Msg: "zero time"}
	}
	for i, c := range in.Counts {
		if !models.Finite(c) || c < 0 {
			return &models.InputError{Kind: models.KindDemand, Index: index, Field: "Counts", Msg: fmt.Sprintf("bin %d of %d is %v, want a finite count >= 0", i, len(in.Counts), c)}
		}
	}
	idle.reset(tail(in.Counts, s.GapCap))
	s.encodeWith(dst, in.Counts, in.Next, idle)
	return nil
}

// IdleTimes is an application's histogram of idle times (bins between two
// active bins) over a window of its counts, with what the hazard needs.
type IdleTimes struct {
	cum    []float64 // cum[t] = idle times < t, t in 0..cap+1
	n      float64   // idle times counted
	rate   float64   // share of active bins in the window
	hazard HazardSpec
}

// NewIdleTimes reads the idle times of counts (oldest first); idle times
// longer than gapCap are counted at gapCap.
func NewIdleTimes(counts []float64, gapCap int, h HazardSpec) *IdleTimes {
	it := &IdleTimes{cum: make([]float64, gapCap+2), hazard: h}
	it.reset(counts)
	return it
}

func (it *IdleTimes) reset(counts []float64) {
	gapCap := len(it.cum) - 2
	hist := it.cum[1:] // hist[t] = idle times == t, accumulated in place below
	clear(it.cum)
	last, active := -1, 0
	for i, c := range counts {
		if c <= 0 {
			continue
		}
		active++
		if last >= 0 {
			hist[min(i-last-1, gapCap)]++
		}
		last = i
	}
	for t := 1; t < len(it.cum); t++ {
		it.cum[t] += it.cum[t-1]
	}
	it.n = it.cum[len(it.cum)-1]
	it.rate = 0
	if len(counts) > 0 {
		it.rate = float64(active) / float64(len(counts))
	}
}

// Count is the number of idle times observed.
func (it *IdleTimes) Count() float64 { return it.n }

// Hazard is the smoothed chance of a request in the next bin after k idle
// bins (HazardSpec).
func (it *IdleTimes) Hazard(k int) float64 {
	h := it.hazard
	capT := len(it.cum) - 2
	k = max(0, min(k, capT))
	w := h.KernelBins + int(h.KernelRel*float64(k))
	lo, hi := max(0, k-w), min(capT, k+w)
	matches := it.cum[hi+1] - it.cum[lo]
	survivors := it.n - it.cum[lo]
	p := (matches + h.Prior*it.rate) / (survivors + h.Prior)
	return min(1, max(0, p))
}

func tail(c []float64, n int) []float64 { return c[max(0, len(c)-n):] }

// encodeWith encodes validated input whose idle times were read from
// counts' last GapCap bins into idle. counts ends with the bin just before
// next.
func (s Spec) encodeWith(dst []float32, counts []float64, next time.Time, idle *IdleTimes) {
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
	gapNorm := math.Log1p(float64(s.GapCap))
	evidence := float32(math.Log1p(idle.Count()) / math.Log1p(float64(s.Hazard.EvidenceCap)))

	// Recency at the step before the window: scan back from the window start.
	start := n - T // index in counts of step 0; may be negative
	gap := s.GapCap
	for i := min(start, n) - 1; i >= 0 && i >= start-s.GapCap; i-- {
		if counts[i] > 0 {
			gap = start - 1 - i
			break
		}
	}
	// Activity in the DensityBins bins before the window, for recent_density.
	D := s.DensityBins
	inWin := 0
	for i := start - D; i < start; i++ {
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
		if old := i - D; old >= 0 && old < n && counts[old] > 0 {
			inWin--
		}
		x := dst[j*F : (j+1)*F : (j+1)*F]
		x[0] = float32(math.Log1p(c) / s.CountScale)
		x[1] = b2f(act)
		t := next.Add(-time.Duration(T-j) * bin).UTC()
		day := float64(t.Hour()*3600+t.Minute()*60+t.Second()) / 86400
		x[2], x[3], x[4], x[5] = 0, 0, 0, 0
		if s.TimeOfDay {
			x[2] = float32(math.Sin(2 * math.Pi * day))
			x[3] = float32(math.Cos(2 * math.Pi * day))
		}
		if s.DayOfWeek {
			week := (float64(t.Weekday()) + day) / 7
			x[4] = float32(math.Sin(2 * math.Pi * week))
			x[5] = float32(math.Cos(2 * math.Pi * week))
		}
		x[6] = float32(math.Log1p(float64(gap)) / gapNorm)
		x[7] = float32(rate)
		x[8] = float32(inWin) / float32(D)
		// The bin after step j follows `gap` idle bins (0 right after a
		// request); never active so far: the window's length.
		x[9] = float32(idle.Hazard(gap))
		x[10] = evidence
	}
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}
