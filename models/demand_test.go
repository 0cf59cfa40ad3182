package models

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestLoadDemandRefusesIncompatible(t *testing.T) {
	res, _ := randomDemand(t, 8, 5)
	good, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	other := *res
	other.Spec.Horizon = 9
	otherMeta := other.Meta()
	renamed := *res
	renamed.Version = "someone-else"

	futureSpec := *res
	futureSpec.Spec.Format = "forewarm.demand/v99"
	future, _ := exportDemandONNX(res.model, demandMeta{Kind: KindDemand, Version: "v99", Spec: futureSpec.Spec})
	fewer := *res
	fewer.Spec.Features = fewer.Spec.Features[:5]
	fewerBytes, _ := exportDemandONNX(res.model, demandMeta{Kind: KindDemand, Version: "v5", Spec: fewer.Spec})
	wrongKind, _ := exportDemandONNX(res.model, demandMeta{Kind: KindAffinity, Version: "vk", Spec: res.Spec})
	bigger := res.Spec
	bigger.Hidden = 9
	wrongShape, _ := exportDemandONNX(res.model, demandMeta{Kind: KindDemand, Version: "vs", Spec: bigger})

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
		_, err := LoadDemand(c.onnx, c.meta, false)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: error %q, want ErrIncompatible mentioning %q", c.name, err, c.words)
		}
	}
	if _, err := LoadDemand(good, res.Meta(), false); err != nil {
		t.Errorf("good model refused: %v", err)
	}
}

func TestPredictRefusesBadInput(t *testing.T) {
	res, in := randomDemand(t, 8, 6)
	d := res.Model()
	mk := func(f func(*DemandInput)) []DemandInput {
		x := in[0]
		x.Counts = append([]float64(nil), x.Counts...)
		f(&x)
		return []DemandInput{in[1], x}
	}
	cases := map[string][]DemandInput{
		"Counts":    mk(func(x *DemandInput) { x.Counts[0] = math.Inf(1) }),
		"MemoryMB":  mk(func(x *DemandInput) { x.MemoryMB = math.NaN() }),
		"ReadRatio": mk(func(x *DemandInput) { x.ReadRatio = 2 }),
		"Bin":       mk(func(x *DemandInput) { x.Bin = time.Second }),
		"Next":      mk(func(x *DemandInput) { x.Next = time.Time{} }),
	}
	for field, batch := range cases {
		_, err := d.Predict(batch)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != field || ie.Index != 1 {
			t.Errorf("%s: error %v, want an InputError for input 1 field %s", field, err, field)
		}
	}
	enc := d.(interface {
		PredictEncoded([]float32, int) ([]float64, error)
	})
	T, F := res.Spec.SeqLen, res.Spec.NumFeatures()
	if _, err := enc.PredictEncoded(make([]float32, (T-1)*F), 1); err == nil || !strings.Contains(err.Error(), "64 bins") {
		t.Errorf("short sequence: %v", err)
	}
	x := make([]float32, T*F)
	x[5] = float32(math.NaN())
	if _, err := enc.PredictEncoded(x, 1); err == nil {
		t.Error("NaN feature accepted")
	}
	// Short and empty histories are fine: missing bins are idle.
	p, err := d.Predict([]DemandInput{{Next: in[0].Next, Bin: time.Minute}, {Counts: []float64{3}, Next: in[0].Next}})
	if err != nil || len(p) != 2 || !(p[0] > 0 && p[0] < 1) {
		t.Errorf("short histories: %v %v", p, err)
	}
}

// Features are what the spec says at the step that matters most: the last one.
func TestEncodeLastStep(t *testing.T) {
	spec := DefaultDemandSpec(time.Minute)
	T, F := spec.SeqLen, spec.NumFeatures()
	x := make([]float32, T*F)
	counts := make([]float64, 100)
	counts[90] = 4 // last request 9 bins before next
	next := time.Date(2024, 1, 1, 6, 0, 0, 0, time.UTC)
	if err := spec.Encode(x, DemandInput{Counts: counts, Next: next, Bin: time.Minute, MemoryMB: 256, ReadRatio: 0.25}, 0); err != nil {
		t.Fatal(err)
	}
	last := x[(T-1)*F:]
	want := map[string]float64{
		"log_count": 0, "active": 0,
		"tod_sin":     math.Sin(2 * math.Pi * (5*60 + 59) / 1440.0),
		"recency":     math.Log1p(9) / math.Log1p(1440),
		"active_rate": 1.0 / 100,
		"log_memory":  math.Log1p(256) / 10,
		"read_ratio":  0.25, "recent_density": 0,
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
