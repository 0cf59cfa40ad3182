package sim

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/trace"
)

// Forecaster gives, at the start of bin b, every application's probability
// of at least one request in bin b, from the counts of bins < b only. The
// production demand model sits behind it (see DemandForecaster).
type Forecaster interface {
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

// Cached is the forecast for bin b if it was made.
func (c *ForecastCache) Cached(b int) ([]float64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.probs[b]
	return p, ok
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

// Windowed is a Forecaster that reads a fixed window of each
// application's history; the policy reads the same window (the loop keeps
// as many bins).
type Windowed interface {
	HistoryBins() int
}

// HistoryBins is the window of the demand model's features.
func (d *DemandForecaster) HistoryBins() int { return d.Model.Spec().HistoryBins() }

// Ours is Forewarm's policy: the demand model's chance of a request in each
// bin, decided by package policy's one function (policy.Config.Decide)
// exactly as the prediction loop decides it, from the application's memory,
// whether it holds an instance as the bin begins and its activity over the
// model's window. An instance is held after a bin in which it was live or
// served requests, so keeping the instance that just served is a Keep, not
// a new preparation.
type Ours struct {
	Config policy.Config
	Cache  *ForecastCache
	// Record, when set, is called with every decision (tests compare them
	// with the prediction loop's).
	Record func(b, app int, p float64, a policy.Action)

	hist    *History
	env     Env
	window  int               // bins of history the policy reads; 0: all
	act     []policy.Activity // per app, over the window before the next bin
	held    []bool            // holds an instance as the next bin begins
	live    []bool            // the last planned bin's decision
	planned int               // last planned bin, -1 before the first
}

// NewOurs is our policy with cfg (its threshold is the swept parameter)
// over a shared forecast cache.
func NewOurs(cache *ForecastCache, cfg policy.Config) *Ours { return &Ours{Config: cfg, Cache: cache} }

// Name is "ours-<threshold>", then "-k<floor>" with a keep-alive floor and
// "-t<gaps>" when the trust setting is not the default's.
func (p *Ours) Name() string {
	name := "ours-" + strconv.FormatFloat(p.Config.Threshold, 'g', -1, 64)
	if p.Config.KeepAliveBins > 0 {
		name += "-k" + strconv.Itoa(p.Config.KeepAliveBins)
	}
	if p.Config.Threshold < 1 && p.Config.TrustGaps != policy.Default().TrustGaps {
		name += "-t" + strconv.Itoa(p.Config.TrustGaps)
	}
	return name
}

func (p *Ours) Start(env Env) error {
	if err := p.Config.Validate(); err != nil {
		return err
	}
	if p.Cache == nil {
		return fmt.Errorf("no forecaster")
	}
	p.hist, p.env = nil, env
	p.window = 0
	if w, ok := p.Cache.F.(Windowed); ok {
		p.window = w.HistoryBins()
	}
	p.act = make([]policy.Activity, len(env.Apps))
	p.held = make([]bool, len(env.Apps))
	p.live = make([]bool, len(env.Apps))
	p.planned = -1
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
	path := []float64{0}
	for i, pr := range probs {
		path[0] = pr
		d := p.Config.Decide(policy.Situation{App: policy.App{MemoryMB: p.env.Apps[i].MemoryMB}, Held: p.held[i],
			Activity: p.act[i], Path: path}, p.env.Bin, 1)
		live[i] = d.Action.Holds()
		if p.Record != nil {
			p.Record(b, i, pr, d.Action)
		}
	}
	copy(p.live, live)
	p.planned = b
	return nil
}

// Observe records bin b: what is held as the next bin begins, and each
// application's activity over the window that then ends with b.
func (p *Ours) Observe(b int, counts []uint32) {
	planned := p.planned == b
	for i, c := range counts {
		p.held[i] = c > 0 || (planned && p.live[i])
		a := &p.act[i]
		if p.window > 0 && b >= p.window {
			if old := p.hist.tr.Apps[i].Counts[b-p.window]; old > 0 {
				a.Requests -= float64(old)
				a.ActiveBins--
			}
		} else {
			a.Window++
		}
		a.Idle = min(a.Idle+1, a.Window)
		if c > 0 {
			a.Requests += float64(c)
			a.ActiveBins++
			a.Idle = 0
		}
	}
}
