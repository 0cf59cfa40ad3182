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
)

// Request is one served request as recorded.
type Request struct {
	App       string
	Warm      bool
	LatencyMS float64 // set-up + work
}

// Preparation is one lease's life as recorded: reserved, then claimed,
// expired, released or failed.
type Preparation struct {
	ID          string
	App         string
	MemoryMB    float64
	HeldSeconds float64 // from reservation to its end
	Claimed     bool    // a request used it
}

// Figures are the report's numbers.
type Figures struct {
	Requests            int
	Warm                int
	WarmShare           float64
	Apps                int
	P75AppColdRate      float64 // 75th percentile over apps of cold/requests
	OverallColdRate     float64
	Preparations        int
	PreparationsClaimed int
	ReservedMBSeconds   float64            // every lease's memory × time held
	WastedMBSeconds     float64            // leases never claimed
	Latency             map[string]Latency // "warm", "cold", "all"

	// NoPreparation is the same requests with nothing prepared: every
	// request cold, costed at the cold latencies this run measured.
	NoPreparation Baseline
}

// Latency summarises a latency distribution in milliseconds.
type Latency struct {
	N      int
	Median float64
	P99    float64
	Mean   float64
}

// Baseline is the cost of the same requests under another policy.
type Baseline struct {
	ColdRate       float64
	P75AppColdRate float64
	MedianMS       float64
	P99MS          float64
	MeanMS         float64
	// LatencySavedSeconds is the request time preparation saved: for every
	// warm request, the cold mean minus its own latency.
	LatencySavedSeconds float64
}

// Compute derives the figures.
func Compute(reqs []Request, preps []Preparation) Figures {
	f := Figures{Requests: len(reqs), Latency: map[string]Latency{}}
	perApp := map[string][2]int{} // app -> {cold, total}
	var warmLat, coldLat, allLat []float64
	for _, r := range reqs {
		c := perApp[r.App]
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
	}
	f.Apps = len(perApp)
	if f.Requests > 0 {
		f.WarmShare = float64(f.Warm) / float64(f.Requests)
		f.OverallColdRate = 1 - f.WarmShare
	}
	var rates []float64
	for _, c := range perApp {
		rates = append(rates, float64(c[0])/float64(c[1]))
	}
	f.P75AppColdRate = Percentile(rates, 0.75)
	f.Latency["warm"] = summarise(warmLat)
	f.Latency["cold"] = summarise(coldLat)
	f.Latency["all"] = summarise(allLat)

	for _, p := range preps {
		f.Preparations++
		ms := p.MemoryMB * p.HeldSeconds
		f.ReservedMBSeconds += ms
		if p.Claimed {
			f.PreparationsClaimed++
		} else {
			f.WastedMBSeconds += ms
		}
	}

	cold := f.Latency["cold"]
	f.NoPreparation = Baseline{ColdRate: 1, MedianMS: cold.Median, P99MS: cold.P99, MeanMS: cold.Mean}
	if f.Apps > 0 {
		f.NoPreparation.P75AppColdRate = 1
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
	l.Median = Percentile(xs, 0.5)
	l.P99 = Percentile(xs, 0.99)
	return l
}

// Percentile is the q-quantile by linear interpolation (0 for no data).
func Percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Print writes the figures as a human-readable table.
func (f Figures) Print(w io.Writer, window time.Duration) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	ms := func(x float64) string { return fmt.Sprintf("%.1f ms", x) }
	fmt.Fprintf(tw, "requests served\t%d over %d applications in %s\n", f.Requests, f.Apps, window.Round(time.Second))
	fmt.Fprintf(tw, "warm share\t%s (%d warm, %d cold)\n", pct(f.WarmShare), f.Warm, f.Requests-f.Warm)
	fmt.Fprintf(tw, "p75 application cold-start rate\t%s (overall %s)\n", pct(f.P75AppColdRate), pct(f.OverallColdRate))
	fmt.Fprintf(tw, "preparations\t%d, %d claimed by a request\n", f.Preparations, f.PreparationsClaimed)
	fmt.Fprintf(tw, "reserved memory-time\t%.0f MB·s, of which wasted %.0f MB·s (%s)\n", f.ReservedMBSeconds, f.WastedMBSeconds, pct(safeDiv(f.WastedMBSeconds, f.ReservedMBSeconds)))
	fmt.Fprintln(tw, "latency\tmedian\tp99\tmean\tn")
	for _, k := range []string{"warm", "cold", "all"} {
		l := f.Latency[k]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\n", k, ms(l.Median), ms(l.P99), ms(l.Mean), l.N)
	}
	b := f.NoPreparation
	fmt.Fprintf(tw, "with no preparation\tevery request cold: p75 app cold-start rate %s, median %s, p99 %s, no reserved memory\n", pct(b.P75AppColdRate), ms(b.MedianMS), ms(b.P99MS))
	fmt.Fprintf(tw, "request time saved by preparation\t%.1f s\n", b.LatencySavedSeconds)
	tw.Flush()
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
