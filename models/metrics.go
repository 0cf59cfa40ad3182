package models

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Metrics scores probabilistic predictions of binary outcomes.
type Metrics struct {
	N        int     `json:"n"`
	Positive float64 `json:"positive_rate"`
	LogLoss  float64 `json:"log_loss"`
	Brier    float64 `json:"brier"`
	AUC      float64 `json:"roc_auc"`
	ECE      float64 `json:"ece"` // expected calibration error, 10 equal-width bins
}

// MarshalJSON writes undefined metrics (NaN) as null.
func (m Metrics) MarshalJSON() ([]byte, error) {
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		N        int      `json:"n"`
		Positive *float64 `json:"positive_rate"`
		LogLoss  *float64 `json:"log_loss"`
		Brier    *float64 `json:"brier"`
		AUC      *float64 `json:"roc_auc"`
		ECE      *float64 `json:"ece"`
	}{m.N, num(m.Positive), num(m.LogLoss), num(m.Brier), num(m.AUC), num(m.ECE)})
}

// probability clamp for log loss: a confident wrong 0/1 prediction costs
// -log(1e-7) ~ 16 rather than infinity.
const logLossEps = 1e-7

// LogLoss is the mean binary cross-entropy.
func LogLoss(p []float64, y []bool) float64 {
	if len(p) == 0 {
		return math.NaN()
	}
	var s float64
	for i, v := range p {
		v = min(max(v, logLossEps), 1-logLossEps)
		if y[i] {
			s -= math.Log(v)
		} else {
			s -= math.Log(1 - v)
		}
	}
	return s / float64(len(p))
}

// Brier is the mean squared error of the probabilities.
func Brier(p []float64, y []bool) float64 {
	if len(p) == 0 {
		return math.NaN()
	}
	var s float64
	for i, v := range p {
		d := v - B2F(y[i])
		s += d * d
	}
	return s / float64(len(p))
}

// B2F is 1 for true, 0 for false.
func B2F(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ROCAUC is the area under the ROC curve of scores (any monotone scale):
// the probability that a random positive outscores a random negative, ties
// counting one half. NaN when one class is absent.
func ROCAUC(score []float64, y []bool) float64 {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return score[idx[a]] < score[idx[b]] })
	// Mann-Whitney U with mid-ranks for ties.
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && score[idx[j]] == score[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] {
				rankSum += mid
				pos++
			}
		}
		i = j
	}
	neg = float64(len(idx)) - pos
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// ECE is the expected calibration error over bins equal-width bins of
// predicted probability: sum over bins of |mean p - positive rate| weighted
// by the bin's share of samples.
func ECE(p []float64, y []bool, bins int) float64 {
	if len(p) == 0 {
		return math.NaN()
	}
	sumP := make([]float64, bins)
	sumY := make([]float64, bins)
	cnt := make([]float64, bins)
	for i, v := range p {
		b := min(int(v*float64(bins)), bins-1)
		b = max(b, 0)
		sumP[b] += v
		sumY[b] += B2F(y[i])
		cnt[b]++
	}
	var e float64
	for b := range bins {
		if cnt[b] > 0 {
			e += math.Abs(sumP[b]-sumY[b]) / float64(len(p))
		}
	}
	return e
}

// Score computes all metrics. auc may rank by a different score than the
// probabilities (a baseline's raw score); pass nil to rank by p.
func Score(p, rank []float64, y []bool) (Metrics, error) {
	if len(p) != len(y) || (rank != nil && len(rank) != len(y)) {
		return Metrics{}, fmt.Errorf("metrics: %d predictions, %d ranks, %d labels", len(p), len(rank), len(y))
	}
	for i, v := range p {
		if !(v >= 0 && v <= 1) {
			return Metrics{}, fmt.Errorf("metrics: prediction %d is %v, not a probability", i, v)
		}
	}
	if rank == nil {
		rank = p
	}
	var pos float64
	for _, v := range y {
		pos += B2F(v)
	}
	return Metrics{
		N:        len(y),
		Positive: pos / float64(max(len(y), 1)),
		LogLoss:  LogLoss(p, y),
		Brier:    Brier(p, y),
		AUC:      ROCAUC(rank, y),
		ECE:      ECE(p, y, 10),
	}, nil
}

// ReliabilityBins are the upper edges of the predicted-probability bins of
// a reliability table: log-spaced, since a demand forecast is mostly small
// probabilities and equal-width bins would put nearly all of them in one.
var ReliabilityBins = []float64{0.001, 0.01, 0.03, 0.1, 0.3, 1}

// Reliability is one bin of a reliability table: the predictions that
// fell in it, their mean, and how often the event happened.
type Reliability struct {
	UpTo     float64 `json:"up_to"`
	N        int     `json:"n"`
	MeanP    float64 `json:"mean_p"`
	Observed float64 `json:"observed_rate"`
}

// Calibration is how well predicted probabilities match outcomes: the
// scores, calibration in the large (mean predicted against observed) and a
// reliability table.
type Calibration struct {
	Metrics     Metrics       `json:"metrics"`
	MeanP       float64       `json:"mean_p"`
	Reliability []Reliability `json:"reliability"`
}

// Calibrate scores p against y with a reliability table over
// ReliabilityBins.
func Calibrate(p []float64, y []bool) (Calibration, error) {
	m, err := Score(p, nil, y)
	if err != nil {
		return Calibration{}, err
	}
	c := Calibration{Metrics: m, Reliability: make([]Reliability, len(ReliabilityBins))}
	sumP := make([]float64, len(ReliabilityBins))
	sumY := make([]float64, len(ReliabilityBins))
	for i, v := range p {
		b := sort.SearchFloat64s(ReliabilityBins, v)
		if b < len(ReliabilityBins) && ReliabilityBins[b] == v && b < len(ReliabilityBins)-1 {
			b++ // a bin holds p < its edge; the last one holds 1 too
		}
		b = min(b, len(ReliabilityBins)-1)
		c.Reliability[b].N++
		sumP[b] += v
		sumY[b] += B2F(y[i])
		c.MeanP += v
	}
	if len(p) > 0 {
		c.MeanP /= float64(len(p))
	}
	for b := range c.Reliability {
		r := &c.Reliability[b]
		r.UpTo = ReliabilityBins[b]
		if r.N > 0 {
			r.MeanP, r.Observed = sumP[b]/float64(r.N), sumY[b]/float64(r.N)
		}
	}
	return c, nil
}

// Application groups for calibration and results, read from an
// application's own history.
const (
	GroupBusy     = "busy"     // active in at least half of its bins
	GroupPeriodic = "periodic" // at least 10 idle times, half of them within a bin of the commonest
	GroupSparse   = "sparse"   // the rest: irregular, rare or new
)

// Groups lists the application groups in report order.
var Groups = []string{GroupBusy, GroupPeriodic, GroupSparse}

// GroupOf classifies an application by its counts (oldest first).
func GroupOf(counts []float64) string {
	active := 0
	last := -1
	its := map[int]int{}
	n := 0
	for i, c := range counts {
		if c <= 0 {
			continue
		}
		active++
		if last >= 0 {
			its[i-last-1]++
			n++
		}
		last = i
	}
	if len(counts) > 0 && 2*active >= len(counts) {
		return GroupBusy
	}
	if n >= 10 {
		best := 0
		for it := range its {
			best = max(best, its[it-1]+its[it]+its[it+1])
		}
		if 2*best >= n {
			return GroupPeriodic
		}
	}
	return GroupSparse
}
