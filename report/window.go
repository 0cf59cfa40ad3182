package report

import (
	"math"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
)

// Grid maps a live replay onto the bins of the trace it replays: live bin
// k starts at LiveStart + k·LiveBin and stands for trace bin k of the
// window (which starts at TraceStart, bins of TraceBin). Live figures are
// judged on it exactly as the simulator judges the trace, and memory-time
// is counted on the trace's clock, so the two can be compared.
type Grid struct {
	TraceStart time.Time
	TraceBin   time.Duration
	LiveStart  time.Time
	LiveBin    time.Duration
	Bins       int
}

// BinOf is the bin a live time falls in (may be outside [0, Bins)).
func (g Grid) BinOf(t time.Time) int {
	return int(math.Floor(float64(t.Sub(g.LiveStart)) / float64(g.LiveBin)))
}

// LiveTime is the start of bin k on the live clock.
func (g Grid) LiveTime(k int) time.Time { return g.LiveStart.Add(time.Duration(k) * g.LiveBin) }

// scale converts live seconds to trace seconds.
func (g Grid) scale() float64 { return float64(g.TraceBin) / float64(g.LiveBin) }

// Served is one request of a replay, dated by its arrival.
type Served struct {
	App  string
	At   time.Time
	Warm bool
}

// Held is an instance an application held on a host, on the live clock.
type Held struct {
	ID       string
	App      string
	MemoryMB float64
	From, To time.Time
}

// Comparable are the figures a live run and its simulation share, with the
// same names in JSON. Memory-time is on the trace's clock.
type Comparable struct {
	Requests    int     `json:"requests"`
	Dropped     int     `json:"dropped"`
	WarmShare   float64 `json:"warm_share"`
	ColdP75     float64 `json:"cold_rate_p75"`
	ColdOverall float64 `json:"cold_rate_overall"`
	WastedMBs   float64 `json:"wasted_mb_s"`
	// WastePct is WastedMBs against the simulated 10-minute keep-alive on
	// the same applications and window; nil when unknown.
	WastePct *float64 `json:"waste_pct_of_keepalive10,omitempty"`
}

// AppFigures are one application's figures in a window.
type AppFigures struct {
	App       string  `json:"app"`
	Requests  int     `json:"requests"`
	Cold      int     `json:"cold"`
	WastedMBs float64 `json:"wasted_mb_s"`
}

// Series are a window's per-bin figures, for the plot.
type Series struct {
	Apps         []AppFigures // per application, in the order given
	Warm, Cold   []float64    // requests per bin
	UsedMB       []float64    // memory held by applications with a request in the bin
	IdleMB       []float64    // memory held by applications without one
	HeldMBByBin  map[string][]float64
	RequestByBin map[string][]float64
}

// Live judges a replay on the grid: per application, its requests in each
// bin and the share of each bin its instances were held; a held bin with no
// request is idle memory-time, a request not served warm is cold. Requests
// and instances outside the window are left out; dropped is carried.
func Live(g Grid, apps []string, served []Served, held []Held, dropped int) (Comparable, Series) {
	in := map[string]bool{}
	for _, a := range apps {
		in[a] = true
	}
	s := Series{Warm: make([]float64, g.Bins), Cold: make([]float64, g.Bins), UsedMB: make([]float64, g.Bins), IdleMB: make([]float64, g.Bins),
		HeldMBByBin: map[string][]float64{}, RequestByBin: map[string][]float64{}}
	for _, a := range apps {
		s.HeldMBByBin[a] = make([]float64, g.Bins)
		s.RequestByBin[a] = make([]float64, g.Bins)
	}
	perApp := map[string][2]int{} // cold, total
	wasted := map[string]float64{}
	c := Comparable{Dropped: dropped}
	for _, r := range served {
		k := g.BinOf(r.At)
		if !in[r.App] || k < 0 || k >= g.Bins {
			continue
		}
		s.RequestByBin[r.App][k]++
		n := perApp[r.App]
		n[1]++
		c.Requests++
		if r.Warm {
			s.Warm[k]++
		} else {
			s.Cold[k]++
			n[0]++
		}
		perApp[r.App] = n
	}
	for _, h := range held {
		if !in[h.App] || !h.To.After(h.From) {
			continue
		}
		first, last := max(0, g.BinOf(h.From)), min(g.Bins-1, g.BinOf(h.To))
		for k := first; k <= last; k++ {
			lo, hi := g.LiveTime(k), g.LiveTime(k+1)
			over := earlier(hi, h.To).Sub(later(lo, h.From))
			if over <= 0 {
				continue
			}
			mbSec := h.MemoryMB * over.Seconds() * g.scale() // trace clock
			s.HeldMBByBin[h.App][k] += mbSec / g.TraceBin.Seconds()
			if s.RequestByBin[h.App][k] > 0 {
				s.UsedMB[k] += mbSec / g.TraceBin.Seconds()
			} else {
				s.IdleMB[k] += mbSec / g.TraceBin.Seconds()
				c.WastedMBs += mbSec
				wasted[h.App] += mbSec
			}
		}
	}
	var rates []float64
	cold := 0
	for _, n := range perApp {
		rates = append(rates, float64(n[0])/float64(n[1]))
		cold += n[0]
	}
	if c.Requests > 0 {
		c.ColdOverall = float64(cold) / float64(c.Requests)
		c.WarmShare = 1 - c.ColdOverall
	}
	c.ColdP75 = stats.Percentile(rates, 0.75)
	for _, a := range apps {
		s.Apps = append(s.Apps, AppFigures{App: a, Requests: perApp[a][1], Cold: perApp[a][0], WastedMBs: wasted[a]})
	}
	return c, s
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
