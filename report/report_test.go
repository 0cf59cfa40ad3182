package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestComputeKnownFigures(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	reqs := []Request{
		{App: "a", At: at(1), Warm: true, LatencyMS: 10},
		{App: "a", At: at(1.5), Warm: true, LatencyMS: 12},
		{App: "a", At: at(3.2), Warm: false, LatencyMS: 100},
		{App: "b", At: at(0.1), Warm: false, LatencyMS: 200},
		{App: "c", At: at(2), Warm: true, LatencyMS: 14},
		{App: "c", At: at(2.5), Warm: false, LatencyMS: 150},
	}
	// a: 100 MB through bins 0-3 (requests in bins 1 and 3: bins 0 and 2
	// wasted); b: 200 MB from 5 s to 7 s, past the window's end at 6 s
	// (no request: 1 s wasted).
	held := []Held{
		{ID: "1", App: "a", MemoryMB: 100, From: at(0), To: at(4)},
		{ID: "2", App: "b", MemoryMB: 200, From: at(5), To: at(7)},
	}
	f := Compute(reqs, held, Window{From: t0, To: at(6), Bin: time.Second})
	if f.Requests != 6 || f.Warm != 3 || !near(f.WarmShare, 0.5) || f.Apps != 3 {
		t.Fatalf("counts: %+v", f)
	}
	// Per-app cold rates: a 1/3, b 1, c 1/2 -> sorted 1/3, 1/2, 1; p75 at
	// position 1.5 -> 0.75.
	if !near(f.ColdP75, 0.75) {
		t.Errorf("p75 app cold rate %v, want 0.75", f.ColdP75)
	}
	if f.Leases != 2 || !near(f.ReservedMBs, 400+200) || !near(f.WastedMBs, 200+200) {
		t.Errorf("leases %d, memory-time reserved %v wasted %v; want 2, 600, 400", f.Leases, f.ReservedMBs, f.WastedMBs)
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
	for _, want := range []string{"warm share", "50.0%", "p75 application cold-start rate", "75.0%", "wasted 400 MB·s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	raw, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"requests":6`, `"warm_share":0.5`, `"cold_rate_p75":0.75`, `"cold_rate_overall":0.5`, `"wasted_mb_s":400`, `"latency_ms":{`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("JSON lacks %s: %s", k, raw)
		}
	}
}

func TestComputeEmpty(t *testing.T) {
	f := Compute(nil, nil, Window{})
	if f.Requests != 0 || f.WarmShare != 0 || f.ColdP75 != 0 || f.NoPreparation.ColdP75 != 0 {
		t.Fatalf("empty: %+v", f)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	if p := stats.Percentile(xs, 0.5); !near(p, 2.5) {
		t.Errorf("median %v", p)
	}
	if p := stats.Percentile(xs, 1); !near(p, 4) {
		t.Errorf("max %v", p)
	}
	if xs[0] != 4 {
		t.Errorf("Percentile sorted its input in place")
	}
}
