package sim

import (
	"fmt"
	"math"
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

// PerAppKeepAlive gives each application its own fixed keep-alive, the one
// that would have served it best over its history before the counted range:
// the strongest simple policy a platform team would try after one global
// keep-alive. "Best" trades cold starts against idle memory at the same
// exchange rate as our policy: one cold start is worth ReferenceMB × bin /
// Threshold MB·s. Candidates are 0 (no keep-alive) and KeepAlives.
type PerAppKeepAlive struct {
	Threshold   float64
	ReferenceMB float64
	KeepAlives  []time.Duration

	env  Env
	hist *History
	k    []int // chosen keep-alive per app, bins; nil until the first Plan
	last []int
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
	p.env, p.k = env, nil
	p.last = make([]int, len(env.Apps))
	for i := range p.last {
		p.last[i] = -1 << 30
	}
	return nil
}

// UseHistory receives the observed counts from Run.
func (p *PerAppKeepAlive) UseHistory(h *History) { p.hist = h }

// choose picks every application's keep-alive from the bins observed so far.
func (p *PerAppKeepAlive) choose() {
	sec := p.env.Bin.Seconds()
	cold := p.ReferenceMB * sec / p.Threshold // MB·s one cold start is worth
	cands := []int{0}
	for _, d := range p.KeepAlives {
		cands = append(cands, binsCeil(d, p.env.Bin))
	}
	p.k = make([]int, len(p.env.Apps))
	var gaps []int
	for i, a := range p.env.Apps {
		counts := p.hist.Counts(i)
		gaps = gaps[:0]
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
		trailing := -1
		if last >= 0 {
			trailing = len(counts) - last - 1
		}
		idle := a.MemoryMB * sec
		best, bestCost := 0, math.Inf(1)
		for _, k := range cands {
			// After a request the instance lives k bins: a gap of g idle
			// bins is bridged (g bins idle) when g < k, else it costs k idle
			// bins and a cold start.
			cost := 0.0
			for _, g := range gaps {
				if g < k {
					cost += float64(g) * idle
				} else {
					cost += float64(k)*idle + cold
				}
			}
			if trailing >= 0 {
				cost += float64(min(k, trailing)) * idle
			}
			if cost < bestCost {
				best, bestCost = k, cost
			}
		}
		p.k[i] = best
	}
}

func (p *PerAppKeepAlive) Plan(b int, live []bool) error {
	if p.hist == nil {
		return fmt.Errorf("per-app keep-alive: no history: run the policy with sim.Run")
	}
	if p.k == nil {
		p.choose()
	}
	for i, t := range p.last {
		live[i] = p.k[i] > 0 && b-t <= p.k[i]
	}
	return nil
}

func (p *PerAppKeepAlive) Observe(b int, counts []uint32) {
	for i, c := range counts {
		if c > 0 {
			p.last[i] = b
		}
	}
}
