package telemetry

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/forewarm/forewarm/store/records"
)

// Waste is memory held while not serving, whichever way the lease ended:
// released unclaimed, expired, failed, or claimed by a request (idle until
// the claim); a warm instance's busy time is not waste.
func TestWastedCountsIdleMemoryTimeOfEveryEndedLease(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		ev   records.PreparationEvent
		want float64 // MB·s
	}{
		{"released unclaimed", records.PreparationEvent{Event: records.EventReleased, MemoryMB: 100, HeldSeconds: 10}, 1000},
		{"expired unclaimed", records.PreparationEvent{Event: records.EventExpired, MemoryMB: 50, HeldSeconds: 4}, 200},
		{"released after serving", records.PreparationEvent{Event: records.EventReleased, MemoryMB: 100, HeldSeconds: 10, BusyMBs: 300}, 700},
		{"expired after serving", records.PreparationEvent{Event: records.EventExpired, MemoryMB: 10, HeldSeconds: 6, BusyMBs: 20}, 40},
		{"busy all along", records.PreparationEvent{Event: records.EventReleased, MemoryMB: 10, HeldSeconds: 2, BusyMBs: 25}, 0},
		{"claimed later", records.PreparationEvent{Event: records.EventClaimed, MemoryMB: 20, HeldSeconds: 3}, 60},
		{"failed preparation", records.PreparationEvent{Event: records.EventFailed, MemoryMB: 8, HeldSeconds: 1.5}, 12},
		// Events that do not end a lease, or carry no memory-time.
		{"reserved", records.PreparationEvent{Event: records.EventReserved, MemoryMB: 100}, 0},
		{"validated", records.PreparationEvent{Event: records.EventValidated, ShadowMS: 30}, 0},
		{"kept", records.PreparationEvent{Event: records.EventKept, MemoryMB: 64}, 0},
		{"extended", records.PreparationEvent{Event: records.EventExtended, MemoryMB: 64, HeldSeconds: 9}, 0},
		{"failed shadow, no memory", records.PreparationEvent{Event: records.EventFailed, HeldSeconds: 3}, 0},
	}
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, c := range cases {
		if got := WastedByteSeconds(c.ev); math.Abs(got-c.want*mib) > 1e-6 {
			t.Errorf("%s: wasted %g byte·s, want %g (%g MB·s)", c.name, got, c.want*mib, c.want)
		}
		before := counterValue(t, m.wasted)
		m.PreparationEvent(c.ev)
		if got := counterValue(t, m.wasted) - before; math.Abs(got-c.want*mib) > 1e-6 {
			t.Errorf("%s: the counter grew by %g byte·s, want %g", c.name, got, c.want*mib)
		}
		total += c.want * mib
	}
	if got := counterValue(t, m.wasted); math.Abs(got-total) > 1e-6 {
		t.Errorf("%s = %g, want %g", MetricWasted, got, total)
	}
	if got := counterValue(t, m.prepEvents.WithLabelValues(records.EventReleased)); got != 3 {
		t.Errorf("released events counted %g, want 3", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
