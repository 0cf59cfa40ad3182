package models

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestMetricsHandComputed(t *testing.T) {
	p := []float64{0.9, 0.2, 0.6, 0.4}
	y := []bool{true, false, false, true}
	// log loss = -(ln .9 + ln .8 + ln .4 + ln .4)/4
	if got, want := LogLoss(p, y), -(math.Log(0.9)+math.Log(0.8)+math.Log(0.4)+math.Log(0.4))/4; !near(got, want) {
		t.Errorf("LogLoss = %v, want %v", got, want)
	}
	// Brier = (.01 + .04 + .36 + .36)/4
	if got := Brier(p, y); !near(got, 0.1925) {
		t.Errorf("Brier = %v, want 0.1925", got)
	}
	// Pairs (pos, neg): (.9,.2) (.9,.6) (.4,.2) win, (.4,.6) loses: 3/4.
	if got := ROCAUC(p, y); !near(got, 0.75) {
		t.Errorf("AUC = %v, want 0.75", got)
	}
	// Ties count one half: pos {1,1}, neg {1,0}: (1 vs 1)=.5 twice, (1 vs 0)=1 twice -> 3/4.
	if got := ROCAUC([]float64{1, 1, 1, 0}, []bool{true, true, false, false}); !near(got, 0.75) {
		t.Errorf("AUC with ties = %v, want 0.75", got)
	}
	if got := ROCAUC([]float64{1, 2}, []bool{true, true}); !math.IsNaN(got) {
		t.Errorf("AUC with one class = %v, want NaN", got)
	}
	// ECE, 10 bins: bin 9 {.9 y}: |.9-1|=.1; bin 2 {.2 n}: .2; bin 6 {.6 n}: .6; bin 4 {.4 y}: .6 -> (.1+.2+.6+.6)/4
	if got := ECE(p, y, 10); !near(got, 0.375) {
		t.Errorf("ECE = %v, want 0.375", got)
	}
	// Perfectly calibrated in one bin: mean p .5, rate .5.
	if got := ECE([]float64{0.5, 0.5}, []bool{true, false}, 10); !near(got, 0) {
		t.Errorf("ECE calibrated = %v, want 0", got)
	}
	// A confident mistake is clamped, not infinite.
	if got := LogLoss([]float64{0}, []bool{true}); math.IsInf(got, 0) || got < 16 {
		t.Errorf("LogLoss of a certain miss = %v, want finite ~16", got)
	}
	if _, err := Score([]float64{math.NaN()}, nil, []bool{true}); err == nil {
		t.Error("Score accepted a NaN probability")
	}
}

func TestMetricsJSONWithUndefinedAUC(t *testing.T) {
	m, err := Score([]float64{0.2, 0.3}, nil, []bool{false, false})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil || !strings.Contains(string(b), `"roc_auc":null`) {
		t.Errorf("JSON %s, %v", b, err)
	}
	var back Metrics
	if err := json.Unmarshal(b, &back); err != nil || back.N != 2 || back.Brier != m.Brier {
		t.Errorf("round trip %+v, %v", back, err)
	}
}

func TestGroupsAndCalibration(t *testing.T) {
	busy := make([]float64, 100)
	timer := make([]float64, 200)
	rare := make([]float64, 200)
	for i := range busy {
		busy[i] = float64(i % 2)
	}
	for i := 0; i < 200; i += 15 {
		timer[i] = 1
	}
	rare[10], rare[150] = 1, 1
	for name, c := range map[string][]float64{GroupBusy: busy, GroupPeriodic: timer, GroupSparse: rare} {
		if got := GroupOf(c); got != name {
			t.Errorf("GroupOf(%s) = %s", name, got)
		}
	}
	p := []float64{0.0005, 0.0005, 0.02, 0.02, 0.5, 0.5, 1}
	y := []bool{false, false, false, true, true, false, true}
	c, err := Calibrate(p, y)
	if err != nil {
		t.Fatal(err)
	}
	want := []Reliability{{0.001, 2, 0.0005, 0}, {0.01, 0, 0, 0}, {0.03, 2, 0.02, 0.5}, {0.1, 0, 0, 0}, {0.3, 0, 0, 0}, {1, 3, 2.0 / 3, 2.0 / 3}}
	for i, r := range c.Reliability {
		if r.UpTo != want[i].UpTo || r.N != want[i].N || math.Abs(r.MeanP-want[i].MeanP) > 1e-12 || math.Abs(r.Observed-want[i].Observed) > 1e-12 {
			t.Errorf("bin %d: %+v, want %+v", i, r, want[i])
		}
	}
	if c.Metrics.N != 7 || math.Abs(c.MeanP-(0.001+0.04+1+1)/7) > 1e-12 {
		t.Errorf("calibration %+v", c)
	}
}
