package sim

import (
	"math"
	"slices"
)

// Summary is one policy's figures over the evaluation range, the row of
// the results table.
type Summary struct {
	Policy string  `json:"policy"`
	Family string  `json:"family"` // reactive, keepalive, histogram, ours, oracle
	Param  float64 `json:"param"`  // keep-alive minutes, histogram range hours or threshold; 0 when none

	Apps         int     `json:"apps"` // applications with >= 1 request in the range
	Requests     uint64  `json:"requests"`
	ColdRequests uint64  `json:"cold_requests"`
	ColdP75      float64 `json:"cold_rate_p75"`     // 75th percentile of per-app cold-start rates, 0..1
	ColdOverall  float64 `json:"cold_rate_overall"` // cold requests / requests, 0..1

	WastedMBSec  float64 `json:"wasted_mb_s"`
	WastePct     float64 `json:"waste_pct_of_keepalive10"` // 100 × wasted / keep-alive-10's wasted; NaN when that is 0
	Preparations int     `json:"preparations"`
	Shadow       int     `json:"shadow_requests"` // one per preparation
	LiveMBSec    float64 `json:"live_mb_s"`       // memory-time held by preparations, used or not
}

// Summarize reduces a run to its figures. WastePct is left NaN; Normalize
// fills it.
func Summarize(r Result) Summary {
	s := Summary{Policy: r.Policy, WastePct: math.NaN()}
	rates := make([]float64, 0, len(r.Apps))
	for _, a := range r.Apps {
		s.WastedMBSec += a.WastedMBSec
		s.LiveMBSec += float64(a.LiveBins) * a.MemoryMB * r.BinSec
		s.Preparations += a.Preparations
		if a.Requests == 0 {
			continue
		}
		s.Apps++
		s.Requests += a.Requests
		s.ColdRequests += a.Cold
		rates = append(rates, float64(a.Cold)/float64(a.Requests))
	}
	s.Shadow = s.Preparations
	if s.Requests > 0 {
		s.ColdOverall = float64(s.ColdRequests) / float64(s.Requests)
	}
	s.ColdP75 = Percentile(rates, 0.75)
	return s
}

// Normalize sets WastePct against the reference waste (the fixed 10-minute
// keep-alive's on the same range).
func (s *Summary) Normalize(refWastedMBSec float64) {
	if refWastedMBSec > 0 {
		s.WastePct = 100 * s.WastedMBSec / refWastedMBSec
	} else {
		s.WastePct = math.NaN()
	}
}

// Percentile is the q-quantile (0..1) of xs with linear interpolation
// between order statistics (x[k] + f·(x[k+1]-x[k]), position q·(n-1)); 0
// for no data. xs is not modified.
func Percentile(xs []float64, q float64) float64 {
	switch len(xs) {
	case 0:
		return 0
	case 1:
		return xs[0]
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// numpy's default definition, so figures can be checked with it (gonum's
	// stat.Quantile interpolates on a different position).
	pos := q * float64(len(s)-1)
	k := int(pos)
	if k >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(k)
	return s[k] + f*(s[k+1]-s[k])
}
