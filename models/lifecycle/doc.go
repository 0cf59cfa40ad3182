// Package lifecycle is the one path a model takes to production, whoever
// trains it (the training workflow, `starter model train`, `starter model
// train-affinity`, `starter eval`): train, export to ONNX, load the
// exported bytes back the way a worker does (ONNX Runtime), evaluate the
// candidate beside the baselines and the champion on one held-out range,
// decide with one pure rule (rule.Decide, which says why), and publish.
//
// The decision and the lifecycle's settings are in package rule, pure, so
// the training workflow can make it in workflow code, deterministically,
// from what its activities returned; callers name them there.
package lifecycle
