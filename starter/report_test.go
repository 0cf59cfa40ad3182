package main

import (
	"testing"
	"time"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

func TestPreparationsFoldLeaseLives(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	events := []store.PreparationEvent{
		{Time: at(0), PreparationID: "a1", App: "a", Event: records.EventReserved, MemoryMB: 100},
		{Time: at(1), PreparationID: "a1", App: "a", Event: records.EventValidated},
		{Time: at(4), PreparationID: "a1", App: "a", Event: records.EventClaimed},
		{Time: at(2), PreparationID: "b1", App: "b", Event: records.EventReserved, MemoryMB: 200},
		{Time: at(7), PreparationID: "b1", App: "b", Event: records.EventExpired, HeldSeconds: 5},
		{Time: at(8), PreparationID: "c1", App: "c", Event: records.EventReserved, MemoryMB: 50},
	}
	got := preparations(events, at(10))
	want := map[string]struct {
		held    float64
		claimed bool
		mem     float64
	}{"a1": {4, true, 100}, "b1": {5, false, 200}, "c1": {2, false, 50}}
	if len(got) != len(want) {
		t.Fatalf("%d preparations, want %d: %+v", len(got), len(want), got)
	}
	for _, p := range got {
		w := want[p.ID]
		if p.HeldSeconds != w.held || p.Claimed != w.claimed || p.MemoryMB != w.mem {
			t.Errorf("%s: held %v claimed %v mem %v, want %+v", p.ID, p.HeldSeconds, p.Claimed, p.MemoryMB, w)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got, err := parseSince("15m", now); err != nil || !got.Equal(now.Add(-15*time.Minute)) {
		t.Errorf("15m: %v %v", got, err)
	}
	if got, err := parseSince("2026-01-01T10:00:00Z", now); err != nil || got.Hour() != 10 {
		t.Errorf("rfc3339: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-5m"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
