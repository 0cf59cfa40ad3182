package rule

import (
	"strings"
	"testing"

	"github.com/forewarm/forewarm/internal/jsonx"
	"github.com/forewarm/forewarm/models/kind"
)

func TestDecideIsTheOneRule(t *testing.T) {
	base := map[string]map[string]float64{"recency_rate": {"log_loss": 0.5}, "active_last_bin": {"log_loss": 0.6}}
	for _, tc := range []struct {
		name      string
		c         Comparison
		publish   bool
		reasonHas string
	}{
		{"first model", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base}, true, "no champion yet"},
		{"beats the champion by more than 1%", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionMetrics: map[string]float64{"log_loss": 0.4}}, true, "beats champion d-0 0.4000 by 25.0%"},
		{"within 1% of the champion", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionMetrics: map[string]float64{"log_loss": 0.301}}, false, "champion kept"},
		{"loses to a baseline", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"log_loss": 0.55}, Baselines: base},
			false, "does not beat baseline(s) recency_rate 0.5000"},
		{"champion could not be scored", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"log_loss": 0.3}, Baselines: base,
			Champion: "d-0", ChampionNote: "it fails to load"}, true, "champion d-0 cannot be compared (it fails to load)"},
		{"affinity judged on mse", Comparison{Version: "a-1", Kind: kind.Affinity, Metrics: map[string]float64{"mse": 0.02},
			Baselines: map[string]map[string]float64{"heuristic": {"mse": 0.05}, "mean": {"mse": 0.04}}}, true, "mse 0.0200"},
		{"affinity losing to the mean", Comparison{Version: "a-1", Kind: kind.Affinity, Metrics: map[string]float64{"mse": 0.045},
			Baselines: map[string]map[string]float64{"heuristic": {"mse": 0.05}, "mean": {"mse": 0.04}}}, false, "does not beat baseline(s) mean 0.0400"},
		{"no primary metric", Comparison{Version: "d-1", Kind: kind.Demand, Metrics: map[string]float64{"brier": 0.1}}, false, "has no log_loss metric"},
	} {
		d := Decide(tc.c, 0)
		if d.Publish != tc.publish || !strings.Contains(d.Reason, tc.reasonHas) {
			t.Errorf("%s: %+v, want publish %v with %q", tc.name, d, tc.publish, tc.reasonHas)
		}
	}
}

// A comparison recorded by an older worker (Go field names) still decodes
// in the operator style (package jsonx, which Temporal payloads go through).
func TestComparisonReadsTheRecordedForm(t *testing.T) {
	old := `{"Version":"d-2","Kind":"demand","Samples":2000,"Metrics":{"log_loss":0.2},"Baselines":{"recency_rate":{"log_loss":0.5}},"Champion":"d-1","ChampionMetrics":{"log_loss":0.4}}`
	var c Comparison
	if err := jsonx.Decode([]byte(old), &c); err != nil {
		t.Fatal(err)
	}
	if c.ChampionMetrics["log_loss"] != 0.4 || c.Samples != 2000 || c.Baselines["recency_rate"]["log_loss"] != 0.5 {
		t.Fatalf("decoded %+v", c)
	}
	b, _ := jsonx.Encode(c)
	if !strings.Contains(string(b), `"champion_metrics":{"log_loss":0.4}`) {
		t.Errorf("encoded %s, want snake_case keys", b)
	}
}
