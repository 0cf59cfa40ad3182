//go:build cgo

package demand

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/forewarm/forewarm/models/modelstest"
)

type encodedPredictor interface {
	PredictEncoded([]float32, int) ([]float64, error)
}

// BenchmarkDemandInference: T=64, hidden 32, ONNX Runtime and the pure-Go
// forward pass on the same encoded inputs, batch 1 and 256. The figure per
// sequence is reported as ns/seq.
//
//	go test ./models -run '^$' -bench DemandInference -benchtime 2s
func BenchmarkDemandInference(b *testing.B) {
	modelstest.InitORT(b)
	res, in := randomDemand(b, 32, 1)
	onnxBytes, err := res.ONNX()
	if err != nil {
		b.Fatal(err)
	}
	ortModel, err := Load(onnxBytes, "", true)
	if err != nil {
		b.Fatal(err)
	}
	goModel, _ := Load(onnxBytes, "", false)
	all := make([]Input, 256)
	for i := range all {
		all[i] = in[i%len(in)]
	}
	for _, batch := range []int{1, 256} {
		x, err := encodeBatch(res.Spec, all[:batch])
		if err != nil {
			b.Fatal(err)
		}
		for _, impl := range []struct {
			name string
			m    Model
		}{{"ort", ortModel}, {"go", goModel}} {
			b.Run(fmt.Sprintf("%s/batch=%d", impl.name, batch), func(b *testing.B) {
				p := impl.m.(encodedPredictor)
				var took []time.Duration
				for b.Loop() {
					t0 := time.Now()
					if _, err := p.PredictEncoded(x, batch); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(t0))
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "median-ns/op")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/seq")
			})
		}
	}
	// Including feature encoding, as the prediction loop calls it.
	b.Run("ort+encode/batch=1", func(b *testing.B) {
		for b.Loop() {
			if _, err := ortModel.Predict(all[:1]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDemandTrain measures training throughput (forward + BPTT +
// Adam, T=64, hidden 32, batch 128 over the default 2 workers) in
// sequences per second.
//
//	go test ./models -run '^$' -bench DemandTrain -benchtime 20x
func BenchmarkDemandTrain(b *testing.B) {
	tr := periodicTrace(64, 1500, 4)
	spec := DefaultSpec(time.Minute)
	opt := TrainOptions{Samples: 4096, Seed: 1}
	opt.defaults(tr)
	ds, err := buildDataset(tr, spec, opt)
	if err != nil {
		b.Fatal(err)
	}
	m := newLSTM(spec.NumFeatures(), spec.Hidden, rand.New(rand.NewPCG(1, 1)))
	tn := newTrainer(m, ds, opt.Workers, opt.BatchSize)
	ad := newAdam(m, opt.LR)
	idx := make([]int, opt.BatchSize)
	seqs := 0
	for b.Loop() {
		for k := range idx {
			idx[k] = (seqs + k) % len(ds.train)
		}
		tn.step(idx)
		ad.update(m, tn.grad)
		seqs += len(idx)
	}
	b.ReportMetric(float64(seqs)/b.Elapsed().Seconds(), "seq/s")
}
