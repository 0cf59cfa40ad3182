package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models/demand"
)

// recordingDemand answers 0.9 for app 0 and 0 for the others, and records
// what it was asked.
type recordingDemand struct {
	spec  demand.Spec
	calls [][]demand.Input
}

func (d *recordingDemand) Version() string   { return "test" }
func (d *recordingDemand) Spec() demand.Spec { return d.spec }
func (d *recordingDemand) Predict(in []demand.Input) ([]float64, error) {
	cp := make([]demand.Input, len(in))
	for i, x := range in {
		x.Counts = append([]float64(nil), x.Counts...)
		cp[i] = x
	}
	d.calls = append(d.calls, cp)
	out := make([]float64, len(in))
	out[0] = 0.9
	return out, nil
}

func TestDemandForecasterFeedsTheModelThePastOnly(t *testing.T) {
	spec := demand.DefaultSpec(time.Minute)
	spec.SeqLen, spec.GapCap, spec.RateWindow = 3, 4, 4 // history of 4 bins
	d := &recordingDemand{spec: spec}
	tr := mk(10, appSpec{mem: 50, at: []int{1, 2, 2, 7}}, appSpec{mem: 0, at: []int{3}})
	r, err := Run(tr, NewOurs(NewForecastCache(&DemandForecaster{Model: d}), testConfig(0.5)), Options{Range: Range{6, 10}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.calls) != 4 {
		t.Fatalf("%d model calls, want one per evaluation bin (4)", len(d.calls))
	}
	first := d.calls[0] // bin 6: bins 2..5, oldest first
	if got := first[0].Counts; !slices.Equal(got, []float64{2, 0, 0, 0}) {
		t.Errorf("app 0 counts at bin 6 = %v, want [2 0 0 0]", got)
	}
	if got := first[1].Counts; !slices.Equal(got, []float64{0, 1, 0, 0}) {
		t.Errorf("app 1 counts at bin 6 = %v, want [0 1 0 0]", got)
	}
	if !first[0].Next.Equal(tr.BinStart(6)) || first[0].Bin != time.Minute {
		t.Errorf("next %v bin %v", first[0].Next, first[0].Bin)
	}
	if last := d.calls[3][0].Counts; !slices.Equal(last, []float64{0, 0, 1, 0}) { // bin 9 sees bins 5..8
		t.Errorf("app 0 counts at bin 9 = %v, want [0 0 1 0]", last)
	}
	// App 0 (P 0.9) is prepared at 6 and kept: 6 wasted, 7 warm, 8-9
	// wasted, one preparation. App 1 (P 0) is never held.
	if a := r.Apps[0]; a.ColdFirst != 0 || a.WastedBins != 3 || a.LiveBins != 4 || a.Preparations != 1 {
		t.Errorf("app 0 %+v", a)
	}
	if a := r.Apps[1]; a.LiveBins != 0 {
		t.Errorf("app 1 %+v", a)
	}
}

// A batch split in chunks over workers gives every app its own answer.
func TestDemandForecasterChunks(t *testing.T) {
	spec := demand.DefaultSpec(time.Minute)
	byApp := echoDemand{spec: spec}
	tr := mk(10, appSpec{mem: 50, at: []int{1}}, appSpec{mem: 50, at: []int{2, 2}}, appSpec{mem: 50, at: []int{3, 3, 3}})
	f := &DemandForecaster{Model: byApp, BatchSize: 1, Workers: 2}
	h := &History{env: NewEnv(tr, Range{5, 10}), tr: tr, now: 5}
	p, err := f.Forecast(5, h)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p, []float64{1, 2, 3}) {
		t.Errorf("forecast %v, want each app's own total [1 2 3]", p)
	}
}

// echoDemand answers each input's total count.
type echoDemand struct{ spec demand.Spec }

func (d echoDemand) Version() string   { return "echo" }
func (d echoDemand) Spec() demand.Spec { return d.spec }
func (d echoDemand) Predict(in []demand.Input) ([]float64, error) {
	out := make([]float64, len(in))
	for i, x := range in {
		for _, c := range x.Counts {
			out[i] += c
		}
	}
	return out, nil
}

func TestDemandForecasterRefusesOtherBins(t *testing.T) {
	d := &recordingDemand{spec: demand.DefaultSpec(time.Second)}
	_, err := Run(mk(10, appSpec{100, []int{8}}), NewOurs(NewForecastCache(&DemandForecaster{Model: d}), testConfig(0.5)), Options{Range: Range{5, 10}})
	if err == nil || !strings.Contains(err.Error(), "trained on 1s bins") {
		t.Fatalf("a model trained on 1s bins ran on 1m bins: %v", err)
	}
}
