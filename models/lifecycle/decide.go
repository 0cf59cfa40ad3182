// Package lifecycle is the one path a model takes to production, whoever
// trains it (the training workflow, `starter model train`, `starter model
// train-affinity`, `starter eval`): train, export to ONNX, load the
// exported bytes back the way a worker does (ONNX Runtime), evaluate the
// candidate beside the baselines and the champion on one held-out range,
// decide with one pure rule (Decide, which says why), and publish.
//
// The decision is a pure function in package rule so the training
// workflow can make it in workflow code, deterministically, from what its
// activities returned.
package lifecycle

import "github.com/forewarm/forewarm/models/lifecycle/rule"

// The publish rule and its settings live in package rule, which the
// training workflow imports without the models' runtime or the store;
// these names keep the lifecycle's API whole.

// The settings of the lifecycle (package rule).
const (
	DemandMetric        = rule.DemandMetric
	AffinityMetric      = rule.AffinityMetric
	MinImprovement      = rule.MinImprovement
	MinAffinityOutcomes = rule.MinAffinityOutcomes
	AffinityWindow      = rule.AffinityWindow
	HoldoutFraction     = rule.HoldoutFraction
	DefaultSpan         = rule.DefaultSpan
)

// Comparison is a trained candidate beside its baselines and the champion
// (rule.Comparison).
type Comparison = rule.Comparison

// Decision is whether a candidate replaces the champion, and why
// (rule.Decision).
type Decision = rule.Decision

// PrimaryMetric is rule.PrimaryMetric.
func PrimaryMetric(kind string) string { return rule.PrimaryMetric(kind) }

// Decide is rule.Decide, the one publish rule.
func Decide(c Comparison, minImprovement float64) Decision { return rule.Decide(c, minImprovement) }
