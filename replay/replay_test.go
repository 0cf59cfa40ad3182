package replay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/forewarm/forewarm/trace"
)

func tinyTrace() *trace.Trace {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &trace.Trace{Start: start, Bin: time.Minute, Bins: 4, Apps: []trace.App{
		{ID: "a", MemoryMB: 128, Counts: []uint32{1, 0, 3, 0}},
		{ID: "b", MemoryMB: 256, Counts: []uint32{0, 2, 1, 5}},
	}}
}

// fakeClock advances only when the replay sleeps, so pacing is exact.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		c.mu.Lock()
		c.now = c.now.Add(d)
		c.mu.Unlock()
	}
	return ctx.Err()
}

func TestRunSendsEveryRequestOnTime(t *testing.T) {
	tr := tinyTrace()
	clk := &fakeClock{now: time.Unix(0, 0)}
	var mu sync.Mutex
	got := map[string]int{}
	var progress []Progress
	sum, err := Run(context.Background(), tr, Options{
		From: 1, Speed: 60, MaxPerBin: 3, Now: clk.Now, Sleep: clk.Sleep,
		OnProgress: func(p Progress) { progress = append(progress, p) },
	}, func(_ context.Context, r Request) error {
		mu.Lock()
		defer mu.Unlock()
		got[r.App]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Bins 1..3: a sends 3, b sends 2+1+min(5,3)=6, 2 dropped by the cap.
	if got["a"] != 3 || got["b"] != 6 || sum.Sent != 9 || sum.Skipped != 2 {
		t.Fatalf("sent %v (total %d, skipped %d), want a=3 b=6 total 9 skipped 2", got, sum.Sent, sum.Skipped)
	}
	if sum.BinsDone != 3 || len(progress) != 3 || !sum.TraceTime.Equal(tr.BinStart(4)) {
		t.Fatalf("bins done %d, progress calls %d, trace time %v", sum.BinsDone, len(progress), sum.TraceTime)
	}
	// At speed 60 a one-minute bin lasts one second of wall time.
	if sum.Wall != 3*time.Second {
		t.Fatalf("wall %v, want 3s", sum.Wall)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	tr := tinyTrace()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	clk := &fakeClock{now: time.Unix(0, 0)}
	sum, err := Run(ctx, tr, Options{Speed: 60, InFlight: 1, Now: clk.Now, Sleep: clk.Sleep}, func(context.Context, Request) error {
		n++
		cancel()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Interrupted || n != 1 {
		t.Fatalf("interrupted=%v after %d sends, want true after 1", sum.Interrupted, n)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	tr := tinyTrace()
	for name, o := range map[string]Options{
		"zero speed":  {Speed: 0},
		"from beyond": {Speed: 1, From: 9},
		"unknown app": {Speed: 1, Apps: []string{"zzz"}},
	} {
		if _, err := Run(context.Background(), tr, o, func(context.Context, Request) error { return nil }); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestClassifyAndSelect(t *testing.T) {
	periodic := make([]uint32, 100)
	for b := 0; b < 100; b += 10 {
		periodic[b] = 1
	}
	steady := make([]uint32, 100)
	for b := range steady {
		steady[b] = 2
	}
	bursty := make([]uint32, 100)
	for _, b := range []int{1, 2, 3, 40, 41, 90, 91, 92, 93} {
		bursty[b] = 1
	}
	rare := make([]uint32, 100)
	rare[50] = 1
	for name, c := range map[Shape][]uint32{ShapePeriodic: periodic, ShapeSteady: steady, ShapeBursty: bursty, ShapeRare: rare} {
		if got := Classify(c, 100); got != name {
			t.Errorf("Classify(%s) = %s", name, got)
		}
	}
	tr := &trace.Trace{Bins: 100, Bin: time.Minute, Apps: []trace.App{
		{ID: "p", Counts: periodic}, {ID: "s", Counts: steady}, {ID: "b", Counts: bursty}, {ID: "r", Counts: rare},
		{ID: "heavy", Counts: func() []uint32 { c := make([]uint32, 100); c[95] = 1000; c[10] = 1000; return c }()},
	}}
	got := SelectVaried(tr, 10, 80, 80, 100, 50)
	// r has nothing in the window [80,100), heavy exceeds the rate cap.
	want := []string{"b", "p", "s"}
	if len(got) != len(want) {
		t.Fatalf("SelectVaried = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("SelectVaried = %v, want %v", got, want)
		}
	}
}

func TestRunWaitsForStartAt(t *testing.T) {
	tr := tinyTrace()
	clk := &fakeClock{now: time.Unix(0, 0)}
	start := time.Unix(30, 0)
	var first time.Time
	var mu sync.Mutex
	_, err := Run(context.Background(), tr, Options{Speed: 60, InFlight: 1, StartAt: start, Now: clk.Now, Sleep: clk.Sleep},
		func(context.Context, Request) error {
			mu.Lock()
			defer mu.Unlock()
			if first.IsZero() {
				first = clk.Now()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if first.Before(start) {
		t.Fatalf("first request at %v, before the start %v", first, start)
	}
}
