package lifecycle

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/trace"
)

func TestDecideIsTheOneRule(t *testing.T) {
	base := map[string]map[string]float64{"recency_rate": {"log_loss": 0.5}, "active_last_bin": {"log_loss": 0.6}}
	for _, tc := range []struct {
		name      string
		c         Comparison
		publish   bool
		reasonHas string
	}{
		{"first model", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base}, true, "no champion yet"},
		{"beats the champion by more than 1%", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionMetrics: map[string]float64{"log_loss": 0.4}}, true, "beats champion d-0 0.4000 by 25.0%"},
		{"within 1% of the champion", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionMetrics: map[string]float64{"log_loss": 0.301}}, false, "champion kept"},
		{"loses to a baseline", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"log_loss": 0.55}, Baselines: base},
			false, "does not beat baseline(s) recency_rate 0.5000"},
		{"champion could not be scored", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionNote: "it fails to load"}, true, "champion d-0 cannot be compared (it fails to load)"},
		{"affinity judged on mse", Comparison{Version: "a-1", Kind: models.KindAffinity, Metrics: map[string]float64{"mse": 0.02},
			Baselines: map[string]map[string]float64{"heuristic": {"mse": 0.05}, "mean": {"mse": 0.04}}}, true, "mse 0.0200"},
		{"affinity losing to the mean", Comparison{Version: "a-1", Kind: models.KindAffinity, Metrics: map[string]float64{"mse": 0.045},
			Baselines: map[string]map[string]float64{"heuristic": {"mse": 0.05}, "mean": {"mse": 0.04}}}, false, "does not beat baseline(s) mean 0.0400"},
		{"no primary metric", Comparison{Version: "d-1", Kind: models.KindDemand, Metrics: map[string]float64{"brier": 0.1}}, false, "has no log_loss metric"},
	} {
		d := Decide(tc.c, 0)
		if d.Publish != tc.publish || !strings.Contains(d.Reason, tc.reasonHas) {
			t.Errorf("%s: %+v, want publish %v with %q", tc.name, d, tc.publish, tc.reasonHas)
		}
	}
}

// A comparison recorded by an older worker (Go field names) still decodes.
func TestComparisonReadsTheRecordedForm(t *testing.T) {
	old := `{"Version":"d-2","Kind":"demand","Samples":2000,"Metrics":{"log_loss":0.2},"Baselines":{"recency_rate":{"log_loss":0.5}},"Champion":"d-1","ChampionMetrics":{"log_loss":0.4}}`
	var c Comparison
	if err := json.Unmarshal([]byte(old), &c); err != nil {
		t.Fatal(err)
	}
	if c.ChampionMetrics["log_loss"] != 0.4 || c.Samples != 2000 || c.Baselines["recency_rate"]["log_loss"] != 0.5 {
		t.Fatalf("decoded %+v", c)
	}
	b, _ := json.Marshal(c)
	if !strings.Contains(string(b), `"champion_metrics":{"log_loss":0.4}`) {
		t.Errorf("encoded %s, want snake_case keys", b)
	}
}

func TestChooseRangeReadsTheRecentSpan(t *testing.T) {
	y2019 := time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)
	y2024 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	last := y2024.Add(47*time.Hour + 59*time.Minute)
	r, err := ChooseRange(y2019, last, time.Time{}, time.Time{}, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := y2024.Add(48 * time.Hour); !r.To.Equal(want) || !r.From.Equal(want.Add(-DefaultSpan)) || !strings.Contains(r.Chosen, "the last 168h0m0s") {
		t.Errorf("default range %+v", r)
	}
	r, _ = ChooseRange(y2024, last, time.Time{}, time.Time{}, 30*24*time.Hour, time.Minute)
	if !r.From.Equal(y2024) || !strings.Contains(r.Chosen, "all stored history") {
		t.Errorf("a span longer than the data: %+v", r)
	}
	r, _ = ChooseRange(y2019, last, y2019, y2024, 0, time.Minute)
	if !r.From.Equal(y2019) || !r.To.Equal(y2024) {
		t.Errorf("an explicit range: %+v", r)
	}
	if _, err := ChooseRange(time.Time{}, time.Time{}, time.Time{}, time.Time{}, 0, time.Minute); err == nil || !strings.Contains(err.Error(), "no activity") {
		t.Errorf("empty store: %v", err)
	}
	if _, err := ChooseRange(y2019, last, y2024, y2019, 0, time.Minute); err == nil || !strings.Contains(err.Error(), "the end must be after the start") {
		t.Errorf("reversed range: %v", err)
	}
}

func TestFirstActiveBin(t *testing.T) {
	tr := &trace.Trace{Bins: 6, Apps: []trace.App{{Counts: []uint32{0, 0, 0, 1, 0, 0}}, {Counts: []uint32{0, 0, 2, 0, 0, 0}}}}
	if got := FirstActiveBin(tr); got != 2 {
		t.Errorf("FirstActiveBin = %d, want 2", got)
	}
	if got := FirstActiveBin(&trace.Trace{Bins: 3, Apps: []trace.App{{Counts: []uint32{0, 0, 0}}}}); got != 0 {
		t.Errorf("idle trace: %d", got)
	}
}
