package gateway

import (
	"testing"

	"github.com/forewarm/forewarm/agent/api"
)

// A cold start goes to the host that would have the instance ready first:
// the fastest one, unless starts already queue there (a host starts a few
// at a time, so a start waits for those ahead of it).
func TestColdStartsSpreadOverHostsWithStartsUnderWay(t *testing.T) {
	host := func(id string, ms float64) *hostState {
		return &hostState{Host: Host{ID: id}, apps: map[string]api.App{"a": {App: "a"}}, start: map[string]float64{"a": ms}}
	}
	fast, slow := host("fast", 400), host("slow", 1000)
	tb := &table{hosts: map[string]*hostState{"fast": fast, "slow": slow}}
	order := func() (ids []string) {
		for _, h := range tb.candidates("a") {
			ids = append(ids, h.ID)
		}
		return ids
	}
	if got := order(); got[0] != "fast" {
		t.Fatalf("idle hosts: %v, want the fastest first", got)
	}
	fast.preparing = 2 // 3 × 400 ms > 1000 ms
	if got := order(); got[0] != "slow" {
		t.Fatalf("two starts queued on the fast host: %v, want the slow one first", got)
	}
	fast.preparing = 0
	fast.starts.Add(1) // this gateway's own start under way: 800 ms < 1000 ms
	if got := order(); got[0] != "fast" {
		t.Fatalf("one start under way on the fast host: %v, want it still first", got)
	}
	fast.starts.Add(2)
	if got := order(); got[0] != "slow" {
		t.Fatalf("three starts under way on the fast host: %v, want the slow one first", got)
	}
}
