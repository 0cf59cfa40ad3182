package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// KeepAlive keeps an application's instance for a fixed time after every
// bin with requests: live in bins t+1 … t+K after requests in bin t, K =
// ceil(Keep / bin width). What AWS Lambda (10 min) and Azure Functions
// (20 min) did at the time of Shahrad et al.
type KeepAlive struct {
	Keep time.Duration

	k    int
	last []int // last bin with requests, per app; < 0 when none yet
}

// NewKeepAlive is a fixed keep-alive of keep.
func NewKeepAlive(keep time.Duration) *KeepAlive { return &KeepAlive{Keep: keep} }

func (p *KeepAlive) Name() string { return "keepalive-" + shortDuration(p.Keep) }

func (p *KeepAlive) Start(env Env) error {
	if p.Keep <= 0 {
		return fmt.Errorf("keep-alive %v: must be positive", p.Keep)
	}
	p.k = binsCeil(p.Keep, env.Bin)
	p.last = make([]int, len(env.Apps))
	for i := range p.last {
		p.last[i] = -1 << 30
	}
	return nil
}

func (p *KeepAlive) Plan(b int, live []bool) error {
	for i, t := range p.last {
		live[i] = b-t <= p.k
	}
	return nil
}

func (p *KeepAlive) Observe(b int, counts []uint32) {
	for i, c := range counts {
		if c > 0 {
			p.last[i] = b
		}
	}
}

// binsCeil is d in bins, rounded up, at least 1.
func binsCeil(d, bin time.Duration) int {
	return max(1, int((d+bin-1)/bin))
}

// shortDuration prints 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return d.String()
	}
}

// PerAppMinGaps is how many gaps (spans between two consecutive bins with
// requests, empty ones included) an application's history must hold before
// the per-application keep-alive judges it by them; until then it keeps the
// fixed ReferenceKeepAlive, as a platform would for a new application.
const PerAppMinGaps = 5

// PerAppRechoose is how often the per-application keep-alive re-chooses
// every application's window from all the bins observed so far.
const PerAppRechoose = time.Hour

// PerAppKeepAlive gives each application its own fixed keep-alive, the one
// that would have served it best over all of its history so far, re-chosen
// every PerAppRechoose as the history grows (online: each choice sees only
// bins already observed); an application with fewer than PerAppMinGaps
// gaps to judge by keeps the 10-minute ReferenceKeepAlive. The strongest
// simple policy a platform team would try after one global keep-alive.
// "Best" trades cold starts against idle memory at the same exchange rate
// as our policy: one cold start is worth ReferenceMB × bin / Threshold MB·s.
// Candidates are 0 (no keep-alive) and KeepAlives. The gaps are kept per
// application as counts and idle-bin totals between consecutive candidate
// windows, so a re-choice costs O(candidates) per application whatever the
// length of the history, and gives what a scan of the history would.
type PerAppKeepAlive struct {
	Threshold   float64
	ReferenceMB float64
	KeepAlives  []time.Duration

	env      Env
	cands    []int   // candidate windows in bins: 0 and KeepAlives, ascending, distinct
	bucketOf []int   // bucketOf[g]: the candidate interval a gap of g < max(cands) bins falls in
	every    int     // PerAppRechoose in bins
	fallback int     // ReferenceKeepAlive in bins
	next     int     // the bin to re-choose at
	now      int     // bins observed
	k        []int   // chosen keep-alive per app, bins; nil until the first Plan
	last     []int   // last bin with requests per app; < 0 when none yet
	gaps     []int   // gaps observed per app
	cnt, sum []int32 // per app × candidate interval j (cands[j] <= g < cands[j+1]): gaps, and their idle bins
}

// NewPerAppKeepAlive is the policy at exchange-rate threshold th.
func NewPerAppKeepAlive(th, referenceMB float64, kas []time.Duration) *PerAppKeepAlive {
	return &PerAppKeepAlive{Threshold: th, ReferenceMB: referenceMB, KeepAlives: kas}
}

func (p *PerAppKeepAlive) Name() string {
	return "perapp-keepalive-" + strconv.FormatFloat(p.Threshold, 'g', -1, 64)
}

func (p *PerAppKeepAlive) Start(env Env) error {
	if !(p.Threshold > 0 && p.Threshold <= 1) || !(p.ReferenceMB > 0) || len(p.KeepAlives) == 0 {
		return fmt.Errorf("per-app keep-alive: threshold %v must be in (0, 1], reference %v MB > 0, and keep-alives given", p.Threshold, p.ReferenceMB)
	}
	p.env, p.k, p.now, p.next = env, nil, 0, 0
	p.cands = []int{0}
	for _, d := range p.KeepAlives {
		p.cands = append(p.cands, binsCeil(d, env.Bin))
	}
	slices.Sort(p.cands)
	p.cands = slices.Compact(p.cands)
	p.bucketOf = make([]int, p.cands[len(p.cands)-1])
	for j := range len(p.cands) - 1 {
		for g := p.cands[j]; g < p.cands[j+1]; g++ {
			p.bucketOf[g] = j
		}
	}
	p.every = binsCeil(PerAppRechoose, env.Bin)
	p.fallback = binsCeil(ReferenceKeepAlive, env.Bin)
	n, nb := len(env.Apps), len(p.cands)
	p.last = make([]int, n)
	for i := range p.last {
		p.last[i] = -1 << 30
	}
	p.gaps = make([]int, n)
	p.cnt = make([]int32, n*nb)
	p.sum = make([]int32, n*nb)
	return nil
}

// choose picks every application's keep-alive from the bins observed so far.
func (p *PerAppKeepAlive) choose() {
	sec := p.env.Bin.Seconds()
	cold := p.ReferenceMB * sec / p.Threshold // MB·s one cold start is worth
	nb := len(p.cands)
	if p.k == nil {
		p.k = make([]int, len(p.env.Apps))
	}
	for i, a := range p.env.Apps {
		if p.gaps[i] < PerAppMinGaps {
			p.k[i] = p.fallback
			continue
		}
		trailing := p.now - p.last[i] - 1 // idle bins since the last request
		idle := a.MemoryMB * sec
		cnt, sum := p.cnt[i*nb:(i+1)*nb], p.sum[i*nb:(i+1)*nb]
		// After a request the instance lives k bins: a gap of g idle bins
		// is bridged (g bins idle) when g < k, else it costs k idle bins
		// and a cold start. For k = cands[j] the bridged gaps are those of
		// the intervals before j.
		bridgedIdle, bridged := 0, 0
		best, bestCost := 0, math.Inf(1)
		for j, k := range p.cands {
			missed := p.gaps[i] - bridged
			cost := float64(bridgedIdle+k*missed+min(k, trailing))*idle + float64(missed)*cold
			if cost < bestCost {
				best, bestCost = k, cost
			}
			bridgedIdle += int(sum[j])
			bridged += int(cnt[j])
		}
		p.k[i] = best
	}
}

func (p *PerAppKeepAlive) Plan(b int, live []bool) error {
	if p.k == nil || b >= p.next {
		p.choose()
		p.next = b + p.every
	}
	for i, t := range p.last {
		live[i] = p.k[i] > 0 && b-t <= p.k[i]
	}
	return nil
}

func (p *PerAppKeepAlive) Observe(b int, counts []uint32) {
	nb := len(p.cands)
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if t := p.last[i]; t >= 0 {
			g := b - t - 1
			j := nb - 1
			if g < len(p.bucketOf) {
				j = p.bucketOf[g]
			}
			p.cnt[i*nb+j]++
			p.sum[i*nb+j] += int32(g)
			p.gaps[i]++
		}
		p.last[i] = b
	}
	p.now = b + 1
}
