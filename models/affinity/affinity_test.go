package affinity

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/advancedclimatesystems/gonnx"
	"gorgonia.org/tensor"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/affinity/score"
	"github.com/forewarm/forewarm/models/demand"
)

func trainSynthAffinity(t *testing.T) (*Result, []Sample) {
	t.Helper()
	samples := SynthSamples(2000, 1)
	res, err := Train(context.Background(), samples, TrainOptions{Epochs: 25, Seed: 1, Version: "aff-test"})
	if err != nil {
		t.Fatal(err)
	}
	return res, samples
}

// The trained model must beat both the fixed heuristic and the mean on
// held-out outcomes drawn from a rule the heuristic only approximates.
func TestAffinityLearnsBeyondHeuristic(t *testing.T) {
	res, _ := trainSynthAffinity(t)
	t.Logf("held-out MSE: model %.4f, heuristic %.4f, mean %.4f", res.ValMSE, res.DefaultMSE, res.MeanMSE)
	if !(res.ValMSE < 0.7*res.DefaultMSE && res.ValMSE < 0.7*res.MeanMSE) {
		t.Errorf("model MSE %.4f is not clearly below heuristic %.4f and mean %.4f", res.ValMSE, res.DefaultMSE, res.MeanMSE)
	}
}

func TestAffinityExportAgreesWithGonnx(t *testing.T) {
	res, samples := trainSynthAffinity(t)
	b, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(b, res.Meta(), false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	in := make([]Input, n)
	for i := range in {
		in[i] = samples[i].Input
	}
	want, err := res.Model().Score(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loaded.Score(in)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := gonnx.NewModelFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	F := len(features)
	x := make([]float32, n*F)
	for i := range in {
		if err := encode(x[i*F:(i+1)*F], in[i], i); err != nil {
			t.Fatal(err)
		}
	}
	out, err := gm.Run(gonnx.Tensors{affinityInput: tensor.New(tensor.WithShape(n, F), tensor.WithBacking(x))})
	if err != nil {
		t.Fatal(err)
	}
	gv := out[affinityOutput].Data().([]float32)
	for i := range n {
		if math.Abs(got[i]-want[i]) > 1e-7 || math.Abs(float64(gv[i])-want[i]) > 1e-5 {
			t.Errorf("sample %d: trained %.6f, reloaded %.6f, gonnx %.6f", i, want[i], got[i], gv[i])
		}
	}
}

func TestAffinityRefusesBadInput(t *testing.T) {
	good := SynthSamples(1, 2)[0].Input
	bad := good
	bad.CPUUtil = math.NaN()
	for name, a := range map[string]Model{"default": Default()} {
		_, err := a.Score([]Input{good, bad})
		var ie *models.InputError
		if !errors.As(err, &ie) || ie.Index != 1 || ie.Field != "CPUUtil" {
			t.Errorf("%s: %v, want an InputError for input 1 CPUUtil", name, err)
		}
	}
	if _, err := Train(context.Background(), SynthSamples(10, 1), TrainOptions{}); err == nil {
		t.Error("10 samples accepted for training")
	}
	res, _ := trainSynthAffinity(t)
	b, _ := res.ONNX()
	if _, err := demand.Load(b, "", false); !errors.Is(err, models.ErrIncompatible) {
		t.Errorf("affinity file loaded as a demand model: %v", err)
	}
	if _, err := Load(b[:len(b)-7], "", false); !errors.Is(err, models.ErrIncompatible) {
		t.Errorf("truncated affinity file: %v", err)
	}
}

func TestDefaultAffinityRanksSensibly(t *testing.T) {
	base := Input{VolumeType: "ssd", SizeMB: 256, ReadRatio: 0.5, MemoryMB: 8192, Speed: 1, FreeMemMB: 4096}
	busy := base
	busy.CPUUtil, busy.MemPressure, busy.IOLatencyMS = 0.9, 0.8, 50
	s, err := Default().Score([]Input{base, busy})
	if err != nil {
		t.Fatal(err)
	}
	if !(s[0] > s[1] && s[1] > 0 && s[0] <= 1) {
		t.Errorf("scores idle %.3f busy %.3f: want idle > busy > 0", s[0], s[1])
	}
	// Whether the application fits is the capacity filter's question, not a score.
	if ok, why := score.Fits(256, 100); ok || why != "needs 256 MB, 100 MB free" {
		t.Errorf("Fits(256, 100) = %v, %q", ok, why)
	}
	if ok, _ := score.Fits(256, 0); !ok {
		t.Error("unknown free memory must fit: the host refuses what it cannot hold")
	}
	if p := score.Combine(0.8, 0.5); p.Score != 1 || p.String() != "1.00 (model 0.80, adjustment +0.50)" {
		t.Errorf("Combine(0.8, 0.5) = %+v %s", p, p)
	}
	samples := Samples([]Observation{
		{App: "a", LatencyMS: 100}, {App: "a", LatencyMS: 200}, {App: "a", LatencyMS: 50}, {App: "b", LatencyMS: -1},
	})
	if len(samples) != 3 || samples[0].Target != 1 || samples[1].Target != 0.5 || samples[2].Target != 1 {
		t.Errorf("AffinitySamples = %+v, want targets 1, 0.5, 1 (usual = median 100)", samples)
	}
}
