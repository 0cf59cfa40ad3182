package demand

import (
	"math"
	"testing"

	"github.com/advancedclimatesystems/gonnx"
	"gorgonia.org/tensor"
)

// TestGonnxAgreesWithExport runs the exported file in gonnx, an independent
// pure-Go ONNX implementation, and compares with our forward pass.
func TestGonnxAgreesWithExport(t *testing.T) {
	res, in := randomDemand(t, 16, 21)
	b, err := res.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	gm, err := gonnx.NewModelFromBytes(b)
	if err != nil {
		t.Fatalf("gonnx cannot read the export: %v", err)
	}
	const n = 8
	x, err := encodeBatch(res.Spec, in[:n])
	if err != nil {
		t.Fatal(err)
	}
	T, F := res.Spec.SeqLen, res.Spec.NumFeatures()
	xt := make([]float32, len(x))
	for i := range n {
		for s := range T {
			copy(xt[(s*n+i)*F:(s*n+i+1)*F], x[(i*T+s)*F:(i*T+s+1)*F])
		}
	}
	out, err := gm.Run(gonnx.Tensors{demandInput: tensor.New(tensor.WithShape(T, n, F), tensor.WithBacking(xt))})
	if err != nil {
		t.Fatalf("gonnx run: %v", err)
	}
	got := out[demandOutput].Data().([]float32)
	want, err := res.Model().Predict(in[:n])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("gonnx returned %d values, want %d", len(got), n)
	}
	for i := range n {
		if d := math.Abs(float64(got[i]) - want[i]); d > 1e-5 {
			t.Errorf("sequence %d: gonnx %.7f, Go %.7f", i, got[i], want[i])
		}
	}
}
