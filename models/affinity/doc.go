// Package affinity is the host-affinity model. A small MLP (Gemm/Relu/Gemm/Relu/Gemm/Sigmoid) scores an (application,
// host) pair 0..1 as the expected min(1, usual latency / latency on that
// host), learnt from served requests (Samples builds targets from
// observed latencies). Default is the rule used before any model is
// trained; SynthSamples makes samples for tests and demos.
package affinity
