// Package demand is the demand model. For one application at one bin: the last T bins of its activity
// (Spec.Features: log-scaled counts, an activity flag, time of day and
// day of week, bins since the last request, the long-run active share, the
// recent density, memory size and read ratio) go through a one-layer LSTM;
// a linear read-out of the last hidden state and a sigmoid give P(at least
// one request in the next H bins). One global model serves every
// application, so new and rare ones get sensible predictions.
//
// The exported graph is LSTM -> Squeeze -> Gemm -> Sigmoid (opset 13, IR 7;
// gate order i, o, f, c; W [1,4H,F], R [1,4H,H], B [1,8H]); input "x" is
// [T, batch, F], output "p" is [batch, 1]. The spec (feature list,
// normalisation, T, H, bin width) and the version are in metadata_props
// under "forewarm.meta" and in the registry Meta; Load checks both and
// refuses anything else with ErrIncompatible.
//
// Train: BPTT with Adam in float32, mini-batches split over two
// goroutines and summed in a fixed order (a seed reproduces a model),
// early stopping on a later-in-time validation split, Platt scaling on
// that split folded into the read-out. Progress reports carry a
// serialisable checkpoint; TrainOptions.Checkpoint resumes from it.
// With less than two days of training history the time-of-day and
// day-of-week features are zeroed (every later hour would be unseen).
//
// Evaluate scores every application at every bin of a held-out range
// beside three baselines on the same points: active in the last bin, the
// historical active fraction (over the history before the range), and
// recency (bins since the last request, ties broken by the requests of the
// last hour). Baseline probabilities for log loss and Brier come from a
// quantile-bin calibration on the points before the range; their ROC AUC
// uses the raw scores.
package demand
