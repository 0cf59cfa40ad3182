package wire

import (
	"time"

	"github.com/forewarm/forewarm/models/lifecycle/rule"
)

// DatasetSummary describes the stored history a training run will use.
type DatasetSummary struct {
	From, To         time.Time
	Chosen           string // how the range was chosen, e.g. "the last 168h0m0s of stored history"
	Bin              time.Duration
	Apps             int
	Bins             int
	Requests         float64 // total requests in the activity history
	RequestOutcomes  int     // served requests with a host outcome (affinity samples)
	HostMetricsCount int
}

// TrainSpec is what to train on.
type TrainSpec struct {
	From, To time.Time
	Bin      time.Duration
	Epochs   int
	Seed     int64
}

// TrainedModel is a stored candidate and how it compares: the lifecycle's
// one record of a comparison.
type TrainedModel = rule.Comparison

// DescribeInput / DescribeResult: the data set a training run extracts.
type DescribeInput struct {
	From, To time.Time
	// Span is how much recent history to read when From and To are zero
	// (0: rule.DefaultSpan).
	Span time.Duration
	Bin  time.Duration
}
type DescribeResult struct{ Dataset DatasetSummary }

// TrainInput / TrainResult: one model trained into a candidate.
type TrainInput struct{ Spec TrainSpec }
type TrainResult struct {
	Model   TrainedModel
	Resumed bool // the attempt started from a heartbeat checkpoint
}

// PromoteInput / PromoteResult: make a candidate the champion.
type PromoteInput struct{ Version string }
type PromoteResult struct{}
