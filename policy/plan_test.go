package policy

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// legacy is a configuration with none of the newer settings: the decision
// of loops started before them.
func legacy() Config {
	c := Default().RuleOnly()
	c.Objective = ""
	return c
}

// With the newer settings at zero, Decide is the expected-value rule of
// Thresholds.Decide, Hold and NextChange, which recorded loops ran.
func TestDecideWithoutTheNewSettingsIsTheOldRule(t *testing.T) {
	c := legacy()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		path := make([]float64, 1+rng.IntN(20))
		for j := range path {
			path[j] = rng.Float64() * 0.2
		}
		held := rng.IntN(2) == 0
		app := App{MemoryMB: 50 + rng.Float64()*400}
		th := c.For(app, time.Minute)
		got := c.Decide(Situation{App: app, Held: held, Activity: Activity{Window: 100, Idle: rng.IntN(100)}, Path: path}, time.Minute, c.LookaheadBins)
		want := th.Decide(held, path[0])
		next := 1 + NextChange(th, want.Holds(), path[1:])
		hold := 0
		if want.Holds() {
			hold = c.Hold(th, held, path)
		}
		if got.Action != want || got.NextChange != next || got.HoldBins != hold {
			t.Fatalf("held %v path %v: got %+v, want %v, next %d, hold %d", held, path, got, want, next, hold)
		}
	}
}

// A threshold of 1 with a keep-alive floor is the fixed keep-alive: held
// in exactly the K bins after each bin with requests.
func TestThresholdOneIsTheFixedKeepAlive(t *testing.T) {
	c := Default()
	c.Threshold, c.KeepAliveBins = 1, 10
	counts := make([]float64, 300)
	for _, b := range []int{3, 4, 30, 31, 32, 100, 250} {
		counts[b] = 1
	}
	held := false
	for b := 1; b < len(counts); b++ {
		a := ActivityOf(counts[:b])
		p := c.Decide(Situation{Held: held, Activity: a, Path: []float64{0.9}}, time.Minute, 10)
		last := -1
		for k := b - 1; k >= 0; k-- {
			if counts[k] > 0 {
				last = k
				break
			}
		}
		want := last >= 0 && b-last <= 10
		if p.Action.Holds() != want {
			t.Fatalf("bin %d (last request %d): %v, want held %v", b, last, p.Action, want)
		}
		if p.Trusted {
			t.Fatalf("bin %d: threshold 1 trusted the forecast", b)
		}
		held = p.Action.Holds() || counts[b] > 0
	}
}

func TestUntrustedApplicationsGetTheFallbackKeepAlive(t *testing.T) {
	c := Default()
	c.TrustGaps = 5 // trust after 5 gaps, fallback 10 bins, floor 2
	few := ActivityOf([]float64{0, 1, 0, 0, 1, 0, 0, 0})
	if c.Trusted(few) {
		t.Fatalf("trusted after %d gaps", few.Gaps())
	}
	p := c.Decide(Situation{Held: true, Activity: few, Path: make([]float64, 60)}, time.Minute, 60)
	if p.Action != Keep || p.Trusted {
		t.Fatalf("3 idle bins after a request, untrusted: %+v, want keep (fallback 10)", p)
	}
	// Held until 10 bins after the request: 7 more from now (idle 3..9).
	if p.HoldBins != 7 || p.NextChange != 7 {
		t.Errorf("hold %d, next change %d: want 7 and 7", p.HoldBins, p.NextChange)
	}
	// A certain forecast does not prepare an untrusted application.
	far := ActivityOf(append([]float64{1}, make([]float64, 40)...))
	if p := c.Decide(Situation{Activity: far, Path: []float64{1}}, time.Minute, 60); p.Action != Idle {
		t.Errorf("untrusted with P=1: %v, want idle", p.Action)
	}
}

func TestPerApplicationObjectiveWeighsSparseApplicationsMore(t *testing.T) {
	c := Default()
	day := make([]float64, 1440)
	sparse, busy := append([]float64(nil), day...), append([]float64(nil), day...)
	for b := 0; b < 1440; b += 240 {
		sparse[b] = 1 // 6 a day
	}
	for b := range busy {
		busy[b] = 2 // 2880 a day
	}
	ws, wb := c.ColdWeight(ActivityOf(sparse), time.Minute), c.ColdWeight(ActivityOf(busy), time.Minute)
	if ws != 4 || wb != 24.0/2880 {
		t.Errorf("weights %v and %v, want 24/6 and 24/2880", ws, wb)
	}
	c.Objective = PerRequest
	if w := c.ColdWeight(ActivityOf(sparse), time.Minute); w != 1 {
		t.Errorf("per request: weight %v, want 1", w)
	}
	// The same forecast holds the sparse application and not a busier one.
	c = Default()
	c.KeepAliveBins = 0
	mid := append([]float64(nil), day...)
	for b := 0; b < 1440; b += 10 {
		mid[b] = 1 // 144 a day
	}
	mid[1430] = 0
	sa, ma := ActivityOf(sparse[:1439]), ActivityOf(mid[:1439])
	p := []float64{0.03}
	if got := c.Decide(Situation{App: App{MemoryMB: 170}, Activity: sa, Path: p}, time.Minute, 10); got.Action != Prepare {
		t.Errorf("sparse at P=0.03: %v, want prepare", got.Action)
	}
	if got := c.Decide(Situation{App: App{MemoryMB: 170}, Activity: ma, Path: p}, time.Minute, 10); got.Action != Idle {
		t.Errorf("144 a day at P=0.03: %v, want idle", got.Action)
	}
}

// Walking the path, the activity is what ActivityOf says of the window
// with the idle bins appended and its oldest bins pushed out.
func TestAdvanceSlidesTheWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		w := 1 + rng.IntN(30)
		n := rng.IntN(w + 1)
		counts := make([]float64, n)
		for i := range counts {
			if rng.IntN(3) == 0 {
				counts[i] = float64(1 + rng.IntN(3))
			}
		}
		s := Situation{Window: counts, WindowBins: w}
		a := ActivityOf(counts)
		ext := append([]float64(nil), counts...)
		for j := 1; j < 3*w; j++ {
			a = s.advance(a, j)
			ext = append(ext, 0)
			want := ActivityOf(ext[max(0, len(ext)-w):])
			if a != want {
				t.Fatalf("window %d, counts %v, step %d: %+v, want %+v", w, counts, j, a, want)
			}
		}
	}
}

func TestValidateNamesTheNewSettings(t *testing.T) {
	c := Default()
	c.Objective, c.ReferenceRequestsPerDay, c.KeepAliveBins, c.FallbackBins, c.TrustGaps = "p75", -1, -1, 5000, -2
	err := c.Validate()
	for _, want := range []string{`objective "p75"`, "reference_requests_per_day -1", "keep_alive_bins -1", "fallback_bins 5000", "trust_gaps -2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	c = Default()
	c.ReferenceRequestsPerDay = 0
	if err := c.Validate(); err == nil {
		t.Error("per application with no reference rate accepted")
	}
}

// After walks the same path Decide walks: the decision n bins on is the
// one Decide met there.
func TestAfterIsWhereTheWalkStands(t *testing.T) {
	counts := []float64{1, 0, 0, 2, 0, 1, 0, 0, 0, 0}
	s := Situation{Activity: ActivityOf(counts), Window: counts, WindowBins: 10, Path: []float64{0.1, 0.2, 0.3, 0.4}}
	for n := 0; n <= 3; n++ {
		ext := append(append([]float64(nil), counts...), make([]float64, n)...)
		got := s.After(n)
		if want := ActivityOf(ext[len(ext)-10:]); got.Activity != want || len(got.Path) != 4-n || ActivityOf(got.Window) != want {
			t.Fatalf("after %d: %+v (window %v), want %+v", n, got.Activity, got.Window, want)
		}
	}
}
