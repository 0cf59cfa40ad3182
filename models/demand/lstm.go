package demand

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/forewarm/forewarm/models"
)

// lstm is a one-layer LSTM followed by a linear read-out of the last hidden
// state and a sigmoid: exactly the exported ONNX graph
// LSTM -> Squeeze -> Gemm -> Sigmoid.
//
// Gate blocks are in ONNX order i, o, f, c. Weights are stored transposed
// relative to ONNX (WT is [F x 4H], RT is [H x 4H]) so every hot matrix
// product is a row-major axpy over 4H contiguous floats.
type lstm struct {
	F, H int
	WT   []float32 // [F][4H]
	RT   []float32 // [H][4H]
	B    []float32 // [4H]  (ONNX Wb; Rb is exported as zeros)
	Wout []float32 // [H]
	Bout []float32 // [1]
}

func newLSTM(F, H int, rng *rand.Rand) *lstm {
	m := &lstm{F: F, H: H,
		WT: make([]float32, F*4*H), RT: make([]float32, H*4*H),
		B: make([]float32, 4*H), Wout: make([]float32, H), Bout: make([]float32, 1)}
	// Glorot-uniform like initialisation, forget-gate bias 1 (remember by default).
	lim := float32(math.Sqrt(6 / float64(F+H)))
	for i := range m.WT {
		m.WT[i] = (2*rng.Float32() - 1) * lim
	}
	for i := range m.RT {
		m.RT[i] = (2*rng.Float32() - 1) * lim
	}
	for j := range H {
		m.B[2*H+j] = 1
	}
	lo := float32(math.Sqrt(6 / float64(H+1)))
	for i := range m.Wout {
		m.Wout[i] = (2*rng.Float32() - 1) * lo
	}
	return m
}

func (m *lstm) clone() *lstm {
	c := *m
	c.WT = append([]float32(nil), m.WT...)
	c.RT = append([]float32(nil), m.RT...)
	c.B = append([]float32(nil), m.B...)
	c.Wout = append([]float32(nil), m.Wout...)
	c.Bout = append([]float32(nil), m.Bout...)
	return &c
}

// params lists the parameter slices in a fixed order (Adam, checkpoints, gradients).
func (m *lstm) params() [][]float32 {
	return [][]float32{m.WT, m.RT, m.B, m.Wout, m.Bout}
}

// Activations in float64 through the standard library: math.Exp is
// assembly on amd64 and math.Tanh is cheap for the small arguments an LSTM
// mostly sees (a float32 polynomial exp measured slower in the forward pass).
func sigmoid32(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

func tanh32(x float32) float32 { return float32(math.Tanh(float64(x))) }

func gemm(tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ar, ac := m, k
	if tA == blas.Trans {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB == blas.Trans {
		br, bc = n, k
	}
	blas32.Gemm(tA, tB, 1,
		blas32.General{Rows: ar, Cols: ac, Stride: lda, Data: a},
		blas32.General{Rows: br, Cols: bc, Stride: ldb, Data: b},
		beta,
		blas32.General{Rows: m, Cols: n, Stride: ldc, Data: c})
}

// lstmTape holds one batch's forward activations for backpropagation.
type lstmTape struct {
	T, N  int
	xs    []float32 // [T][N][F]  step-major copy of the input
	gates []float32 // [T][N][4H] after the nonlinearities
	cs    []float32 // [T+1][N][H] cell states, cs[0] = 0
	hs    []float32 // [T+1][N][H] hidden states, hs[0] = 0
	tcs   []float32 // [T][N][H] tanh(c_t)
	logit []float32 // [N]
	// backward scratch
	dG    []float32 // [T][N][4H]
	dh    []float32 // [N][H]
	dc    []float32 // [N][H]
	dhPre []float32 // [N][H]
}

func (tp *lstmTape) resize(T, N, F, H int) {
	tp.T, tp.N = T, N
	grow := func(s []float32, n int) []float32 {
		if cap(s) < n {
			return make([]float32, n)
		}
		return s[:n]
	}
	tp.xs = grow(tp.xs, T*N*F)
	tp.gates = grow(tp.gates, T*N*4*H)
	tp.cs = grow(tp.cs, (T+1)*N*H)
	tp.hs = grow(tp.hs, (T+1)*N*H)
	tp.tcs = grow(tp.tcs, T*N*H)
	tp.logit = grow(tp.logit, N)
	tp.dG = grow(tp.dG, T*N*4*H)
	tp.dh = grow(tp.dh, N*H)
	tp.dc = grow(tp.dc, N*H)
	tp.dhPre = grow(tp.dhPre, N*H)
}

// forward runs N sequences. x is sequence-major [N][T][F] (the layout of
// Encode); the logits land in tp.logit.
func (m *lstm) forward(tp *lstmTape, x []float32, N, T int) {
	F, H, G := m.F, m.H, 4*m.H
	tp.resize(T, N, F, H)
	for n := range N {
		for t := range T {
			copy(tp.xs[(t*N+n)*F:(t*N+n+1)*F], x[(n*T+t)*F:(n*T+t+1)*F])
		}
	}
	clear(tp.cs[:N*H])
	clear(tp.hs[:N*H])
	// Input projections for all steps at once: gates = X * WT + B.
	for r := 0; r < T*N; r++ {
		copy(tp.gates[r*G:(r+1)*G], m.B)
	}
	gemm(blas.NoTrans, blas.NoTrans, T*N, G, F, tp.xs, F, m.WT, G, 1, tp.gates, G)
	for t := range T {
		g := tp.gates[t*N*G : (t+1)*N*G]
		hPrev := tp.hs[t*N*H : (t+1)*N*H]
		cPrev := tp.cs[t*N*H : (t+1)*N*H]
		h := tp.hs[(t+1)*N*H : (t+2)*N*H]
		c := tp.cs[(t+1)*N*H : (t+2)*N*H]
		tc := tp.tcs[t*N*H : (t+1)*N*H]
		if t > 0 {
			gemm(blas.NoTrans, blas.NoTrans, N, G, H, hPrev, H, m.RT, G, 1, g, G)
		}
		for n := range N {
			gn := g[n*G : (n+1)*G : (n+1)*G]
			gi, gio, gf, gc := gn[0:H], gn[H:2*H], gn[2*H:3*H], gn[3*H:4*H]
			cp, cn, hn, tcn := cPrev[n*H:(n+1)*H], c[n*H:(n+1)*H], h[n*H:(n+1)*H], tc[n*H:(n+1)*H]
			for j := range H {
				i := sigmoid32(gi[j])
				o := sigmoid32(gio[j])
				f := sigmoid32(gf[j])
				cc := tanh32(gc[j])
				gi[j], gio[j], gf[j], gc[j] = i, o, f, cc
				cv := f*cp[j] + i*cc
				cn[j] = cv
				tcv := tanh32(cv)
				tcn[j] = tcv
				hn[j] = o * tcv
			}
		}
	}
	hT := tp.hs[T*N*H : (T+1)*N*H]
	for n := range N {
		s := m.Bout[0]
		for j, w := range m.Wout {
			s += w * hT[n*H+j]
		}
		tp.logit[n] = s
	}
}

// backward accumulates into grad (same layout as params) the gradient of
// sum_n loss_n given dlogit[n] = dLoss/dlogit_n, using the tape of forward.
func (m *lstm) backward(tp *lstmTape, dlogit []float32, grad *lstm) {
	F, H, G := m.F, m.H, 4*m.H
	T, N := tp.T, tp.N
	hT := tp.hs[T*N*H : (T+1)*N*H]
	for n := range N {
		d := dlogit[n]
		grad.Bout[0] += d
		for j := range H {
			grad.Wout[j] += d * hT[n*H+j]
			tp.dh[n*H+j] = d * m.Wout[j]
		}
	}
	clear(tp.dc)
	for t := T - 1; t >= 0; t-- {
		g := tp.gates[t*N*G : (t+1)*N*G]
		dG := tp.dG[t*N*G : (t+1)*N*G]
		cPrev := tp.cs[t*N*H : (t+1)*N*H]
		tc := tp.tcs[t*N*H : (t+1)*N*H]
		for n := range N {
			gn := g[n*G : (n+1)*G]
			dn := dG[n*G : (n+1)*G]
			for j := range H {
				i, o, f, cc := gn[j], gn[H+j], gn[2*H+j], gn[3*H+j]
				dh := tp.dh[n*H+j]
				tcv := tc[n*H+j]
				dc := tp.dc[n*H+j] + dh*o*(1-tcv*tcv)
				dn[j] = dc * cc * i * (1 - i)
				dn[H+j] = dh * tcv * o * (1 - o)
				dn[2*H+j] = dc * cPrev[n*H+j] * f * (1 - f)
				dn[3*H+j] = dc * i * (1 - cc*cc)
				tp.dc[n*H+j] = dc * f
			}
		}
		if t > 0 {
			hPrev := tp.hs[t*N*H : (t+1)*N*H]
			// dRT += hPrev^T * dG ; dh = dG * RT^T
			gemm(blas.Trans, blas.NoTrans, H, G, N, hPrev, H, dG, G, 1, grad.RT, G)
			gemm(blas.NoTrans, blas.Trans, N, H, G, dG, G, m.RT, G, 0, tp.dh, H)
		}
	}
	// dWT += X^T * dG over all steps; dB += column sums of dG.
	gemm(blas.Trans, blas.NoTrans, F, G, T*N, tp.xs, F, tp.dG, G, 1, grad.WT, G)
	for r := 0; r < T*N; r++ {
		row := tp.dG[r*G : (r+1)*G]
		for k, v := range row {
			grad.B[k] += v
		}
	}
}

// predict returns sigmoid(logit) for N sequences of length T in x ([N][T][F]).
func (m *lstm) predict(x []float32, N, T int, tp *lstmTape) []float32 {
	if tp == nil {
		tp = &lstmTape{}
	}
	m.forward(tp, x, N, T)
	out := make([]float32, N)
	for n, l := range tp.logit[:N] {
		out[n] = sigmoid32(l)
	}
	return out
}

func (m *lstm) check() error {
	if m.F < 1 || m.H < 1 || len(m.WT) != m.F*4*m.H || len(m.RT) != m.H*4*m.H || len(m.B) != 4*m.H || len(m.Wout) != m.H || len(m.Bout) != 1 {
		return fmt.Errorf("lstm parameters have inconsistent shapes (F=%d H=%d)", m.F, m.H)
	}
	for _, p := range m.params() {
		for _, v := range p {
			if !models.Finite(float64(v)) {
				return fmt.Errorf("lstm parameters contain %v", v)
			}
		}
	}
	return nil
}
