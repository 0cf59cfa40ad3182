// Package report turns what ClickHouse recorded during a live run (served
// requests and preparation events) into the figures an operator judges
// Forewarm by: warm share, per-application cold-start rate, wasted reserved
// memory-time, latency warm against cold, and what the same requests would
// have cost with no preparation. It computes; it does not query.
package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
)

// Request is one served request as recorded.
type Request struct {
	App       string
	At        time.Time
	Warm      bool
	LatencyMS float64 // set-up + work
}

// Window is the time range a report covers and the bin its waste is judged
// on: a lease's memory in a bin in which its application served no request
// is wasted, as in the simulator.
type Window struct {
	From, To time.Time
	Bin      time.Duration
}

// Figures are the report's numbers.
type Figures struct {
	Requests    int     `json:"requests"`
	Warm        int     `json:"warm"`
	WarmShare   float64 `json:"warm_share"`
	Apps        int     `json:"apps"`
	ColdP75     float64 `json:"cold_rate_p75"` // 75th percentile over apps of cold/requests
	ColdOverall float64 `json:"cold_rate_overall"`
	// Leases are the instances held: prepared ahead, or kept after a cold
	// request served.
	Leases      int     `json:"leases"`
	ReservedMBs float64 `json:"reserved_mb_s"` // every lease's memory × time held in the window
	WastedMBs   float64 `json:"wasted_mb_s"`   // of which in bins where its app had no request
	WasteBin    float64 `json:"waste_bin_seconds"`
	// Latency by "warm", "cold" and "all".
	Latency map[string]Latency `json:"latency_ms"`

	// NoPreparation is the same requests with nothing prepared: every
	// request cold, costed at the cold latencies this run measured.
	NoPreparation Baseline `json:"no_preparation"`
}

// Latency summarises a latency distribution in milliseconds.
type Latency struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
	Mean   float64 `json:"mean"`
}

// Baseline is the cost of the same requests under another policy.
type Baseline struct {
	ColdRate float64 `json:"cold_rate"`
	ColdP75  float64 `json:"cold_rate_p75"`
	MedianMS float64 `json:"median_ms"`
	P99MS    float64 `json:"p99_ms"`
	MeanMS   float64 `json:"mean_ms"`
	// LatencySavedSeconds is the request time preparation saved: for every
	// warm request, the cold mean minus its own latency.
	LatencySavedSeconds float64 `json:"latency_saved_seconds"`
}

// Compute derives the figures of the requests and leases in w.
func Compute(reqs []Request, held []Held, w Window) Figures {
	f := Figures{Requests: len(reqs), Latency: map[string]Latency{}, WasteBin: w.Bin.Seconds()}
	perApp := map[string][2]int{} // app -> {cold, total}
	var apps []string
	var warmLat, coldLat, allLat []float64
	served := make([]Served, 0, len(reqs))
	for _, r := range reqs {
		c, seen := perApp[r.App]
		if !seen {
			apps = append(apps, r.App)
		}
		c[1]++
		allLat = append(allLat, r.LatencyMS)
		if r.Warm {
			f.Warm++
			warmLat = append(warmLat, r.LatencyMS)
		} else {
			c[0]++
			coldLat = append(coldLat, r.LatencyMS)
		}
		perApp[r.App] = c
		served = append(served, Served{App: r.App, At: r.At, Warm: r.Warm})
	}
	f.Apps = len(perApp)
	if f.Requests > 0 {
		f.WarmShare = float64(f.Warm) / float64(f.Requests)
		f.ColdOverall = 1 - f.WarmShare
	}
	var rates []float64
	for _, c := range perApp {
		rates = append(rates, float64(c[0])/float64(c[1]))
	}
	f.ColdP75 = stats.Percentile(rates, 0.75)
	f.Latency["warm"] = summarise(warmLat)
	f.Latency["cold"] = summarise(coldLat)
	f.Latency["all"] = summarise(allLat)

	for _, h := range held {
		if over := earlier(h.To, w.To).Sub(later(h.From, w.From)); over > 0 {
			f.Leases++
			f.ReservedMBs += h.MemoryMB * over.Seconds()
			if !slices.Contains(apps, h.App) {
				apps = append(apps, h.App)
			}
		}
	}
	if w.Bin > 0 && w.To.After(w.From) {
		g := Grid{TraceStart: w.From, TraceBin: w.Bin, LiveStart: w.From, LiveBin: w.Bin,
			Bins: int(math.Ceil(float64(w.To.Sub(w.From)) / float64(w.Bin)))}
		c, _ := Live(g, apps, served, held, 0)
		f.WastedMBs = c.WastedMBs
	}

	cold := f.Latency["cold"]
	f.NoPreparation = Baseline{ColdRate: 1, MedianMS: cold.Median, P99MS: cold.P99, MeanMS: cold.Mean}
	if f.Apps > 0 {
		f.NoPreparation.ColdP75 = 1
	}
	if cold.N > 0 {
		for _, l := range warmLat {
			f.NoPreparation.LatencySavedSeconds += (cold.Mean - l) / 1000
		}
	}
	return f
}

func summarise(xs []float64) Latency {
	l := Latency{N: len(xs)}
	if len(xs) == 0 {
		return l
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	l.Mean = sum / float64(len(xs))
	l.Median = stats.Percentile(xs, 0.5)
	l.P99 = stats.Percentile(xs, 0.99)
	return l
}

// Print writes the figures as a human-readable table.
func (f Figures) Print(w io.Writer, window time.Duration) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	ms := func(x float64) string { return fmt.Sprintf("%.1f ms", x) }
	fmt.Fprintf(tw, "requests served\t%d over %d applications in %s\n", f.Requests, f.Apps, window.Round(time.Second))
	fmt.Fprintf(tw, "warm share\t%s (%d warm, %d cold)\n", pct(f.WarmShare), f.Warm, f.Requests-f.Warm)
	fmt.Fprintf(tw, "p75 application cold-start rate\t%s (overall %s)\n", pct(f.ColdP75), pct(f.ColdOverall))
	fmt.Fprintf(tw, "warm instances held\t%d\n", f.Leases)
	fmt.Fprintf(tw, "reserved memory-time\t%.0f MB·s, of which wasted %.0f MB·s (%s; held through %gs bins without a request)\n",
		f.ReservedMBs, f.WastedMBs, pct(safeDiv(f.WastedMBs, f.ReservedMBs)), f.WasteBin)
	fmt.Fprintln(tw, "latency\tmedian\tp99\tmean\tn")
	for _, k := range []string{"warm", "cold", "all"} {
		l := f.Latency[k]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\n", k, ms(l.Median), ms(l.P99), ms(l.Mean), l.N)
	}
	b := f.NoPreparation
	fmt.Fprintf(tw, "with no preparation\tevery request cold: p75 app cold-start rate %s, median %s, p99 %s, no reserved memory\n", pct(b.ColdP75), ms(b.MedianMS), ms(b.P99MS))
	fmt.Fprintf(tw, "request time saved by preparation\t%.1f s\n", b.LatencySavedSeconds)
	tw.Flush()
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
