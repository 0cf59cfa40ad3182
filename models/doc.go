// Package models is what Forewarm's learned models share: the ONNX graph
// helpers every export and load uses (MarshalModel, Parse, the Meta every
// file and registry row carries), the ONNX Runtime session (ort.go, cgo
// builds; ort_nocgo.go keeps a no-cgo build compiling, where only the
// pure-Go forward passes run), the probability metrics (log loss, Brier,
// ROC AUC, ECE, calibration) and the model kinds. It is the only package
// that imports onnxruntime_go.
//
// The models themselves live beside it: models/demand (the LSTM that gives
// P(a request in the next bin)), models/affinity (the host score and the
// ranking of hosts), and models/lifecycle (train, export, load back,
// evaluate against the baselines and the champion, decide, publish: the
// one path every trainer takes).
package models
