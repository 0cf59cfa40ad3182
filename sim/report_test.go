package sim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestReportsWhenTheReferenceWastesNothing(t *testing.T) {
	// A request in every bin: the 10-minute keep-alive wastes nothing, so
	// percentages are undefined: null in JSON, "n/a" in tables, no point.
	all := every(0, 20, 1)
	rep, err := Evaluate(mk(20, appSpec{100, all}), EvalConfig{Select: Range{5, 10}, Test: Range{10, 20}, Families: []string{FamilyReactive, FamilyKeepAlive}, KeepAlives: []time.Duration{10 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, js.String())
	}
	if len(got.Rows) != 4 || got.Rows[3]["waste_pct_of_keepalive10"] != nil || got.Rows[3]["policy"] != "keepalive-10m" || got.Rows[3]["range"] != "test" {
		t.Errorf("rows %v", got.Rows)
	}
	var tb, md, cs, png bytes.Buffer
	if err := WriteTable(&tb, rep); err != nil || !strings.Contains(tb.String(), "n/a") {
		t.Errorf("table: %v\n%s", err, tb.String())
	}
	if err := WriteMarkdown(&md, rep); err != nil || !strings.Contains(md.String(), "| 0.00% | n/a |") {
		t.Errorf("markdown: %v\n%s", err, md.String())
	}
	if err := WriteCSV(&cs, rep); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(recs) != 5 || recs[0][20] != "waste_pct_of_keepalive10" || recs[4][20] != "NaN" || recs[4][0] != "test" {
		t.Errorf("csv %v %v", recs, err)
	}
	// The mean per-app rates come last, after the columns older readers
	// know: reactive (row 3) is cold once per bin with requests.
	if n := len(recs[0]); err == nil && (n != 27 || recs[0][24] != "cold_rate_mean_app" || recs[0][26] != "cold_rate_mean_app_all" || recs[3][24] != "1" || recs[3][26] != "1") {
		t.Errorf("csv mean per app columns %v / %v", recs[0], recs[3])
	}
	if err == nil && !strings.Contains(md.String(), "test: mean per app") {
		t.Errorf("markdown without the mean per app:\n%s", md.String())
	}
	if err := WritePlot(&png, rep, "t", "png"); err != nil || !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}
	if err := WritePlot(&png, rep, "t", "gif"); err == nil {
		t.Error("plot in an unknown format: no error")
	}
}

func TestMatchedWasteNamesItsSettings(t *testing.T) {
	rows := []Summary{
		{Policy: "keepalive-5m", Family: FamilyKeepAlive, Range: RangeTest, WastePct: 60, ColdP75: 0.5},
		{Policy: "keepalive-10m", Family: FamilyKeepAlive, Range: RangeTest, WastePct: 100, ColdP75: 0.3},
	}
	rep := &Report{Rows: rows, Matched: matchedWaste(rows, []string{FamilyKeepAlive}, []float64{50, 75, 100})}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Matched []struct {
			Setting         []*string  `json:"setting"`
			ColdP75         []*float64 `json:"cold_rate_p75"`
			SettingWastePct []*float64 `json:"setting_waste_pct"`
		} `json:"matched_waste"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, js.String())
	}
	m := got.Matched[0]
	if m.Setting[0] != nil || m.ColdP75[0] != nil || m.SettingWastePct[0] != nil ||
		*m.Setting[1] != "keepalive-5m" || *m.ColdP75[1] != 0.5 || *m.SettingWastePct[1] != 60 || *m.Setting[2] != "keepalive-10m" {
		t.Errorf("matched_waste %s", js.String())
	}
	var md, tb bytes.Buffer
	if err := WriteMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	if s := md.String(); !strings.Contains(s, "staircase") || strings.Contains(s, "front, interpolated") || !strings.Contains(s, "| 75% | 50.0% (5m) |") || !strings.Contains(s, "| 50% | — |") {
		t.Errorf("markdown:\n%s", s)
	}
	if err := WriteTable(&tb, rep); err != nil || !strings.Contains(tb.String(), "staircase") {
		t.Errorf("table: %v\n%s", err, tb.String())
	}
}
