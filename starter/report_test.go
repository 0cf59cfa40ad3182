package main

import (
	"testing"
	"time"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
)

// heldLeases folds each lease's events into the interval it was held: from
// its reservation (or the instance kept after a cold request) to its
// release, expiry, failure or legacy claim, or to now while live; a lease
// whose start fell before the events read counts back from its recorded
// held time.
func TestHeldLeasesFoldLeaseLives(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	events := []store.PreparationEvent{
		{Time: at(0), PreparationID: "a1", App: "a", Event: records.EventReserved, MemoryMB: 100},
		{Time: at(1), PreparationID: "a1", App: "a", Event: records.EventValidated},
		{Time: at(4), PreparationID: "a1", App: "a", Event: records.EventClaimed},
		{Time: at(2), PreparationID: "b1", App: "b", Event: records.EventReserved, MemoryMB: 200},
		{Time: at(3), PreparationID: "b1", App: "b", Event: records.EventExtended},
		{Time: at(7), PreparationID: "b1", App: "b", Event: records.EventExpired, HeldSeconds: 5},
		{Time: at(8), PreparationID: "c1", App: "c", Event: records.EventReserved, MemoryMB: 50},
		{Time: at(5), PreparationID: "k1", App: "a", Event: records.EventKept, MemoryMB: 30},
		{Time: at(6), PreparationID: "k1", App: "a", Event: records.EventReleased},
		{Time: at(9), PreparationID: "d1", App: "d", Event: records.EventReleased, MemoryMB: 10, HeldSeconds: 3},
	}
	got := heldLeases(events, at(10))
	want := map[string][3]float64{"a1": {0, 4, 100}, "b1": {2, 7, 200}, "c1": {8, 10, 50}, "k1": {5, 6, 30}, "d1": {6, 9, 10}}
	if len(got) != len(want) {
		t.Fatalf("%d leases, want %d: %+v", len(got), len(want), got)
	}
	for _, h := range got {
		w := want[h.ID]
		if !h.From.Equal(at(int(w[0]))) || !h.To.Equal(at(int(w[1]))) || h.MemoryMB != w[2] {
			t.Errorf("%s: %v – %v, %v MB; want %v", h.ID, h.From.Sub(t0), h.To.Sub(t0), h.MemoryMB, w)
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
