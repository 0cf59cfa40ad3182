package demand

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/forewarm/forewarm/models"
)

// TestLSTMGradientCheck compares backpropagation through time with central
// finite differences on a small network, for every parameter tensor.
func TestLSTMGradientCheck(t *testing.T) {
	const F, H, T, N = 3, 4, 6, 5
	rng := rand.New(rand.NewPCG(7, 7))
	m := newLSTM(F, H, rng)
	for _, p := range m.params() { // move off the symmetric initial point
		for j := range p {
			p[j] += 0.3 * (2*rng.Float32() - 1)
		}
	}
	x := make([]float32, N*T*F)
	for i := range x {
		x[i] = 2*rng.Float32() - 1
	}
	y := []bool{true, false, true, true, false}
	loss := func() float64 {
		var tp lstmTape
		m.forward(&tp, x, N, T)
		var s float64
		for n := range N {
			s += bce(float64(tp.logit[n]), y[n])
		}
		return s
	}
	var tp lstmTape
	m.forward(&tp, x, N, T)
	dlogit := make([]float32, N)
	for n := range N {
		dlogit[n] = float32(1/(1+math.Exp(-float64(tp.logit[n]))) - models.B2F(y[n]))
	}
	grad := zeroLike(m)
	m.backward(&tp, dlogit, grad)

	names := []string{"W", "R", "B", "Wout", "Bout"}
	gp := grad.params()
	const eps = 1e-2
	checked := 0
	for k, p := range m.params() {
		for j := range p {
			orig := p[j]
			p[j] = orig + eps
			up := loss()
			p[j] = orig - eps
			down := loss()
			p[j] = orig
			num := (up - down) / (2 * eps)
			got := float64(gp[k][j])
			if math.Abs(num-got) > 2e-3+2e-2*math.Abs(num) {
				t.Errorf("%s[%d]: backprop %.6f, finite difference %.6f", names[k], j, got, num)
			}
			checked++
		}
	}
	t.Logf("checked %d parameters", checked)
}

// The ONNX layout round trip: export, parse, identical weights.
func TestDemandONNXRoundTrip(t *testing.T) {
	spec := DefaultSpec(60e9)
	spec.Hidden = 5
	m := newLSTM(spec.NumFeatures(), spec.Hidden, rand.New(rand.NewPCG(1, 2)))
	b, err := exportONNX(m, meta{Kind: models.KindDemand, Version: "v-test", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	p, err := models.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := demandFromONNX(p, spec)
	if err != nil {
		t.Fatal(err)
	}
	for k, a := range m.params() {
		for j := range a {
			if a[j] != got.params()[k][j] {
				t.Fatalf("tensor %d value %d: %v != %v", k, j, a[j], got.params()[k][j])
			}
		}
	}
}
