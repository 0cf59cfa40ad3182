package demand

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/trace"
)

// periodicTrace: every application fires every period bins (its own period
// and phase), with an occasional missed beat.
func periodicTrace(apps, bins int, seed uint64) *trace.Trace {
	rng := rand.New(rand.NewPCG(seed, 9))
	tr := &trace.Trace{Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Bin: time.Minute, Bins: bins}
	periods := []int{9, 14, 20, 27}
	for a := range apps {
		p := periods[a%len(periods)]
		phase := rng.IntN(p)
		c := make([]uint32, bins)
		for b := phase; b < bins; b += p {
			if rng.Float64() < 0.95 {
				c[b] = uint32(1 + rng.IntN(3))
			}
		}
		tr.Apps = append(tr.Apps, trace.App{ID: string(rune('A'+a%26)) + string(rune('a'+a/26)), MemoryMB: 128, ReadRatio: 0.5, Counts: c})
	}
	return tr
}

func smallOptions(tr *trace.Trace, until int) TrainOptions {
	return TrainOptions{
		Spec:       Spec{SeqLen: 40, Hidden: 16, Horizon: 3},
		TrainUntil: tr.BinStart(until), Samples: 6000, Epochs: 8, Patience: 3, BatchSize: 64, LR: 1e-2, Seed: 42,
		Version: "test-periodic",
	}
}

// The model must learn the period: recency alone cannot tell when the next
// beat comes, the sequence can.
func TestDemandLearnsPeriod(t *testing.T) {
	tr := periodicTrace(48, 700, 1)
	res, err := Train(context.Background(), tr, smallOptions(tr, 500), nil)
	if err != nil {
		t.Fatal(err)
	}
	var done, total int
	ev, err := Evaluate(context.Background(), tr, res.Model(), EvalOptions{From: tr.BinStart(500),
		Progress: func(d, n int) { done, total = d, n }})
	if err != nil {
		t.Fatal(err)
	}
	if done != ev.Points || total != ev.Points {
		t.Errorf("evaluation progress ended at %d/%d, want %d/%d", done, total, ev.Points, ev.Points)
	}
	t.Logf("model %+v (epochs %d, %.0f seq/s)", *ev.Model, res.Epochs, res.SeqPerSec)
	t.Logf("recency baseline %+v", ev.Baselines[BaselineRecency])
	if ev.Model.AUC < 0.95 {
		t.Errorf("ROC AUC %.3f on periodic data, want >= 0.95", ev.Model.AUC)
	}
}

// A run interrupted after an epoch and resumed from its checkpoint ends
// with exactly the model of an uninterrupted run with the same seed.
func TestDemandResumeFromCheckpoint(t *testing.T) {
	tr := periodicTrace(16, 300, 2)
	opt := smallOptions(tr, 300)
	opt.Samples, opt.Epochs = 600, 3
	full, err := Train(context.Background(), tr, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cp []byte
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Train(ctx, tr, opt, func(p Progress) {
		if p.Epoch == 1 && p.Checkpoint != nil {
			cp = p.Checkpoint
			cancel() // the activity dies here
		}
	})
	if err == nil || cp == nil {
		t.Fatalf("interrupted run: err %v, checkpoint %d bytes", err, len(cp))
	}
	opt.Checkpoint = cp
	opt.Version = "" // a retried activity does not know the version: the checkpoint does
	resumed, err := Train(context.Background(), tr, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.Resumed || resumed.Epochs != full.Epochs || resumed.Version != full.Version {
		t.Fatalf("resumed run: resumed=%v epochs %d, want %d", resumed.Resumed, resumed.Epochs, full.Epochs)
	}
	a, _ := full.ONNX()
	b, _ := resumed.ONNX()
	if !bytes.Equal(a, b) {
		t.Error("resumed model differs from the uninterrupted run's")
	}
	// A checkpoint is refused for other options.
	opt.Seed++
	if _, err := Train(context.Background(), tr, opt, nil); err == nil {
		t.Error("checkpoint of another run accepted")
	}
}

func TestTrainIsReproducible(t *testing.T) {
	tr := periodicTrace(12, 260, 3)
	opt := smallOptions(tr, 260)
	opt.Samples, opt.Epochs = 500, 2
	a, err := Train(context.Background(), tr, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(context.Background(), tr, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := a.ONNX()
	y, _ := b.ONNX()
	if !bytes.Equal(x, y) {
		t.Error("same seed and data gave different models")
	}
}

// Degenerate data must give errors or a usable model, never a panic.
func TestTrainDegenerateData(t *testing.T) {
	quiet := periodicTrace(4, 200, 5)
	for i := range quiet.Apps {
		clear(quiet.Apps[i].Counts)
	}
	opt := smallOptions(quiet, 200)
	opt.Samples, opt.Epochs = 300, 1
	res, err := Train(context.Background(), quiet, opt, nil)
	if err != nil {
		t.Fatalf("all-idle trace: %v", err)
	}
	p, err := res.Model().Predict([]Input{{Counts: []float64{0, 0}, Next: quiet.BinStart(199), Bin: time.Minute}})
	if err != nil || !(p[0] >= 0 && p[0] < 0.5) {
		t.Errorf("all-idle model predicts %v, %v", p, err)
	}
	short := periodicTrace(2, 4, 4)
	if _, err := Train(context.Background(), short, smallOptions(short, 4), nil); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("4-bin trace: %v, want refused as too short", err)
	}
	if _, err := Train(context.Background(), &trace.Trace{}, TrainOptions{}, nil); err == nil {
		t.Error("empty trace accepted")
	}
	o := smallOptions(quiet, 200)
	o.TrainUntil = quiet.BinStart(500)
	if _, err := Train(context.Background(), quiet, o, nil); err == nil {
		t.Error("TrainUntil beyond the trace accepted")
	}
	o = smallOptions(quiet, 200)
	o.Checkpoint = []byte("not a checkpoint")
	if _, err := Train(context.Background(), quiet, o, nil); err == nil {
		t.Error("garbage checkpoint accepted")
	}
}
