package demand

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models"
)

func TestLoadDemandRefusesIncompatible(t *testing.T) {
	res, _ := randomDemand(t, 8, 5)
	good, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	other := *res
	other.Spec.DensityBins = 9
	otherMeta := other.Meta()
	renamed := *res
	renamed.Version = "someone-else"

	futureSpec := *res
	futureSpec.Spec.Format = "forewarm.demand/v99"
	future, _ := exportONNX(res.model, meta{Kind: models.KindDemand, Version: "v99", Spec: futureSpec.Spec})
	fewer := *res
	fewer.Spec.Features = fewer.Spec.Features[:5]
	fewerBytes, _ := exportONNX(res.model, meta{Kind: models.KindDemand, Version: "v5", Spec: fewer.Spec})
	wrongKind, _ := exportONNX(res.model, meta{Kind: models.KindAffinity, Version: "vk", Spec: res.Spec})
	bigger := res.Spec
	bigger.Hidden = 9
	wrongShape, _ := exportONNX(res.model, meta{Kind: models.KindDemand, Version: "vs", Spec: bigger})

	cases := []struct {
		name  string
		onnx  []byte
		meta  string
		words string
	}{
		{"empty", nil, "", "empty"},
		{"corrupt", good[:len(good)/2], "", "not a valid ONNX"},
		{"registry spec differs", good, otherMeta, "spec differs"},
		{"registry version differs", good, renamed.Meta(), "version"},
		{"unknown format", future, "", "not supported"},
		{"feature list differs", fewerBytes, "", "features"},
		{"wrong kind", wrongKind, "", "kind"},
		{"weights do not fit spec", wrongShape, "", "shape"},
		{"meta not JSON", good, "{", "JSON"},
	}
	for _, c := range cases {
		_, err := Load(c.onnx, c.meta, false)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, models.ErrIncompatible) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: error %q, want models.ErrIncompatible mentioning %q", c.name, err, c.words)
		}
	}
	if _, err := Load(good, res.Meta(), false); err != nil {
		t.Errorf("good model refused: %v", err)
	}
}

func TestPredictRefusesBadInput(t *testing.T) {
	res, in := randomDemand(t, 8, 6)
	d := res.Model()
	mk := func(f func(*Input)) []Input {
		x := in[0]
		x.Counts = append([]float64(nil), x.Counts...)
		f(&x)
		return []Input{in[1], x}
	}
	cases := map[string][]Input{
		"Counts": mk(func(x *Input) { x.Counts[0] = math.Inf(1) }),
		"Bin":    mk(func(x *Input) { x.Bin = time.Second }),
		"Next":   mk(func(x *Input) { x.Next = time.Time{} }),
	}
	for field, batch := range cases {
		_, err := d.Predict(batch)
		var ie *models.InputError
		if !errors.As(err, &ie) || ie.Field != field || ie.Index != 1 {
			t.Errorf("%s: error %v, want an InputError for input 1 field %s", field, err, field)
		}
	}
	enc := d.(interface {
		PredictEncoded([]float32, int) ([]float64, error)
	})
	T, F := res.Spec.SeqLen, res.Spec.NumFeatures()
	if _, err := enc.PredictEncoded(make([]float32, (T-1)*F), 1); err == nil || !strings.Contains(err.Error(), "32 bins") {
		t.Errorf("short sequence: %v", err)
	}
	x := make([]float32, T*F)
	x[5] = float32(math.NaN())
	if _, err := enc.PredictEncoded(x, 1); err == nil {
		t.Error("NaN feature accepted")
	}
	// Short and empty histories are fine: missing bins are idle.
	p, err := d.Predict([]Input{{Next: in[0].Next, Bin: time.Minute}, {Counts: []float64{3}, Next: in[0].Next}})
	if err != nil || len(p) != 2 || !(p[0] > 0 && p[0] < 1) {
		t.Errorf("short histories: %v %v", p, err)
	}
}

// Features are what the spec says at the step that matters most: the last one.
func TestEncodeLastStep(t *testing.T) {
	spec := DefaultSpec(time.Minute)
	T, F := spec.SeqLen, spec.NumFeatures()
	x := make([]float32, T*F)
	counts := make([]float64, 100)
	counts[90] = 4 // last request 9 bins before next
	next := time.Date(2024, 1, 1, 6, 0, 0, 0, time.UTC)
	spec.TimeOfDay = true
	if err := spec.Encode(x, Input{Counts: counts, Next: next, Bin: time.Minute}, 0); err != nil {
		t.Fatal(err)
	}
	last := x[(T-1)*F:]
	want := map[string]float64{
		"log_count": 0, "active": 0,
		"tod_sin":        math.Sin(2 * math.Pi * (5*60 + 59) / 1440.0),
		"dow_sin":        0, // off: DayOfWeek is false
		"recency":        math.Log1p(9) / math.Log1p(1440),
		"active_rate":    1.0 / 100,
		"recent_density": 0,
		// No idle time observed (one request): the hazard is the prior, the
		// share of active bins.
		"hazard":          1.0 / 100,
		"hazard_evidence": 0,
	}
	for i, name := range spec.Features {
		if w, ok := want[name]; ok && math.Abs(float64(last[i])-w) > 1e-6 {
			t.Errorf("%s = %v, want %v", name, last[i], w)
		}
	}
	step90 := x[(T-10)*F:]
	if got := float64(step90[0]); math.Abs(got-math.Log1p(4)/8) > 1e-6 || step90[1] != 1 || step90[6] != 0 {
		t.Errorf("active step: log_count %v active %v recency %v", step90[0], step90[1], step90[6])
	}
}

// The hazard reads an application's idle times: a timer every 10 bins is
// due after 9 idle bins, not before.
func TestHazardOfATimer(t *testing.T) {
	spec := DefaultSpec(time.Minute)
	counts := make([]float64, 200)
	for b := 0; b < 200; b += 10 {
		counts[b] = 1
	}
	it := NewIdleTimes(counts, spec.GapCap, spec.Hazard)
	if it.Count() != 19 {
		t.Fatalf("%v idle times, want 19", it.Count())
	}
	rate := 20.0 / 200
	// 9 idle bins: every idle time matches (kernel 1: 8..10), all survive.
	if got, want := it.Hazard(9), (19+0.5*rate)/(19+0.5); math.Abs(got-want) > 1e-12 {
		t.Errorf("hazard(9) = %v, want %v", got, want)
	}
	// 8 idle bins: the kernel reaches 9 (timers drift by a bin).
	if got := it.Hazard(8); got < 0.9 {
		t.Errorf("hazard(8) = %v, want the kernel to reach the period", got)
	}
	// 3 idle bins: nothing ends there.
	if got, want := it.Hazard(3), 0.5*rate/(19+0.5); math.Abs(got-want) > 1e-12 {
		t.Errorf("hazard(3) = %v, want %v", got, want)
	}
	// Beyond every idle time: no survivor, the prior alone.
	if got := it.Hazard(50); math.Abs(got-rate) > 1e-12 {
		t.Errorf("hazard(50) = %v, want the active share %v", got, rate)
	}
	// In the encoding, the last step of a sequence ending 9 idle bins after
	// a request carries hazard(9).
	x := make([]float32, spec.SeqLen*spec.NumFeatures())
	if err := spec.Encode(x, Input{Counts: counts, Next: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}, 0); err != nil {
		t.Fatal(err)
	}
	last := x[(spec.SeqLen-1)*spec.NumFeatures():]
	h := NewIdleTimes(counts, spec.GapCap, spec.Hazard).Hazard(9)
	if math.Abs(float64(last[9])-h) > 1e-6 || h < 0.9 {
		t.Errorf("hazard feature %v, want %v (high)", last[9], h)
	}
}
