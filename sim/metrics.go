package sim

import (
	"math"
	"math/rand/v2"

	"github.com/forewarm/forewarm/internal/stats"
)

// Summary is one policy's figures over one counted range, the row of the
// results table. Cold-start figures follow the report's cold rule; both
// rules' figures are kept too.
type Summary struct {
	Policy   string  `json:"policy"`
	Family   string  `json:"family"`
	Param    float64 `json:"param"`    // keep-alive minutes, histogram range hours or threshold; 0 when none
	Range    string  `json:"range"`    // RangeSelect or RangeTest
	Selected bool    `json:"selected"` // the family's setting chosen on the select range (test rows only)

	Apps         int      `json:"apps"` // applications with >= 1 request in the range
	Requests     uint64   `json:"requests"`
	ColdRule     ColdRule `json:"cold_rule"`
	ColdRequests uint64   `json:"cold_requests"`
	ColdP75      float64  `json:"cold_rate_p75"`     // 75th percentile of per-app cold-start rates, 0..1
	ColdOverall  float64  `json:"cold_rate_overall"` // cold requests / requests, 0..1
	// ColdP75CI is a 90% bootstrap interval of ColdP75 over applications.
	ColdP75CI [2]float64 `json:"cold_rate_p75_ci90"`
	// ColdMeanApp is the mean of the per-app cold-start rates (every
	// application with a request weighs the same), 0..1.
	ColdMeanApp float64 `json:"cold_rate_mean_app"`
	// Both rules' figures, whichever the report follows.
	ColdP75First     float64 `json:"cold_rate_p75_first"`
	ColdOverallFirst float64 `json:"cold_rate_overall_first"`
	ColdP75All       float64 `json:"cold_rate_p75_all"`
	ColdOverallAll   float64 `json:"cold_rate_overall_all"`
	ColdMeanAppFirst float64 `json:"cold_rate_mean_app_first"`
	ColdMeanAppAll   float64 `json:"cold_rate_mean_app_all"`

	WastedMBSec  float64 `json:"wasted_mb_s"`              // idle + preparation memory-time
	IdleMBSec    float64 `json:"idle_mb_s"`                // held in bins without a request
	PrepareMBSec float64 `json:"preparation_mb_s"`         // charged for fresh preparations
	WastePct     float64 `json:"waste_pct_of_keepalive10"` // 100 × wasted / keep-alive-10's wasted; NaN when that is 0
	Preparations int     `json:"preparations"`
	PrepsPerReq  float64 `json:"preparations_per_request"`
	Shadow       int     `json:"shadow_requests"` // one per preparation
	LiveMBSec    float64 `json:"live_mb_s"`       // memory-time held by live instances, used or not
}

// Range names.
const (
	RangeSelect = "select"
	RangeTest   = "test"
)

// Summarize reduces a run to its figures under rule. WastePct is left NaN
// (Normalize fills it) and the interval empty (Bootstrap fills it).
func Summarize(r Result, rule ColdRule) Summary {
	s := Summary{Policy: r.Policy, ColdRule: rule, WastePct: math.NaN()}
	first := make([]float64, 0, len(r.Apps))
	all := make([]float64, 0, len(r.Apps))
	var coldFirst, coldAll uint64
	for _, a := range r.Apps {
		s.WastedMBSec += a.WastedMBSec
		s.IdleMBSec += a.IdleMBSec
		s.PrepareMBSec += a.PrepareMBSec
		s.LiveMBSec += float64(a.LiveBins) * a.MemoryMB * r.BinSec
		s.Preparations += a.Preparations
		if a.Requests == 0 {
			continue
		}
		s.Apps++
		s.Requests += a.Requests
		coldFirst += a.ColdFirst
		coldAll += a.ColdAll
		first = append(first, float64(a.ColdFirst)/float64(a.Requests))
		all = append(all, float64(a.ColdAll)/float64(a.Requests))
	}
	s.Shadow = s.Preparations
	if s.Requests > 0 {
		s.ColdOverallFirst = float64(coldFirst) / float64(s.Requests)
		s.ColdOverallAll = float64(coldAll) / float64(s.Requests)
		s.PrepsPerReq = float64(s.Preparations) / float64(s.Requests)
	}
	s.ColdP75First = stats.Percentile(first, 0.75)
	s.ColdP75All = stats.Percentile(all, 0.75)
	s.ColdMeanAppFirst, s.ColdMeanAppAll = mean(first), mean(all)
	s.ColdP75, s.ColdOverall, s.ColdMeanApp, s.ColdRequests = s.ColdP75First, s.ColdOverallFirst, s.ColdMeanAppFirst, coldFirst
	if rule == ColdAll {
		s.ColdP75, s.ColdOverall, s.ColdMeanApp, s.ColdRequests = s.ColdP75All, s.ColdOverallAll, s.ColdMeanAppAll, coldAll
	}
	return s
}

// mean is the mean of xs; 0 for none (as stats.Percentile).
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// AppColdRates is every application's cold-start rate under rule, for the
// applications with requests in the range.
func AppColdRates(r Result, rule ColdRule) []float64 {
	out := make([]float64, 0, len(r.Apps))
	for _, a := range r.Apps {
		if a.Requests > 0 {
			out = append(out, float64(a.Cold(rule))/float64(a.Requests))
		}
	}
	return out
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

// Bootstrap is a 90% percentile interval of the p75 of rates, resampling
// the applications with replacement n times from a fixed seed (the same
// rates give the same interval).
func Bootstrap(rates []float64, n int, seed uint64) [2]float64 {
	if len(rates) == 0 || n <= 0 {
		return [2]float64{}
	}
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	est := make([]float64, n)
	buf := make([]float64, len(rates))
	for i := range est {
		for j := range buf {
			buf[j] = rates[rng.IntN(len(rates))]
		}
		est[i] = stats.PercentileInPlace(buf, 0.75)
	}
	return [2]float64{stats.PercentileInPlace(est, 0.05), stats.PercentileInPlace(est, 0.95)}
}

// PairedBootstrap is a 90% percentile interval of p75(a) − p75(b), where
// a[i] and b[i] are the same application's rates under two policies: each
// of the n resamples draws application indices with replacement once, from
// a fixed seed, and takes both p75s on that same draw, so what the two
// policies share (which applications are hard) cancels. NaNs when there is
// nothing to resample or n <= 0. a and b must be equally long.
func PairedBootstrap(a, b []float64, n int, seed uint64) [2]float64 {
	if len(a) != len(b) {
		panic("sim.PairedBootstrap: unpaired rates")
	}
	if len(a) == 0 || n <= 0 {
		return [2]float64{math.NaN(), math.NaN()}
	}
	rng := rand.New(rand.NewPCG(seed, 0xd1ff))
	est := make([]float64, n)
	ba, bb := make([]float64, len(a)), make([]float64, len(b))
	for i := range est {
		for j := range ba {
			k := rng.IntN(len(a))
			ba[j], bb[j] = a[k], b[k]
		}
		est[i] = stats.PercentileInPlace(ba, 0.75) - stats.PercentileInPlace(bb, 0.75)
	}
	return [2]float64{stats.PercentileInPlace(est, 0.05), stats.PercentileInPlace(est, 0.95)}
}
