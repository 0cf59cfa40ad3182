package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestComputeKnownFigures(t *testing.T) {
	reqs := []Request{
		{App: "a", Warm: true, LatencyMS: 10},
		{App: "a", Warm: true, LatencyMS: 12},
		{App: "a", Warm: false, LatencyMS: 100},
		{App: "b", Warm: false, LatencyMS: 200},
		{App: "c", Warm: true, LatencyMS: 14},
		{App: "c", Warm: false, LatencyMS: 150},
	}
	preps := []Preparation{
		{ID: "1", App: "a", MemoryMB: 100, HeldSeconds: 10, Claimed: true},
		{ID: "2", App: "b", MemoryMB: 200, HeldSeconds: 5, Claimed: false},
	}
	f := Compute(reqs, preps)
	if f.Requests != 6 || f.Warm != 3 || !near(f.WarmShare, 0.5) || f.Apps != 3 {
		t.Fatalf("counts: %+v", f)
	}
	// Per-app cold rates: a 1/3, b 1, c 1/2 -> sorted 1/3, 1/2, 1; p75 at
	// position 1.5 -> 0.75.
	if !near(f.P75AppColdRate, 0.75) {
		t.Errorf("p75 app cold rate %v, want 0.75", f.P75AppColdRate)
	}
	if !near(f.ReservedMBSeconds, 2000) || !near(f.WastedMBSeconds, 1000) || f.PreparationsClaimed != 1 {
		t.Errorf("memory-time reserved %v wasted %v claimed %d", f.ReservedMBSeconds, f.WastedMBSeconds, f.PreparationsClaimed)
	}
	if w := f.Latency["warm"]; w.N != 3 || !near(w.Median, 12) || !near(w.Mean, 12) {
		t.Errorf("warm latency %+v", w)
	}
	if c := f.Latency["cold"]; c.N != 3 || !near(c.Median, 150) || !near(c.Mean, 150) {
		t.Errorf("cold latency %+v", c)
	}
	// Each warm request saved (150 - its latency) ms: 140+138+136 = 414 ms.
	if !near(f.NoPreparation.LatencySavedSeconds, 0.414) || f.NoPreparation.ColdRate != 1 {
		t.Errorf("no-preparation baseline %+v", f.NoPreparation)
	}
	var out bytes.Buffer
	f.Print(&out, time.Minute)
	for _, want := range []string{"warm share", "50.0%", "p75 application cold-start rate", "75.0%", "wasted 1000 MB·s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestComputeEmpty(t *testing.T) {
	f := Compute(nil, nil)
	if f.Requests != 0 || f.WarmShare != 0 || f.P75AppColdRate != 0 || f.NoPreparation.P75AppColdRate != 0 {
		t.Fatalf("empty: %+v", f)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	if p := Percentile(xs, 0.5); !near(p, 2.5) {
		t.Errorf("median %v", p)
	}
	if p := Percentile(xs, 1); !near(p, 4) {
		t.Errorf("max %v", p)
	}
	if xs[0] != 4 {
		t.Errorf("Percentile sorted its input in place")
	}
}
