package sim

import (
	"fmt"
	"math"
	"time"
)

// Histogram is the hybrid histogram policy of Shahrad et al., "Serverless
// in the Wild" (USENIX ATC 2020), §4.2, on the bin grid.
//
// Per application it keeps a histogram of idle times (IT): for two
// consecutive bins with requests t1 < t2, IT = (t2 - t1 - 1) bins, the
// idle bins between them, in 1-minute histogram bins over a 4-hour range.
// After every bin t with requests it picks a window of bins t+1+k to hold
// the application, k in [from, to):
//
//   - representative histogram (CV of its bin counts >= 2): pre-warm at
//     the 5th percentile minus 10%, keep alive to the 99th percentile plus
//     10%: from = floor(0.9 × head), to = ceil(1.1 × (tail + 1)) minutes,
//     head and tail being the histogram bins holding those percentiles (a
//     bin i covers IT in [i, i+1) minutes);
//   - not representative (fewer than MinIdleTimes ITs observed, or CV < 2):
//     the paper's standard keep-alive fallback, no pre-warm and keep-alive
//     for the whole histogram range (Fallback, 4 hours by default). The
//     paper trusts a histogram only once it has seen enough idle times; 10
//     is our reading of that (one idle time always has a high CV);
//   - too many ITs beyond the range (at least half of them, "OOB"): the
//     paper forecasts the next IT with ARIMA. Simplification: we forecast
//     it as the mean of the application's last 10 ITs (an ARIMA(0,0,0)
//     model with a moving mean), then pre-warm at 85% of it and keep
//     alive to 115% (the paper's 15% margin on both sides).
//
// Windows are recomputed after every bin with requests, from everything
// observed so far (training bins warm the histograms up; during the
// evaluation they keep learning from the past only, as in the paper).
type Histogram struct {
	Range    time.Duration // histogram range; 4h
	Fallback time.Duration // keep-alive when not representative; Range when 0
	HistBin  time.Duration // histogram bin width; 1m
	CVMin    float64       // representative when CV >= CVMin; 2
	MinITs   int           // idle times needed before the histogram (or the forecast) is trusted; 10
	OOBMax   float64       // use the IT forecast when the OOB share >= OOBMax; 0.5
	Margin   float64       // histogram margin; 0.1
	ARIMA    float64       // forecast margin; 0.15

	bin         time.Duration
	binsPerHist float64 // trace bins per histogram bin
	apps        []histApp
}

type histApp struct {
	counts   []uint32 // per histogram bin
	n        uint32   // ITs in range
	sumSq    uint64   // Σ counts², for the CV
	oob      uint32   // ITs beyond the range
	recent   [10]float64
	nRecent  int
	last     int // last bin with requests; < 0 when none
	from, to int // live for bins last+1+k, from <= k < to
}

// NewHistogram is the policy with the paper's parameters.
func NewHistogram() *Histogram {
	return &Histogram{Range: 4 * time.Hour, HistBin: time.Minute, CVMin: 2, MinITs: 10, OOBMax: 0.5, Margin: 0.1, ARIMA: 0.15}
}

func (p *Histogram) Name() string { return "histogram-" + shortDuration(p.Range) }

func (p *Histogram) Start(env Env) error {
	if p.Range <= 0 || p.HistBin <= 0 || p.Range < p.HistBin {
		return fmt.Errorf("histogram: range %v and bin %v must be positive, range >= bin", p.Range, p.HistBin)
	}
	if p.Fallback == 0 {
		p.Fallback = p.Range
	}
	p.bin = env.Bin
	p.binsPerHist = float64(p.HistBin) / float64(env.Bin)
	nb := int(p.Range / p.HistBin)
	p.apps = make([]histApp, len(env.Apps))
	for i := range p.apps {
		p.apps[i] = histApp{counts: make([]uint32, nb), last: -1 << 30}
	}
	return nil
}

func (p *Histogram) Plan(b int, live []bool) error {
	for i := range p.apps {
		a := &p.apps[i]
		k := b - a.last - 1
		live[i] = k >= a.from && k < a.to
	}
	return nil
}

func (p *Histogram) Observe(b int, counts []uint32) {
	for i, c := range counts {
		if c == 0 {
			continue
		}
		a := &p.apps[i]
		if a.last >= 0 {
			p.add(a, b-a.last-1)
		}
		a.last = b
		a.from, a.to = p.window(a)
	}
}

// add records an idle time of it trace bins.
func (p *Histogram) add(a *histApp, it int) {
	itHist := float64(it) / p.binsPerHist // in histogram bins
	a.recent[a.nRecent%len(a.recent)] = itHist
	a.nRecent++
	h := int(itHist)
	if h >= len(a.counts) {
		a.oob++
		return
	}
	c := uint64(a.counts[h])
	a.sumSq += 2*c + 1 // (c+1)² - c²
	a.counts[h]++
	a.n++
}

// cv is the coefficient of variation of the histogram's bin counts.
func (a *histApp) cv() float64 {
	if a.n == 0 {
		return 0
	}
	nb := float64(len(a.counts))
	mean := float64(a.n) / nb
	variance := (float64(a.sumSq) - nb*mean*mean) / (nb - 1)
	return math.Sqrt(max(variance, 0)) / mean
}

// percentile is the first histogram bin whose cumulative share reaches q.
func (a *histApp) percentile(q float64) int {
	var cum uint32
	for i, c := range a.counts {
		cum += c
		if float64(cum) >= q*float64(a.n) {
			return i
		}
	}
	return len(a.counts) - 1
}

// window is [from, to) in trace bins after the last request.
func (p *Histogram) window(a *histApp) (from, to int) {
	total := a.n + a.oob
	switch {
	case int(total) < p.MinITs:
		return 0, binsCeil(p.Fallback, p.bin)
	case total > 0 && float64(a.oob) >= p.OOBMax*float64(total):
		k := min(a.nRecent, len(a.recent))
		sum := 0.0
		for _, v := range a.recent[:k] {
			sum += v
		}
		pred := sum / float64(k) * p.binsPerHist
		from = int(math.Floor((1 - p.ARIMA) * pred))
		return from, max(from+1, int(math.Ceil((1+p.ARIMA)*pred)))
	case a.cv() >= p.CVMin:
		head, tail := a.percentile(0.05), a.percentile(0.99)
		from = int(math.Floor((1 - p.Margin) * float64(head) * p.binsPerHist))
		to = int(math.Ceil((1 + p.Margin) * float64(tail+1) * p.binsPerHist))
		return from, to
	default:
		return 0, binsCeil(p.Fallback, p.bin)
	}
}
