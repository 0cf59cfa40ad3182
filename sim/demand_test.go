package sim

import (
	"slices"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models"
)

// recordingDemand answers 0.9 for app 0 and 0 for the others, and records
// what it was asked.
type recordingDemand struct {
	spec  models.DemandSpec
	calls [][]models.DemandInput
}

func (d *recordingDemand) Version() string         { return "test" }
func (d *recordingDemand) Spec() models.DemandSpec { return d.spec }
func (d *recordingDemand) Predict(in []models.DemandInput) ([]float64, error) {
	cp := make([]models.DemandInput, len(in))
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
	spec := models.DefaultDemandSpec(time.Minute)
	spec.Horizon = 2
	spec.SeqLen, spec.GapCap, spec.RateWindow = 3, 4, 4 // history of 4 bins
	d := &recordingDemand{spec: spec}
	tr := mk(10, appSpec{mem: 300, at: []int{1, 2, 2, 7}}, appSpec{mem: 0, at: []int{3}})
	r, err := Run(tr, NewOurs(NewForecastCache(&DemandForecaster{Model: d}), 0.5), Options{EvalStart: 6})
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
	if first[0].MemoryMB != 300 || first[1].MemoryMB != 170 {
		t.Errorf("memory %v, %v; want 300 and the 170 MB default", first[0].MemoryMB, first[1].MemoryMB)
	}
	if last := d.calls[3][0].Counts; !slices.Equal(last, []float64{0, 0, 1, 0}) { // bin 9 sees bins 5..8
		t.Errorf("app 0 counts at bin 9 = %v, want [0 0 1 0]", last)
	}
	// App 0 is prepared at every bin (P 0.9): 6 wasted, 7 warm, 8-9 wasted.
	// Leases: 6 (to 7), renewed in its last bin 7, again at 8 after the
	// claim, renewed at 9: four preparations.
	if a := r.Apps[0]; a.Cold != 0 || a.WastedBins != 3 || a.LiveBins != 4 || a.Preparations != 4 {
		t.Errorf("app 0 %+v", a)
	}
}

func TestDemandForecasterRefusesOtherBins(t *testing.T) {
	d := &recordingDemand{spec: models.DefaultDemandSpec(time.Second)}
	_, err := Run(mk(10, appSpec{100, []int{8}}), NewOurs(NewForecastCache(&DemandForecaster{Model: d}), 0.5), Options{EvalStart: 5})
	if err == nil {
		t.Fatal("a model trained on 1s bins ran on 1m bins")
	}
}
