package lifecycle

import (
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/trace"
)

func TestChooseRangeReadsTheRecentSpan(t *testing.T) {
	y2019 := time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)
	y2024 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	last := y2024.Add(47*time.Hour + 59*time.Minute)
	r, err := ChooseRange(y2019, last, time.Time{}, time.Time{}, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := y2024.Add(48 * time.Hour); !r.To.Equal(want) || !r.From.Equal(want.Add(-rule.DefaultSpan)) || !strings.Contains(r.Chosen, "the last 168h0m0s") {
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
