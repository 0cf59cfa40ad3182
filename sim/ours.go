package sim

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/forewarm/forewarm/trace"
)

// Forecaster gives, at the start of bin b, every application's probability
// of at least one request in bins [b, b+Horizon()), from the counts of bins
// < b only. The production demand model sits behind it (see DemandForecaster).
type Forecaster interface {
	Horizon() int
	Forecast(b int, h *History) ([]float64, error)
}

// History is what has been observed of a run so far: bins [0, Now()).
// It is a window onto the trace that Run advances after each Observe, so
// the past costs no copy and the future cannot be read.
type History struct {
	env Env
	tr  *trace.Trace
	now int
}

// Env is the run's description.
func (h *History) Env() Env { return h.env }

// Now is the number of observed bins.
func (h *History) Now() int { return h.now }

// Counts is app i's observed counts, bins [0, Now()). Do not modify.
func (h *History) Counts(i int) []uint32 { return h.tr.Apps[i].Counts[:h.now:h.now] }

// ForecastCache memoises a Forecaster's answers per bin, so a threshold
// sweep asks the model once per bin. The probabilities do not depend on the
// policy (they read observed counts only), so every Ours sharing a cache on
// the same trace may reuse them. Not for use across traces.
type ForecastCache struct {
	F Forecaster

	mu    sync.Mutex
	probs map[int][]float64
}

// NewForecastCache wraps f.
func NewForecastCache(f Forecaster) *ForecastCache {
	return &ForecastCache{F: f, probs: map[int][]float64{}}
}

func (c *ForecastCache) get(b int, h *History) ([]float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.probs[b]; ok {
		if len(p) != len(h.env.Apps) {
			return nil, fmt.Errorf("forecast cache holds %d apps for bin %d, the run has %d: one cache per trace", len(p), b, len(h.env.Apps))
		}
		return p, nil
	}
	p, err := c.F.Forecast(b, h)
	if err != nil {
		return nil, err
	}
	if len(p) != len(h.env.Apps) {
		return nil, fmt.Errorf("forecaster returned %d probabilities for %d apps", len(p), len(h.env.Apps))
	}
	c.probs[b] = p
	return p, nil
}

// Ours is Forewarm's policy as the prediction loop (workflows/loop.go)
// runs it: at every bin, when an application's probability of a request
// within the horizon reaches Threshold and no lease covers the bin after
// this one, it prepares a lease for the horizon (lease TTL = horizon), so
// a lease is renewed during its last bin while the probability stays high.
// A request claims the lease, which is released after that bin; the next
// bin's forecast decides whether to prepare again. Every lease is a
// preparation with its shadow request, as in production.
type Ours struct {
	Threshold float64
	Cache     *ForecastCache

	hist   *History
	h      int
	until  []int // lease live for bins < until
	leases []int // leases prepared per app in the evaluation range
}

// NewOurs is our policy at threshold th over a shared forecast cache.
func NewOurs(cache *ForecastCache, th float64) *Ours { return &Ours{Threshold: th, Cache: cache} }

func (p *Ours) Name() string { return "ours-" + strconv.FormatFloat(p.Threshold, 'g', -1, 64) }

func (p *Ours) Start(env Env) error {
	if !(p.Threshold >= 0 && p.Threshold <= 1) {
		return fmt.Errorf("threshold %v: must be in [0, 1]", p.Threshold)
	}
	if p.Cache == nil {
		return fmt.Errorf("no forecaster")
	}
	p.h = p.Cache.F.Horizon()
	if p.h < 1 {
		return fmt.Errorf("forecaster horizon %d bins: must be >= 1", p.h)
	}
	p.hist = nil
	p.until = make([]int, len(env.Apps))
	p.leases = make([]int, len(env.Apps))
	return nil
}

// UseHistory receives the observed counts from Run.
func (p *Ours) UseHistory(h *History) { p.hist = h }

func (p *Ours) Plan(b int, live []bool) error {
	if p.hist == nil {
		return fmt.Errorf("no history: run the policy with sim.Run")
	}
	probs, err := p.Cache.get(b, p.hist)
	if err != nil {
		return err
	}
	for i, pr := range probs {
		if pr >= p.Threshold && p.until[i] <= b+1 {
			p.until[i] = b + p.h
			p.leases[i]++
		}
		live[i] = b < p.until[i]
	}
	return nil
}

func (p *Ours) Observe(b int, counts []uint32) {
	for i, c := range counts {
		if c > 0 && b < p.until[i] {
			p.until[i] = b + 1 // claimed: released after this bin
		}
	}
}

// Preparations reports the leases prepared per application.
func (p *Ours) Preparations() []int { return p.leases }
