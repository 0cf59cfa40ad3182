package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
	"github.com/forewarm/forewarm/policy"
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

func run(t *testing.T, tr *trace.Trace, p Policy, from int) AppResult {
	t.Helper()
	r, err := Run(tr, p, Options{Range: Range{from, tr.Bins}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Apps[0]
}

// check compares an application's accounting: requests, cold starts under
// both rules, live and wasted bins, preparations.
func check(t *testing.T, got AppResult, requests, coldFirst, coldAll uint64, live, wasted, preps int) {
	t.Helper()
	if got.Requests != requests || got.ColdFirst != coldFirst || got.ColdAll != coldAll || got.LiveBins != live || got.WastedBins != wasted || got.Preparations != preps {
		t.Errorf("got requests %d cold %d/%d live %d wasted %d preparations %d; want %d %d/%d %d %d %d",
			got.Requests, got.ColdFirst, got.ColdAll, got.LiveBins, got.WastedBins, got.Preparations, requests, coldFirst, coldAll, live, wasted, preps)
	}
	if want := float64(got.WastedBins) * got.MemoryMB * 60; got.IdleMBSec != want || got.WastedMBSec != got.IdleMBSec+got.PrepareMBSec {
		t.Errorf("idle %v MB·s (want %v), wasted %v = idle + preparations %v", got.IdleMBSec, want, got.WastedMBSec, got.PrepareMBSec)
	}
}

// Requests at bins 0, 4, 6 (bin 4 twice); evaluation from bin 2.
var small = appSpec{mem: 100, at: []int{0, 4, 4, 6}}

func TestReactive(t *testing.T) {
	// Bins 4 and 6 have requests and no instance: two cold starts (the
	// paper's rule: the instance bin 4's first request starts serves the
	// second), three cold requests under the strict rule.
	got := run(t, mk(12, small), Reactive{}, 2)
	check(t, got, 3, 2, 3, 0, 0, 0)
}

func TestKeepAlive(t *testing.T) {
	// K = 2 bins. Bin 2 is held from the request in bin 0 (waste, and a
	// preparation: bin 1, the last training bin, served nothing); bin 3 is
	// not; bin 4 is cold (one cold start, two requests); bin 5 held
	// (waste), 6 warm, 7-8 held (waste), 9-11 free.
	got := run(t, mk(12, small), NewKeepAlive(2*time.Minute), 2)
	check(t, got, 3, 1, 2, 5, 4, 1)
	if got.WastedMBSec != 4*100*60 {
		t.Errorf("wasted %v MB·s, want 24000", got.WastedMBSec)
	}
}

func TestPreparationsAreCharged(t *testing.T) {
	r, err := Run(mk(12, small), NewKeepAlive(2*time.Minute), Options{Range: Range{2, 12}, PrepareSeconds: 3})
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Apps[0]; a.Preparations != 1 || a.PrepareMBSec != 300 || a.WastedMBSec != 4*100*60+300 {
		t.Errorf("%+v: want one preparation charged 3 s × 100 MB on top of the idle memory", a)
	}
}

func TestKeepAliveRoundsUpToBins(t *testing.T) {
	tr := mk(12, small)
	tr.Bin = 2 * time.Minute // 3 minutes = 2 bins
	r, err := Run(tr, NewKeepAlive(3*time.Minute), Options{Range: Range{2, 12}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Apps[0]; got.LiveBins != 5 || got.WastedMBSec != 4*100*120 {
		t.Errorf("live %d wasted %v; want 5 and 48000", got.LiveBins, got.WastedMBSec)
	}
}

func TestRangeEndsThePlay(t *testing.T) {
	// Counting bins [2, 5) only: the requests at 6 are not played.
	r, err := Run(mk(12, small), Reactive{}, Options{Range: Range{2, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Apps[0]; a.Requests != 2 || r.EvalBins != 3 {
		t.Errorf("%+v over %d bins, want the 2 requests of bin 4 over 3 bins", a, r.EvalBins)
	}
}

func TestOracle(t *testing.T) {
	got := run(t, mk(12, small), &Oracle{}, 2)
	check(t, got, 3, 0, 0, 2, 0, 2)
	// One bin of lead: live 3-6, bins 3 and 5 wasted, one preparation.
	got = run(t, mk(12, small), &Oracle{Lead: 1}, 2)
	check(t, got, 3, 0, 0, 4, 2, 1)
}

func TestHistogramPrewarmsBeforePeriodicRequests(t *testing.T) {
	// A request every 10 bins: IT = 9 idle bins, head = tail = 9, so after
	// each request the app is held k in [floor(0.9·9), ceil(1.1·10)) =
	// [8, 11) bins later: bins t+9, t+10, t+11. The request at t+10 is
	// warm and restarts the window, so one bin (t+9) is wasted per period.
	// 14 idle times are seen before bin 150: enough to trust the histogram.
	tr := mk(200, appSpec{mem: 200, at: every(0, 200, 10)})
	got := run(t, tr, NewHistogram(), 150)
	// Bins 150..199: requests at 150..190 all warm; waste at 159, 169, 179,
	// 189, 199; live 150 (from the request at 140) and those five plus 160..190.
	check(t, got, 5, 0, 0, 10, 5, 6)

	ka := run(t, tr, NewKeepAlive(10*time.Minute), 150)
	check(t, ka, 5, 0, 0, 50, 45, 1)
}

func TestHistogramNeedsTenIdleTimes(t *testing.T) {
	// The same timer with only 4 idle times seen: not trusted yet, so the
	// standard keep-alive of the range holds the app throughout (bin 49
	// served nothing, so bin 50 counts as a fresh preparation).
	tr := mk(100, appSpec{mem: 200, at: every(0, 100, 10)})
	got := run(t, tr, NewHistogram(), 50)
	check(t, got, 5, 0, 0, 50, 45, 1)
}

func TestHistogramFallsBackToRangeKeepAlive(t *testing.T) {
	// One request before the evaluation: no idle time yet, so the standard
	// keep-alive of the 4-hour range holds the app (240 bins).
	tr := mk(400, appSpec{mem: 100, at: []int{9, 300}})
	got := run(t, tr, NewHistogram(), 10)
	// Held bins 10..249, cold at 300 (290 idle bins > 240); one idle time
	// is still too few, so 301..399 are held again. No preparation: each
	// hold continues the instance that served the request before it.
	check(t, got, 1, 1, 1, 240+99, 240+99, 0)
}

func TestHistogramForecastsOutOfRangeIdleTimes(t *testing.T) {
	// A request every 300 bins (5 h > the 4 h range): every IT (299) is
	// out of range, so the forecast (mean IT 299) holds k in
	// [floor(0.85·299), ceil(1.15·299)) = [254, 344): bins t+255 … t+300
	// until the request at t+300 claims it. 11 idle times precede bin 3400.
	tr := mk(5000, appSpec{mem: 100, at: every(0, 5000, 300)})
	got := run(t, tr, NewHistogram(), 3400)
	// Requests at 3600 … 4800: warm; each preceded by 45 held bins
	// (t+255 … t+299) of waste; after 4800 bins 5055.. are past the end.
	check(t, got, 5, 0, 0, 5*46, 5*45, 5)
}

func TestPerAppKeepAlive(t *testing.T) {
	// History: a request every 5 bins (4 idle bins between). With cold
	// starts dear (threshold 0.01) the 5-bin keep-alive bridges every gap;
	// with them cheap (threshold 1) no keep-alive at all is best.
	kas := []time.Duration{time.Minute, 3 * time.Minute, 5 * time.Minute, 8 * time.Minute}
	tr := mk(100, appSpec{mem: 100, at: every(0, 100, 5)})
	dear := NewPerAppKeepAlive(0.01, 100, kas)
	got := run(t, tr, dear, 50)
	if dear.k[0] != 5 {
		t.Errorf("dear cold starts: keep-alive %d bins, want 5", dear.k[0])
	}
	check(t, got, 10, 0, 0, 50, 40, 1) // bin 49 served nothing: bin 50 is a fresh hold
	cheap := NewPerAppKeepAlive(1, 100, kas)
	got = run(t, tr, cheap, 50)
	if cheap.k[0] != 0 {
		t.Errorf("cheap cold starts: keep-alive %d bins, want none", cheap.k[0])
	}
	check(t, got, 10, 10, 10, 0, 0, 0)
}

func TestPerAppKeepAliveFallsBackThenReChooses(t *testing.T) {
	// No history before the range, then a request every 20 bins from bin
	// 60, with cold starts cheap (threshold 1: no keep-alive is best once
	// judged). Chosen at 60 and 120 with 0 and 2 gaps: the 10-minute
	// window; at 180, with 5 gaps, none.
	tr := mk(240, appSpec{mem: 100, at: every(60, 240, 20)})
	p := NewPerAppKeepAlive(1, 100, DefaultKeepAlives)
	got := run(t, tr, p, 60)
	if p.k[0] != 0 {
		t.Errorf("keep-alive after 5 gaps %d bins, want none", p.k[0])
	}
	// Requests 60 … 220 all cold; after each of 60 … 160 the 10-minute
	// window held 10 idle bins (the instance that served kept, not prepared).
	check(t, got, 9, 9, 9, 60, 60, 0)
	// Fewer than PerAppMinGaps gaps in the whole run: the window stays 10.
	few := NewPerAppKeepAlive(1, 100, DefaultKeepAlives)
	got = run(t, mk(240, appSpec{mem: 100, at: []int{60, 100, 150, 200}}), few, 60)
	if few.k[0] != 10 {
		t.Errorf("keep-alive with 3 gaps %d bins, want the 10-minute fallback", few.k[0])
	}
	check(t, got, 4, 4, 4, 40, 40, 0)
}

// scanPerApp is the per-application keep-alive's choice for one app by a
// scan of its counts, the way it was made before the bookkeeping: the
// reference the online version must agree with.
func scanPerApp(counts []uint32, mem, binSec, cold float64, cands []int, fallback int) int {
	var gaps []int
	last := -1
	for b, c := range counts {
		if c == 0 {
			continue
		}
		if last >= 0 {
			gaps = append(gaps, b-last-1)
		}
		last = b
	}
	if len(gaps) < PerAppMinGaps {
		return fallback
	}
	trailing := len(counts) - last - 1
	best, bestCost := 0, math.Inf(1)
	for _, k := range cands {
		idleBins, missed := min(k, trailing), 0
		for _, g := range gaps {
			if g < k {
				idleBins += g
			} else {
				idleBins += k
				missed++
			}
		}
		if cost := float64(idleBins)*mem*binSec + float64(missed)*cold; cost < bestCost {
			best, bestCost = k, cost
		}
	}
	return best
}

func TestPerAppKeepAliveMatchesAScanOfTheHistory(t *testing.T) {
	tr := trace.Synth(trace.SynthOptions{Apps: 60, Days: 2, Seed: 3})
	rg := Range{tr.Bins / 2, tr.Bins}
	for _, th := range []float64{0.003, 0.03, 0.3} {
		p := NewPerAppKeepAlive(th, 170, DefaultKeepAlives)
		env := NewEnv(tr, rg)
		if err := p.Start(env); err != nil {
			t.Fatal(err)
		}
		cands := []int{0}
		for _, d := range DefaultKeepAlives {
			cands = append(cands, binsCeil(d, tr.Bin))
		}
		cold := 170 * tr.Bin.Seconds() / th
		counts := make([]uint32, len(tr.Apps))
		live := make([]bool, len(tr.Apps))
		changed := 0
		prev := map[int]int{}
		for b := 0; b < rg.To; b++ {
			if b >= rg.From {
				if err := p.Plan(b, live); err != nil {
					t.Fatal(err)
				}
				if (b-rg.From)%60 == 0 { // re-chosen: compare every app with a scan of bins < b
					for i, a := range tr.Apps {
						want := scanPerApp(a.Counts[:b], env.Apps[i].MemoryMB, tr.Bin.Seconds(), cold, cands, 10)
						if p.k[i] != want {
							t.Fatalf("threshold %v, bin %d, app %d: keep-alive %d bins, a scan says %d", th, b, i, p.k[i], want)
						}
						if v, ok := prev[i]; ok && v != want {
							changed++
						}
						prev[i] = want
					}
				}
			}
			for i := range tr.Apps {
				counts[i] = tr.Apps[i].Counts[b]
			}
			p.Observe(b, counts)
		}
		if changed == 0 {
			t.Errorf("threshold %v: no application's window changed over a day: the test shows nothing", th)
		}
	}
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
	probs map[int][]float64
	calls int
	seen  []int // History.Now() at each call
}

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

// testConfig keeps an app of 50 MB at P >= th and prepares one at P >=
// 1.1·th (a fresh preparation costs 6 s of a 60 s bin).
func testConfig(th float64) policy.Config {
	c := policy.Default().RuleOnly()
	c.Threshold, c.ReferenceMB, c.PrepareSeconds = th, 50, 6
	return c
}

func TestOursDecidesThroughThePolicy(t *testing.T) {
	tr := mk(12, appSpec{mem: 50, at: []int{3, 6}})
	f := &fakeForecaster{probs: map[int][]float64{2: {0.9}, 3: {0.6}, 4: {0.52}, 5: {0.3}, 8: {0.53}, 9: {0.56}}}
	cache := NewForecastCache(f)
	var got []string
	ours := NewOurs(cache, testConfig(0.5))
	ours.Record = func(b, app int, p float64, a policy.Action) { got = append(got, fmt.Sprintf("%d:%s", b, a)) }
	r := run(t, tr, ours, 1)
	// 2 prepare (0.9), 3 keep and serve, 4 keep (0.52 >= 0.5), 5 release,
	// 6 cold start, 7 let the instance that served go, 8 not prepared
	// (0.53 < 0.55), 9 prepared (0.56), 10 released.
	want := "1:idle 2:prepare 3:keep 4:keep 5:release 6:idle 7:release 8:idle 9:prepare 10:release 11:idle"
	if strings.Join(got, " ") != want {
		t.Errorf("decisions\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	check(t, r, 2, 1, 1, 4, 3, 2)
	// The history handed to the model at bin b holds bins < b only.
	for i, now := range f.seen {
		if now != i+1 {
			t.Fatalf("forecast for bin %d saw %d bins of history", i+1, now)
		}
	}
	// A lower threshold reuses the cache: no new model calls. At 0.4 bin 8
	// is prepared too and kept through 9.
	calls := f.calls
	r = run(t, tr, NewOurs(cache, testConfig(0.4)), 1)
	check(t, r, 2, 1, 1, 5, 4, 2)
	if f.calls != calls {
		t.Errorf("second threshold called the model %d more times", f.calls-calls)
	}
}

func TestOursScalesTheThresholdWithMemory(t *testing.T) {
	// Twice the reference memory: P 0.9 is below the 1.0 it needs to keep.
	probs := map[int][]float64{}
	for b := 1; b < 12; b++ {
		probs[b] = []float64{0.9, 0.9}
	}
	tr := mk(12, appSpec{mem: 50, at: []int{11}}, appSpec{mem: 100, at: []int{11}})
	r, err := Run(tr, NewOurs(NewForecastCache(&fakeForecaster{probs: probs}), testConfig(0.5)), Options{Range: Range{1, 12}})
	if err != nil {
		t.Fatal(err)
	}
	if small, big := r.Apps[0], r.Apps[1]; small.LiveBins != 11 || small.ColdFirst != 0 || big.LiveBins != 0 || big.ColdFirst != 1 {
		t.Errorf("50 MB app %+v, 100 MB app %+v: want the small one held throughout, the big one never", small, big)
	}
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
		if got := stats.Percentile(c.xs, c.q); got != c.want {
			t.Errorf("stats.Percentile(%v, %v) = %v, want %v", c.xs, c.q, got, c.want)
		}
	}
}

func TestEvaluateSelectsOnTheSelectRange(t *testing.T) {
	// Three apps and an idle one. Select range [4, 10), test [10, 16).
	tr := mk(16,
		appSpec{100, []int{1, 5, 12}},
		appSpec{100, []int{2, 6, 6, 13, 13, 14}},
		appSpec{100, nil},
		appSpec{0, []int{8, 15}})
	cfg := EvalConfig{Select: Range{4, 10}, Test: Range{10, 16}, Families: []string{FamilyReactive, FamilyKeepAlive, FamilyOracle},
		KeepAlives: []time.Duration{10 * time.Minute, time.Minute}, Bootstrap: 50}
	rep, err := Evaluate(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 8 || rep.Rows[0].Range != RangeSelect || rep.Rows[4].Range != RangeTest {
		t.Fatalf("rows %+v", rep.Rows)
	}
	by := map[string]Summary{}
	for _, r := range rep.Rows {
		by[r.Range+"/"+r.Policy] = r
	}
	// Select range, reactive: apps 0, 1, 3 cold at 5; 6 (its second request
	// served by the first's instance); 8: rates 1, 1/2, 1 -> p75 1; overall
	// 3 cold of 4 (4 of 4 under the strict rule).
	re := by["select/reactive"]
	if re.Apps != 3 || re.Requests != 4 || re.ColdRequests != 3 || re.ColdP75 != 1 || re.ColdOverall != 0.75 || re.ColdP75All != 1 || re.ColdOverallAll != 1 || re.WastePct != 0 {
		t.Errorf("reactive %+v", re)
	}
	// Mean per-app rate: (1 + 1/2 + 1) / 3 first, all three 1 under the
	// strict rule.
	if math.Abs(re.ColdMeanApp-5.0/6) > 1e-12 || re.ColdMeanApp != re.ColdMeanAppFirst || re.ColdMeanAppAll != 1 {
		t.Errorf("reactive mean per app %v (first %v, all %v), want 5/6 (5/6, 1)", re.ColdMeanApp, re.ColdMeanAppFirst, re.ColdMeanAppAll)
	}
	// Keep-alive 10 on the select range: app 0 held 4 (from 1), warm at 5,
	// held 6-9: waste 4+... its own figures are the reference, 100%.
	if ka := by["select/keepalive-10m"]; ka.WastePct != 100 || rep.Select.ReferenceWastedMBSec != ka.WastedMBSec {
		t.Errorf("keepalive-10m %+v, reference %v", ka, rep.Select.ReferenceWastedMBSec)
	}
	// Selection is made on the select range and reported on the test range.
	if len(rep.Selection) != 3 || len(rep.Chosen) != 3 {
		t.Fatalf("selection %+v chosen %+v", rep.Selection, rep.Chosen)
	}
	for i, s := range rep.Selection {
		c := rep.Chosen[i]
		if s.Range != RangeSelect || c.Range != RangeTest || s.Policy != c.Policy || !c.Selected || s.Selected {
			t.Errorf("selection %d: %s/%s -> %s/%s selected %v", i, s.Range, s.Policy, c.Range, c.Policy, c.Selected)
		}
	}
	// Within 100% waste the 10-minute keep-alive's p75 beats the 1-minute's.
	if got := rep.Selection[1].Policy; got != "keepalive-10m" {
		t.Errorf("keepalive chose %s", got)
	}
	selected := 0
	for _, r := range rep.Rows {
		if r.Selected {
			selected++
		}
		if r.ColdP75CI[0] > r.ColdP75+1e-12 || r.ColdP75CI[1] < r.ColdP75-1e-12 && r.Apps > 0 {
			t.Errorf("%s/%s: p75 %v outside its interval %v", r.Range, r.Policy, r.ColdP75, r.ColdP75CI)
		}
	}
	if selected != 3 {
		t.Errorf("%d rows selected, want one per family", selected)
	}
	if len(rep.Matched) != 3 || len(rep.Matched[1].ColdP75) != len(DefaultMatchedWaste) {
		t.Errorf("matched %+v", rep.Matched)
	}
	if _, err := Evaluate(tr, EvalConfig{Select: Range{10, 16}, Test: Range{4, 10}}); err == nil || !strings.Contains(err.Error(), "before the test range") {
		t.Errorf("test before select: %v", err)
	}
}

func TestFrontierAndBestAtWaste(t *testing.T) {
	rows := []Summary{
		{Policy: "a", WastePct: 50, ColdP75: 0.6},
		{Policy: "b", WastePct: 100, ColdP75: 0.4},
		{Policy: "c", WastePct: 120, ColdP75: 0.5},  // dominated
		{Policy: "b2", WastePct: 110, ColdP75: 0.4}, // ties b, wastes more
		{Policy: "d", WastePct: 200, ColdP75: 0.0},
		{Policy: "e", WastePct: math.NaN(), ColdP75: 0.1},
	}
	front := Frontier(rows)
	var names []string
	for _, f := range front {
		names = append(names, f.Policy)
	}
	if strings.Join(names, ",") != "a,b,d" {
		t.Errorf("frontier %v, want a,b,d", names)
	}
	// A staircase of measured settings: between a (50%) and b (100%) the
	// reading stays a's 0.6 (interpolation would say 0.5 at 75%), and it
	// names the setting that gave it.
	for _, c := range []struct {
		w    float64
		want float64
		set  string
	}{{50, 0.6, "a"}, {75, 0.6, "a"}, {99.9, 0.6, "a"}, {100, 0.4, "b"}, {150, 0.4, "b"}, {199, 0.4, "b"}, {200, 0, "d"}, {300, 0, "d"}} {
		got, ok := BestAtWaste(rows, c.w)
		if !ok || got.ColdP75 != c.want || got.Policy != c.set {
			t.Errorf("BestAtWaste(%v) = %s %v (%v), want %s %v", c.w, got.Policy, got.ColdP75, ok, c.set, c.want)
		}
		if f, _ := BestAtWaste(front, c.w); f.Policy != got.Policy {
			t.Errorf("at %v: the frontier gives %s, all rows %s", c.w, f.Policy, got.Policy)
		}
	}
	if _, ok := BestAtWaste(rows, 25); ok {
		t.Error("before the first setting: a reading, want none")
	}
	// A setting at exactly the level counts despite rounding.
	if got, ok := BestAtWaste([]Summary{{Policy: "x", WastePct: 100 + 1e-12, ColdP75: 0.3}}, 100); !ok || got.Policy != "x" {
		t.Errorf("at the level: %v %v", got, ok)
	}
	m := matchedWaste(append(rows, Summary{Policy: "other", Family: "g", WastePct: 10}), []string{"", "g", "h"}, []float64{25, 75, 200})
	if len(m) != 2 || m[0].Family != "" || m[1].Family != "g" {
		t.Fatalf("matched %+v", m)
	}
	if !math.IsNaN(m[0].ColdP75[0]) || m[0].Setting[0] != "" || !math.IsNaN(m[0].SettingWastePct[0]) ||
		m[0].ColdP75[1] != 0.6 || m[0].Setting[1] != "a" || m[0].SettingWastePct[1] != 50 ||
		m[0].ColdP75[2] != 0 || m[0].Setting[2] != "d" || m[1].Setting[2] != "other" {
		t.Errorf("matched %+v", m)
	}
}

func TestBootstrap(t *testing.T) {
	rates := make([]float64, 200)
	for i := range rates {
		rates[i] = float64(i) / 199
	}
	ci := Bootstrap(rates, 500, 1)
	if p := stats.Percentile(rates, 0.75); !(ci[0] < p && p < ci[1]) || ci[1]-ci[0] > 0.15 {
		t.Errorf("interval %v around p75 %v", ci, p)
	}
	if again := Bootstrap(rates, 500, 1); again != ci {
		t.Errorf("same seed gave %v then %v", ci, again)
	}
	if same := Bootstrap([]float64{0.5, 0.5, 0.5}, 100, 1); same != [2]float64{0.5, 0.5} {
		t.Errorf("constant rates: %v", same)
	}
}

func TestPairedBootstrap(t *testing.T) {
	a := make([]float64, 200)
	b := make([]float64, 200)
	for i := range a {
		a[i] = float64(i) / 199
		b[i] = a[i] + 0.02 // every application 2 points worse under b
	}
	// Paired, the shift is all there is: every resample sees exactly
	// -0.02, where unpaired intervals of the two p75s overlap widely.
	ci := PairedBootstrap(a, b, 500, 1)
	if math.Abs(ci[0]+0.02) > 1e-9 || math.Abs(ci[1]+0.02) > 1e-9 {
		t.Errorf("shifted rates: interval %v, want -0.02 exactly", ci)
	}
	ua, ub := Bootstrap(a, 500, 1), Bootstrap(b, 500, 2)
	if ua[1] < ub[0] {
		t.Errorf("unpaired intervals %v and %v do not overlap: the example shows nothing", ua, ub)
	}
	// Unrelated rates: an interval around the difference, the same for the
	// same seed.
	c := make([]float64, 200)
	for i := range c {
		c[i] = float64((i*37)%200) / 199 * 0.8
	}
	d := stats.Percentile(a, 0.75) - stats.Percentile(c, 0.75)
	ci = PairedBootstrap(a, c, 500, 3)
	if !(ci[0] < d && d < ci[1]) {
		t.Errorf("interval %v around %v", ci, d)
	}
	if again := PairedBootstrap(a, c, 500, 3); again != ci {
		t.Errorf("same seed gave %v then %v", ci, again)
	}
	if none := PairedBootstrap(a, c, -1, 3); !math.IsNaN(none[0]) || !math.IsNaN(none[1]) {
		t.Errorf("no resamples: %v, want NaNs", none)
	}
}

func TestEvaluateComparesOursPaired(t *testing.T) {
	tr := trace.Synth(trace.SynthOptions{Apps: 40, Days: 1, Seed: 1})
	_, sel, test, err := Ranges(tr.Bins, 1.0/3, 1.0/3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := EvalConfig{Select: sel, Test: test, Families: []string{FamilyReactive, FamilyKeepAlive, FamilyOurs},
		KeepAlives: []time.Duration{5 * time.Minute, 10 * time.Minute}, Thresholds: []float64{0.3, 0.6},
		SelectForecaster: constForecaster{}, TestForecaster: constForecaster{}, Bootstrap: 200}
	rep, err := Evaluate(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 2 || len(rep.Chosen) != 3 {
		t.Fatalf("differences %+v for chosen %+v", rep.Differences, rep.Chosen)
	}
	ours := rep.Chosen[2]
	for i, d := range rep.Differences {
		c := rep.Chosen[i]
		if d.Family != c.Family || d.Setting != c.Policy || d.Ours != ours.Policy || math.Abs(d.Estimate-(ours.ColdP75-c.ColdP75)) > 1e-12 ||
			!(d.CI90[0] <= d.CI90[1]) || math.IsNaN(d.CI90[0]) {
			t.Errorf("difference %+v against ours %s p75 %v and %s p75 %v", d, ours.Policy, ours.ColdP75, c.Policy, c.ColdP75)
		}
	}
	if again, err := rep.differences(cfg.ColdRule, cfg.Bootstrap); err != nil || fmt.Sprint(again) != fmt.Sprint(rep.Differences) {
		t.Errorf("again: %+v (%v), first %+v", again, err, rep.Differences)
	}
	var js, md bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil || !strings.Contains(js.String(), `"p75_difference_vs": [`) || !strings.Contains(js.String(), `"ci90": [`) {
		t.Errorf("json: %v", err)
	}
	if err := WriteMarkdown(&md, rep); err != nil || !strings.Contains(md.String(), "| vs family | its setting | p75: ours − family | 90% CI |") {
		t.Errorf("markdown: %v\n%s", err, md.String())
	}
	// Runs over different ranges cannot be paired.
	if _, _, err := pairedRates(rep.Runs[0], rep.Runs[len(rep.Runs)-1], ColdFirst); err == nil || !strings.Contains(err.Error(), "cannot be paired") {
		t.Errorf("select against test run: %v", err)
	}
	// Without ours there is nothing to compare.
	cfg.Families = []string{FamilyReactive, FamilyKeepAlive}
	if rep, err := Evaluate(tr, cfg); err != nil || rep.Differences != nil {
		t.Errorf("without ours: %+v, %v", rep.Differences, err)
	}
}

func TestBadInput(t *testing.T) {
	tr := mk(10, appSpec{100, []int{1}})
	if _, err := Split(10, 1); err == nil || !strings.Contains(err.Error(), "between 0 and 1") {
		t.Errorf("Split(10, 1): %v", err)
	}
	if _, _, _, err := Ranges(10, 0.5, 0.5); err == nil || !strings.Contains(err.Error(), "leave a test range") {
		t.Errorf("Ranges without a test range: %v", err)
	}
	if _, _, _, err := Ranges(10, 0.05, 0.05); err == nil || !strings.Contains(err.Error(), "at least one") {
		t.Errorf("Ranges with an empty train range: %v", err)
	}
	if tr, sel, te, err := Ranges(1440, 1.0/3, 1.0/3); err != nil || tr != (Range{0, 480}) || sel != (Range{480, 960}) || te != (Range{960, 1440}) {
		t.Errorf("Ranges(1440, 1/3, 1/3) = %v %v %v, %v", tr, sel, te, err)
	}
	if _, err := Run(tr, Reactive{}, Options{Range: Range{5, 10}}); !errors.Is(err, ErrNoRequests) {
		t.Errorf("range without requests: %v", err)
	}
	if _, err := Run(tr, Reactive{}, Options{Range: Range{10, 10}}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty range: %v", err)
	}
	if _, err := ParseFamilies("reactive,lru"); err == nil || !strings.Contains(err.Error(), `unknown policy "lru"`) {
		t.Errorf("unknown policy: %v", err)
	}
	if f, err := ParseFamilies(" Oracle , reactive,oracle"); err != nil || strings.Join(f, ",") != "oracle,reactive" {
		t.Errorf("ParseFamilies = %v, %v", f, err)
	}
	if _, err := ParseColdRule("some"); err == nil || !strings.Contains(err.Error(), `"first"`) {
		t.Errorf("unknown cold rule: %v", err)
	}
	two := mk(10, appSpec{100, []int{3, 8}})
	if _, err := Evaluate(two, EvalConfig{Select: Range{2, 5}, Test: Range{5, 10}, Families: []string{FamilyOurs}}); err == nil || !strings.Contains(err.Error(), "demand model") {
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

// windowedForecaster reads a fixed window, like the demand model.
type windowedForecaster struct {
	fakeForecaster
	window int
}

func (w *windowedForecaster) HistoryBins() int { return w.window }

// Ours keeps each application's activity bin by bin; it must be what
// policy.ActivityOf says of the window the loop would hold.
func TestOursActivityIsTheWindowsActivity(t *testing.T) {
	tr := trace.Synth(trace.SynthOptions{Apps: 20, Days: 1, Seed: 9})
	f := &windowedForecaster{fakeForecaster: fakeForecaster{probs: map[int][]float64{}}, window: 90}
	ours := NewOurs(NewForecastCache(f), policy.Default())
	checked := 0
	ours.Record = func(b, app int, _ float64, _ policy.Action) {
		counts := tr.Apps[app].Counts[max(0, b-90):b]
		win := make([]float64, len(counts))
		for k, c := range counts {
			win[k] = float64(c)
		}
		if got, want := ours.act[app], policy.ActivityOf(win); got != want {
			t.Fatalf("bin %d app %d: activity %+v, want %+v", b, app, got, want)
		}
		checked++
	}
	if _, err := Run(tr, ours, Options{Range: Range{0, tr.Bins}}); err != nil {
		t.Fatal(err)
	}
	if checked != 20*tr.Bins {
		t.Fatalf("checked %d decisions", checked)
	}
}

// noisyForecaster knows nothing: a chance drawn at random each bin.
type noisyForecaster struct{ seed uint64 }

func (f noisyForecaster) Forecast(b int, h *History) ([]float64, error) {
	rng := rand.New(rand.NewPCG(f.seed, uint64(b)))
	p := make([]float64, len(h.Env().Apps))
	for i := range p {
		p[i] = rng.Float64() * 0.2
	}
	return p, nil
}

// On a fleet where the forecast cannot help (requests at random times, a
// forecaster that knows nothing), ours falls back to the fixed keep-alive:
// that keep-alive is one of its settings, with the very same figures, and
// the setting chosen on the select range is no worse than it there.
func TestOursFallsBackToTheKeepAliveWherePredictionCannotHelp(t *testing.T) {
	m, err := trace.ParseMix("rare=0.6,bursty=0.4")
	if err != nil {
		t.Fatal(err)
	}
	tr := trace.Synth(trace.SynthOptions{Apps: 60, Days: 3, Seed: 21, Mix: m})
	fc := noisyForecaster{seed: 3}
	rep, err := Evaluate(tr, EvalConfig{Select: Range{1440, 2880}, Test: Range{2880, 4320},
		Families: []string{FamilyKeepAlive, FamilyOurs}, KeepAlives: []time.Duration{ReferenceKeepAlive},
		Thresholds: []float64{0.01, 0.05, 0.2}, Floors: []int{0, 2}, SelectForecaster: fc, TestForecaster: fc, Bootstrap: -1})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Summary{}
	for _, r := range rep.Rows {
		by[r.Range+"/"+r.Policy] = r
	}
	for _, rg := range []string{RangeSelect, RangeTest} {
		ka, fb := by[rg+"/keepalive-10m"], by[rg+"/ours-1-k10"]
		if ka.Requests == 0 || ka.ColdRequests != fb.ColdRequests || ka.WastedMBSec != fb.WastedMBSec || ka.ColdP75 != fb.ColdP75 {
			t.Errorf("%s: ours at threshold 1 %+v differs from the keep-alive %+v", rg, fb, ka)
		}
	}
	var sel Summary
	for _, s := range rep.Selection {
		if s.Family == FamilyOurs {
			sel = s
		}
	}
	ka := by[RangeSelect+"/keepalive-10m"]
	if sel.Policy == "" || sel.WastePct > 100+1e-9 || sel.ColdP75 > ka.ColdP75 {
		t.Errorf("chosen %s: p75 %v at %v%% waste, the keep-alive %v at 100%%", sel.Policy, sel.ColdP75, sel.WastePct, ka.ColdP75)
	}
}

// A preparation ready only after its bin's requests arrived serves none of
// them: at a whole bin late, every prepared bin's first request is cold.
func TestReadySecondsMakesLatePreparationsCold(t *testing.T) {
	tr := mk(12, appSpec{mem: 50, at: []int{3, 6, 9}})
	oracle := func() Policy { return &Oracle{} }
	on, err := Run(tr, oracle(), Options{Range: Range{1, 12}})
	if err != nil {
		t.Fatal(err)
	}
	late, err := Run(tr, oracle(), Options{Range: Range{1, 12}, ReadySeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if on.Apps[0].ColdFirst != 0 || late.Apps[0].ColdFirst != 3 || late.Apps[0].Preparations != on.Apps[0].Preparations {
		t.Errorf("on time %+v, a bin late %+v: want 0 and 3 cold, the same preparations", on.Apps[0], late.Apps[0])
	}
	// Part of a bin late: some first requests are cold, the same ones for
	// every policy (a fixed draw per application and bin).
	a, _ := Run(tr, oracle(), Options{Range: Range{1, 12}, ReadySeconds: 30})
	b, _ := Run(tr, oracle(), Options{Range: Range{1, 12}, ReadySeconds: 30})
	if a.Apps[0].ColdFirst != b.Apps[0].ColdFirst || a.Apps[0].ColdFirst > 3 {
		t.Errorf("half a bin late: %d then %d cold", a.Apps[0].ColdFirst, b.Apps[0].ColdFirst)
	}
}

// The trust setting is swept like the threshold and the floor: each value
// is a setting of its own (named "-t<gaps>" when not the default's), run
// with that trust, and the keep-alive setting (threshold 1) appears once.
func TestEvaluateSweepsTheTrustSetting(t *testing.T) {
	m, err := trace.ParseMix("rare=0.5,session=0.5")
	if err != nil {
		t.Fatal(err)
	}
	tr := trace.Synth(trace.SynthOptions{Apps: 40, Days: 3, Seed: 7, Mix: m})
	fc := noisyForecaster{seed: 5}
	rep, err := Evaluate(tr, EvalConfig{Select: Range{1440, 2880}, Test: Range{2880, 4320},
		Families: []string{FamilyOurs}, Thresholds: []float64{0.05}, Floors: []int{0}, TrustGaps: []int{0, policy.Default().TrustGaps},
		SelectForecaster: fc, TestForecaster: fc, Bootstrap: -1})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Summary{}
	for _, r := range rep.Rows {
		if r.Range == RangeSelect {
			by[r.Policy] = r
		}
	}
	trusting, waiting := by["ours-0.05-t0"], by["ours-0.05"] // the default's wait has no suffix
	if len(by) != 3 || trusting.Requests == 0 || by["ours-1-k10"].Requests == 0 {
		t.Fatalf("select rows %v: want ours-0.05-t0, ours-0.05 and ours-1-k10", by)
	}
	// Trusting every forecast at once decides differently from waiting for
	// gaps on a fleet of sparse applications: the setting reached Decide.
	if trusting.WastedMBSec == waiting.WastedMBSec && trusting.ColdRequests == waiting.ColdRequests {
		t.Errorf("trust 0 %+v and trust 5 %+v decided alike", trusting, waiting)
	}
}
