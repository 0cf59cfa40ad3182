// Package rule is the model lifecycle's one publish rule (Decide, which
// says why) and its settings. It is pure, apart from package lifecycle's
// training and publishing, so that the training workflow can apply it in
// workflow code, deterministically, from what its activities returned,
// without the models' runtime or the store.
package rule

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/forewarm/forewarm/models/kind"
)

// The settings of the lifecycle, one value each.
const (
	// DemandMetric and AffinityMetric are the primary metrics (lower is
	// better) a candidate is judged on.
	DemandMetric   = "log_loss"
	AffinityMetric = "mse"
	// MinImprovement is the relative gain on the primary metric a
	// candidate needs over the champion to replace it.
	MinImprovement = 0.01
	// MinAffinityOutcomes is how many served requests with an outcome the
	// affinity model needs before it is trained.
	MinAffinityOutcomes = 50
	// AffinityWindow is how far back served requests are read for the
	// affinity model.
	AffinityWindow = 30 * 24 * time.Hour
	// HoldoutFraction is the latest share of a range held out for
	// evaluation when none is given.
	HoldoutFraction = 0.2
	// DefaultSpan is how much of the most recent stored history training
	// reads when no range is given (`starter train --span`).
	DefaultSpan = 7 * 24 * time.Hour
)

// PrimaryMetric is the metric a kind of model is judged on.
func PrimaryMetric(k string) string {
	if k == kind.Affinity {
		return AffinityMetric
	}
	return DemandMetric
}

// Comparison is a trained candidate beside its baselines and the champion,
// all measured on the same held-out data. It is what a training activity
// returns and what Decide reads.
type Comparison struct {
	Version   string                        // the candidate
	Kind      string                        // kind.Demand or kind.Affinity
	Samples   int                           // training samples (sequences or outcomes)
	Metrics   map[string]float64            // the candidate's, held out
	Baselines map[string]map[string]float64 // baseline name -> its metrics, same data
	// Champion is the version that served when the candidate was trained
	// ("" when none); ChampionMetrics are its metrics on the same data
	// (empty when it could not be scored: ChampionNote says why).
	Champion        string
	ChampionMetrics map[string]float64 `json:",omitempty"`
	ChampionNote    string             `json:",omitempty"`
}

// Decision is whether a candidate replaces the champion, and why.
type Decision struct {
	Publish bool
	Reason  string
}

// Decide is the one publish rule: a candidate replaces the champion when,
// on its kind's primary metric over the same held-out data, it beats every
// baseline and the champion by at least minImprovement (relative; <= 0 is
// MinImprovement). With no champion, or one that could not be scored,
// beating the baselines is enough.
func Decide(c Comparison, minImprovement float64) Decision {
	if minImprovement <= 0 {
		minImprovement = MinImprovement
	}
	metric := PrimaryMetric(c.Kind)
	cand, ok := c.Metrics[metric]
	if !ok {
		return Decision{Reason: fmt.Sprintf("candidate %s has no %s metric; not published", c.Version, metric)}
	}
	var lost []string
	for _, name := range slices.Sorted(maps.Keys(c.Baselines)) {
		if b, ok := c.Baselines[name][metric]; ok && cand >= b {
			lost = append(lost, fmt.Sprintf("%s %.4f", name, b))
		}
	}
	if len(lost) > 0 {
		return Decision{Reason: fmt.Sprintf("candidate %s %s %.4f does not beat baseline(s) %s; not published", c.Version, metric, cand, strings.Join(lost, ", "))}
	}
	champ, hasChamp := c.ChampionMetrics[metric]
	switch {
	case c.Champion == "":
		return Decision{Publish: true, Reason: fmt.Sprintf("no champion yet; candidate %s %s %.4f beats every baseline: published", c.Version, metric, cand)}
	case !hasChamp:
		note := c.ChampionNote
		if note == "" {
			note = "not scored"
		}
		return Decision{Publish: true, Reason: fmt.Sprintf("champion %s cannot be compared (%s); candidate %s %s %.4f beats every baseline: published", c.Champion, note, c.Version, metric, cand)}
	case cand < champ*(1-minImprovement):
		return Decision{Publish: true, Reason: fmt.Sprintf("candidate %s %s %.4f beats champion %s %.4f by %.1f%%: published", c.Version, metric, cand, c.Champion, champ, 100*(champ-cand)/champ)}
	default:
		return Decision{Reason: fmt.Sprintf("candidate %s %s %.4f is not %.0f%% better than champion %s %.4f; champion kept", c.Version, metric, cand, 100*minImprovement, c.Champion, champ)}
	}
}
