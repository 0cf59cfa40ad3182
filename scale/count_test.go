package scale

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// Three loops over a window of 3 bins of 10 s (grace 2 s): one wakes every
// bin, one sleeps through the window on its plan, one settles at its bound
// wake the bins it slept through. Every due bin is counted once, settled
// or pending; the sleeping loop is listed as not advanced but not behind.
func TestCountDecisionsFromTwoSnapshots(t *testing.T) {
	bin, grace := 10*time.Second, 2*time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a0, z0 := t0.Add(5*time.Second), t0.Add(35*time.Second) // bins 0..3 open; bins 1, 2, 3 fall due in between
	a := map[string]LoopCount{
		"busy":  {At: a0, Decisions: 10, Wakes: 10, BinEnd: t0.Add(bin), NextWake: t0.Add(bin + grace)},
		"sleep": {At: a0, Decisions: 4, Wakes: 1, BinEnd: t0.Add(-2 * bin), NextWake: t0.Add(20 * bin)},
		"bound": {At: a0, Decisions: 7, Wakes: 2, BinEnd: t0.Add(-bin), NextWake: t0.Add(2*bin + grace), BoundWake: true},
	}
	z := map[string]LoopCount{
		"busy":  {At: z0, Decisions: 13, Wakes: 13, BinEnd: t0.Add(4 * bin), NextWake: t0.Add(4*bin + grace)},
		"sleep": {At: z0, Decisions: 4, Wakes: 1, BinEnd: t0.Add(-2 * bin), NextWake: t0.Add(20 * bin)},
		"bound": {At: z0, Decisions: 11, Wakes: 3, BinEnd: t0.Add(3 * bin), NextWake: t0.Add(40 * bin)},
	}
	d := CountDecisions(a, z, bin, grace)
	if d.Sampled != 3 || d.Due != 9 || d.Counted != 7 {
		t.Fatalf("sampled %d, due %d, counted %d: want 3, 9, 7", d.Sampled, d.Due, d.Counted)
	}
	// At the start "sleep" holds bins -2, -1, 0 on its plan, "bound" -1, 0;
	// at the end "sleep" -2 .. 3, "bound" bin 3 (its bound wake at bin 2
	// settled bins -1 to 2).
	if d.PendingStart != 5 || d.PendingEnd != 7 || d.Unaccounted() != 0 {
		t.Errorf("pending %d -> %d, unaccounted %d", d.PendingStart, d.PendingEnd, d.Unaccounted())
	}
	if d.Advanced != 2 || len(d.NotAdvanced) != 1 || d.NotAdvanced[0] != "sleep" || len(d.Behind) != 0 {
		t.Errorf("advanced %d, not %v, behind %v", d.Advanced, d.NotAdvanced, d.Behind)
	}
	if d.BoundWakes != 1 {
		t.Errorf("bound wakes %d, want 1", d.BoundWakes)
	}

	// A loop whose wake is overdue by more than a bin is behind; one that
	// answered at one end only is unanswered; a loop that counted a bin
	// twice shows as unaccounted.
	a["stuck"] = LoopCount{At: a0, Decisions: 3, BinEnd: t0, NextWake: t0.Add(grace)}
	z["stuck"] = LoopCount{At: z0, Decisions: 3, BinEnd: t0, NextWake: t0.Add(grace)}
	z["late"] = LoopCount{At: z0}
	b := z["busy"]
	b.Decisions++
	z["busy"] = b
	d = CountDecisions(a, z, bin, grace)
	if len(d.Behind) != 1 || d.Behind[0] != "stuck" || len(d.Unanswered) != 1 || d.Unanswered[0] != "late" {
		t.Errorf("behind %v, unanswered %v", d.Behind, d.Unanswered)
	}
	if d.Unaccounted() != -1 {
		t.Errorf("a bin counted twice: unaccounted %d, want -1", d.Unaccounted())
	}
}

// Bin 1 falls due at its start and grace (12 s), not before.
func TestDueThroughFollowsTheGrace(t *testing.T) {
	bin, grace := 10*time.Second, 2*time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := dueThrough(t0.Add(11*time.Second), bin, grace); !got.Equal(t0.Add(bin)) {
		t.Errorf("before the grace: %v", got.Sub(t0))
	}
	if got := dueThrough(t0.Add(12*time.Second), bin, grace); !got.Equal(t0.Add(2 * bin)) {
		t.Errorf("at the grace: %v", got.Sub(t0))
	}
}

// First sleeps lie in [1, bound] and cover it: over 20,000 loops with a
// bound of 60 every value occurs and the mean is what uniform draws give.
func TestFirstSleepsAreSpreadWithinTheBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bound := func(k int) int { return 45 + k%16 }
	got := FirstSleeps(20000, bound, rng)
	seen := map[int]int{}
	sum := 0.0
	for k, s := range got {
		if s < 1 || s > bound(k) {
			t.Fatalf("loop %d: first sleep %d outside [1, %d]", k, s, bound(k))
		}
		seen[s]++
		sum += float64(s)
	}
	if len(seen) != 60 {
		t.Errorf("%d distinct first sleeps, want 60", len(seen))
	}
	// The mean of uniform [1, b] over b in 45..60 is (b+1)/2 averaged: 26.75.
	if mean := sum / float64(len(got)); math.Abs(mean-26.75) > 0.5 {
		t.Errorf("mean first sleep %.2f, want about 26.75", mean)
	}
	if got := FirstSleeps(3, func(int) int { return 0 }, rng); got[0] != 1 {
		t.Errorf("a bound of 0 draws %d, want 1", got[0])
	}
}

func TestSampleTakesAllOrADistinctSubset(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	rng := rand.New(rand.NewPCG(3, 4))
	if got := Sample(ids, 9, rng); len(got) != 5 || got[0] != "a" {
		t.Errorf("all: %v", got)
	}
	got := Sample(ids, 3, rng)
	seen := map[string]bool{}
	for _, id := range got {
		seen[id] = true
	}
	if len(got) != 3 || len(seen) != 3 {
		t.Errorf("subset: %v", got)
	}
}

// 600 events over 10 loops each 600 s old at 10-s live bins standing for
// trace minutes: 10 × 60 trace minutes = 10 app-hours, 60 per app-hour.
func TestPerAppHour(t *testing.T) {
	if got := PerAppHour(600, 10*600*time.Second, 10*time.Second, time.Minute); got != 60 {
		t.Errorf("per app-hour %v, want 60", got)
	}
	if got := PerAppHour(600, 0, 10*time.Second, time.Minute); got != 0 {
		t.Errorf("no age: %v", got)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tworker\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t12\n"
	if got := parseVmRSS(status); got != 123456<<10 {
		t.Errorf("VmRSS %d", got)
	}
	if got := parseVmRSS("Name:\tx\n"); got != 0 {
		t.Errorf("no VmRSS: %d", got)
	}
	if ProcessRSS(os.Getpid()) <= 0 {
		t.Error("this process has no resident memory")
	}
}
