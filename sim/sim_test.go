package sim

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// mk builds a one-minute-bin trace; each app is (memory MB, request bins).
func mk(bins int, apps ...appSpec) *trace.Trace {
	tr := &trace.Trace{Start: time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC), Bin: time.Minute, Bins: bins}
	for i, a := range apps {
		c := make([]uint32, bins)
		for _, b := range a.at {
			c[b]++
		}
		tr.Apps = append(tr.Apps, trace.App{ID: fmt.Sprintf("app%02d", i), MemoryMB: a.mem, Counts: c})
	}
	return tr
}

type appSpec struct {
	mem float64
	at  []int // one request per listed bin (repeat a bin for more)
}

func every(from, to, step int) []int {
	var out []int
	for b := from; b < to; b += step {
		out = append(out, b)
	}
	return out
}

func run(t *testing.T, tr *trace.Trace, p Policy, evalStart int) AppResult {
	t.Helper()
	r, err := Run(tr, p, Options{EvalStart: evalStart})
	if err != nil {
		t.Fatal(err)
	}
	return r.Apps[0]
}

func check(t *testing.T, got AppResult, requests, cold uint64, live, wasted, preps int) {
	t.Helper()
	if got.Requests != requests || got.Cold != cold || got.LiveBins != live || got.WastedBins != wasted || got.Preparations != preps {
		t.Errorf("got requests %d cold %d live %d wasted %d preparations %d; want %d %d %d %d %d",
			got.Requests, got.Cold, got.LiveBins, got.WastedBins, got.Preparations, requests, cold, live, wasted, preps)
	}
	if want := float64(got.WastedBins) * got.MemoryMB * 60; got.WastedMBSec != want {
		t.Errorf("wasted %v MB·s, want %v", got.WastedMBSec, want)
	}
}

// Requests at bins 0, 4, 6 (bin 4 twice); evaluation from bin 2.
var small = appSpec{mem: 100, at: []int{0, 4, 4, 6}}

func TestReactive(t *testing.T) {
	got := run(t, mk(12, small), Reactive{}, 2)
	check(t, got, 3, 3, 0, 0, 0)
}

func TestKeepAlive(t *testing.T) {
	// K = 2 bins. Bin 2 is held from the request in bin 0 (waste, and a
	// preparation: bin 1, the last training bin, served nothing); bin 3 is
	// not; bin 4 is cold (both requests); bin 5 held (waste), 6 warm, 7-8
	// held (waste), 9-11 free.
	got := run(t, mk(12, small), NewKeepAlive(2*time.Minute), 2)
	check(t, got, 3, 2, 5, 4, 1)
	if got.WastedMBSec != 4*100*60 {
		t.Errorf("wasted %v MB·s, want 24000", got.WastedMBSec)
	}
}

func TestKeepAliveRoundsUpToBins(t *testing.T) {
	tr := mk(12, small)
	tr.Bin = 2 * time.Minute // 3 minutes = 2 bins
	r, err := Run(tr, NewKeepAlive(3*time.Minute), Options{EvalStart: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Apps[0]; got.LiveBins != 5 || got.WastedMBSec != 4*100*120 {
		t.Errorf("live %d wasted %v; want 5 and 48000", got.LiveBins, got.WastedMBSec)
	}
}

func TestOracle(t *testing.T) {
	got := run(t, mk(12, small), &Oracle{}, 2)
	check(t, got, 3, 0, 2, 0, 2)
	// One bin of lead: live 3-6, bins 3 and 5 wasted, one preparation.
	got = run(t, mk(12, small), &Oracle{Lead: 1}, 2)
	check(t, got, 3, 0, 4, 2, 1)
}

func TestHistogramPrewarmsBeforePeriodicRequests(t *testing.T) {
	// A request every 10 bins: IT = 9 idle bins, head = tail = 9, so after
	// each request the app is held k in [floor(0.9·9), ceil(1.1·10)) =
	// [8, 11) bins later: bins t+9, t+10, t+11. The request at t+10 is
	// warm and restarts the window, so one bin (t+9) is wasted per period.
	tr := mk(100, appSpec{mem: 200, at: every(0, 100, 10)})
	got := run(t, tr, NewHistogram(), 50)
	// Bins 50..99: requests at 50..90 all warm; waste at 59, 69, 79, 89, 99;
	// live 50 (from the request at 40) and those five plus 60..90.
	check(t, got, 5, 0, 10, 5, 6)

	ka := run(t, tr, NewKeepAlive(10*time.Minute), 50)
	check(t, ka, 5, 0, 50, 45, 1)
}

func TestHistogramFallsBackToRangeKeepAlive(t *testing.T) {
	// One request before the evaluation: no idle time yet, CV 0, so the
	// standard keep-alive of the 4-hour range holds the app (240 bins).
	tr := mk(400, appSpec{mem: 100, at: []int{9, 300}})
	got := run(t, tr, NewHistogram(), 10)
	// Held bins 10..249, cold at 300 (290 idle bins > 240). No preparation:
	// the hold continues the instance that served bin 9.
	check(t, got, 1, 1, 240, 240, 0)
}

func TestHistogramForecastsOutOfRangeIdleTimes(t *testing.T) {
	// A request every 300 bins (5 h > the 4 h range): every IT (299) is
	// out of range, so the forecast (mean IT 299) holds k in
	// [floor(0.85·299), ceil(1.15·299)) = [254, 344): bins t+255 … t+300
	// until the request at t+300 claims it.
	tr := mk(2000, appSpec{mem: 100, at: every(0, 2000, 300)})
	got := run(t, tr, NewHistogram(), 1000)
	// Requests at 1200, 1500, 1800: warm; each preceded by 45 held bins
	// (t+255 … t+299) of waste; after 1800 bins 2055.. are past the end.
	check(t, got, 3, 0, 3*46, 3*45, 3)
}

func TestHistogramCV(t *testing.T) {
	a := histApp{counts: make([]uint32, 4)}
	p := &Histogram{binsPerHist: 1}
	for _, it := range []int{0, 0, 1, 3} { // counts 2,1,0,1: mean 1, sd sqrt(2/3)
		p.add(&a, it)
	}
	if got, want := a.cv(), math.Sqrt(2.0/3); math.Abs(got-want) > 1e-12 {
		t.Errorf("cv %v, want %v", got, want)
	}
	if got := a.percentile(0.05); got != 0 {
		t.Errorf("head %d, want 0", got)
	}
	if got := a.percentile(0.99); got != 3 {
		t.Errorf("tail %d, want 3", got)
	}
}

// fakeForecaster serves fixed probabilities: probs[b][app].
type fakeForecaster struct {
	h     int
	probs map[int][]float64
	calls int
	seen  []int // History.Now() at each call
}

func (f *fakeForecaster) Horizon() int { return f.h }
func (f *fakeForecaster) Forecast(b int, h *History) ([]float64, error) {
	f.calls++
	f.seen = append(f.seen, h.Now())
	if c := h.Counts(0); len(c) != b || cap(c) != b {
		return nil, fmt.Errorf("history at bin %d shows %d bins (capacity %d)", b, len(c), cap(c))
	}
	if p, ok := f.probs[b]; ok {
		return p, nil
	}
	return make([]float64, len(h.Env().Apps)), nil
}

func TestOursLeases(t *testing.T) {
	// Horizon 3. P >= 0.5 at bins 2 and 8. The lease from bin 2 covers 2-4
	// and is claimed by the request at 3 (released after it). The lease
	// from 8 covers 8-10, unused: 3 bins wasted. Request at 6: cold.
	tr := mk(12, appSpec{mem: 50, at: []int{3, 6}})
	f := &fakeForecaster{h: 3, probs: map[int][]float64{2: {0.9}, 5: {0.4}, 8: {0.5}}}
	cache := NewForecastCache(f)
	got := run(t, tr, NewOurs(cache, 0.5), 1)
	check(t, got, 2, 1, 2+3, 1+3, 2)
	// The history handed to the model at bin b holds bins < b only.
	for i, now := range f.seen {
		if now != i+1 {
			t.Fatalf("forecast for bin %d saw %d bins of history", i+1, now)
		}
	}
	// A lower threshold reuses the cache: no new model calls. At 0.4 the
	// bin-5 forecast also prepares (5-7): 5 wasted, 6 warm and claims it.
	calls := f.calls
	got = run(t, tr, NewOurs(cache, 0.4), 1)
	check(t, got, 2, 0, 2+2+3, 1+1+3, 3)
	if f.calls != calls {
		t.Errorf("second threshold called the model %d more times", f.calls-calls)
	}
}

func TestOursRenewsInTheLastBinOfALease(t *testing.T) {
	// Horizon 3, P = 0.8 in bins 2..7, no request. Leases at 2 (2-4),
	// renewed at 4 (to 6) and at 6 (to 8): live 2..8, all wasted, three
	// preparations although the hold is continuous.
	probs := map[int][]float64{}
	for b := 2; b <= 7; b++ {
		probs[b] = []float64{0.8}
	}
	tr := mk(12, appSpec{mem: 10, at: []int{11}})
	got := run(t, tr, NewOurs(NewForecastCache(&fakeForecaster{h: 3, probs: probs}), 0.5), 1)
	check(t, got, 1, 1, 7, 7, 3)
}

func TestPercentile(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{nil, 0.75, 0},
		{[]float64{0.3}, 0.75, 0.3},
		{[]float64{4, 0, 2, 1, 3}, 0.75, 3},
		{[]float64{0, 10}, 0.75, 7.5},
		{[]float64{0, 1, 1, 1}, 0.75, 1},
	} {
		if got := Percentile(c.xs, c.q); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.xs, c.q, got, c.want)
		}
	}
}

func TestSummarizeAndNormalize(t *testing.T) {
	// Three apps, all cold under reactive: rates 1, 1, 1 and one idle app
	// that must not count in the percentile.
	tr := mk(10, appSpec{100, []int{5}}, appSpec{100, []int{6, 7}}, appSpec{100, nil}, appSpec{0, []int{8}})
	rep, err := Evaluate(tr, EvalConfig{EvalStart: 4, Families: []string{FamilyReactive, FamilyKeepAlive, FamilyOracle}, KeepAlives: []time.Duration{10 * time.Minute, time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Summary{}
	for _, r := range rep.Rows {
		byName[r.Policy] = r
	}
	re := byName["reactive"]
	if re.Apps != 3 || re.Requests != 4 || re.ColdRequests != 4 || re.ColdP75 != 1 || re.ColdOverall != 1 || re.WastePct != 0 {
		t.Errorf("reactive %+v", re)
	}
	ka := byName["keepalive-10m"]
	if ka.WastePct != 100 {
		t.Errorf("keepalive-10m waste %v%%, want 100", ka.WastePct)
	}
	// Keep-alive 10: app0 held 6-9 (4 bins waste), app1 cold at 6, warm at
	// 7, held 8-9 (2 waste); app3 (unknown memory: 170 MB) cold at 8, 9 waste.
	if want := (4*100 + 2*100 + 1*170) * 60.0; rep.ReferenceWastedMBSec != want {
		t.Errorf("reference waste %v, want %v", rep.ReferenceWastedMBSec, want)
	}
	// Per-app cold rates under keep-alive 10: 1, 0.5, 1 -> p75 = 1; overall 3/4.
	if ka.ColdP75 != 1 || ka.ColdOverall != 0.75 {
		t.Errorf("keepalive-10m cold p75 %v overall %v", ka.ColdP75, ka.ColdOverall)
	}
	k1 := byName["keepalive-1m"]
	if want := 100 * (1*100 + 1*100 + 1*170) / (4*100 + 2*100 + 1*170.0); math.Abs(k1.WastePct-want) > 1e-9 {
		t.Errorf("keepalive-1m waste %v%%, want %v", k1.WastePct, want)
	}
	or := byName["oracle"]
	if or.ColdRequests != 0 || or.WastedMBSec != 0 || or.Preparations != 3 || or.Shadow != 3 {
		t.Errorf("oracle %+v", or)
	}
	// Both keep-alives have p75 1: the cheaper one is best.
	if len(rep.Best) != 3 || rep.Best[1].Policy != "keepalive-1m" {
		t.Errorf("best %+v", rep.Best)
	}
}

func TestBadInput(t *testing.T) {
	tr := mk(10, appSpec{100, []int{1}})
	if _, err := Split(10, 1); err == nil || !strings.Contains(err.Error(), "between 0 and 1") {
		t.Errorf("Split(10, 1): %v", err)
	}
	if _, err := Split(10, 0); err == nil {
		t.Error("Split(10, 0): no error")
	}
	if _, err := Split(10, 0.01); err == nil || !strings.Contains(err.Error(), "at least one") {
		t.Errorf("Split(10, 0.01): %v", err)
	}
	if s, err := Split(1440, 2.0/3); err != nil || s != 960 {
		t.Errorf("Split(1440, 2/3) = %d, %v; want 960", s, err)
	}
	if _, err := Run(tr, Reactive{}, Options{EvalStart: 5}); !errors.Is(err, ErrNoRequests) {
		t.Errorf("range without requests: %v", err)
	}
	if _, err := Run(tr, Reactive{}, Options{EvalStart: 10}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty range: %v", err)
	}
	if _, err := ParseFamilies("reactive,lru"); err == nil || !strings.Contains(err.Error(), `unknown policy "lru"`) {
		t.Errorf("unknown policy: %v", err)
	}
	if f, err := ParseFamilies(" Oracle , reactive,oracle"); err != nil || strings.Join(f, ",") != "oracle,reactive" {
		t.Errorf("ParseFamilies = %v, %v", f, err)
	}
	if _, err := Evaluate(mk(10, appSpec{100, []int{8}}), EvalConfig{EvalStart: 5, Families: []string{FamilyOurs}}); err == nil || !strings.Contains(err.Error(), "demand model") {
		t.Errorf("ours without a model: %v", err)
	}
}

func TestTune(t *testing.T) {
	rows := []Summary{
		{Policy: "ours-0.1", Family: "ours", ColdP75: 0.1, WastePct: 150, WastedMBSec: 15},
		{Policy: "ours-0.3", Family: "ours", ColdP75: 0.2, WastePct: 80, WastedMBSec: 8},
		{Policy: "ours-0.5", Family: "ours", ColdP75: 0.4, WastePct: 40, WastedMBSec: 4},
		{Policy: "keepalive-10m", Family: "keepalive", ColdP75: 0.05, WastePct: 100, WastedMBSec: 10},
	}
	if s, err := Tune(rows, "ours", Goal{WasteBudgetPct: 100}); err != nil || s.Policy != "ours-0.3" {
		t.Errorf("waste budget 100: %v %v", s.Policy, err)
	}
	if s, err := Tune(rows, "ours", Goal{ColdTarget: 0.4}); err != nil || s.Policy != "ours-0.5" {
		t.Errorf("cold target 0.4: %v %v", s.Policy, err)
	}
	if _, err := Tune(rows, "ours", Goal{WasteBudgetPct: 10}); err == nil || !strings.Contains(err.Error(), "ours-0.5") {
		t.Errorf("impossible budget: %v", err)
	}
	if _, err := Tune(rows, "ours", Goal{ColdTarget: 0.01}); err == nil || !strings.Contains(err.Error(), "ours-0.1") {
		t.Errorf("impossible target: %v", err)
	}
	if _, err := Tune(rows, "ours", Goal{}); err == nil {
		t.Error("no goal: no error")
	}
}
