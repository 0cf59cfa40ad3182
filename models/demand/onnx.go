package demand

import (
	"fmt"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/forewarm/forewarm/models"
)

// Graph tensor names.
const (
	demandInput  = "x" // [T, batch, F]
	demandOutput = "p" // [batch, 1]
)

// exportONNX writes LSTM -> Squeeze -> Gemm -> Sigmoid.
func exportONNX(m *lstm, meta meta) ([]byte, error) {
	F, H, T := m.F, m.H, meta.Spec.SeqLen
	// ONNX wants W [1, 4H, F] and R [1, 4H, H]: our WT/RT transposed.
	W := make([]float32, 4*H*F)
	for f := range F {
		for g := range 4 * H {
			W[g*F+f] = m.WT[f*4*H+g]
		}
	}
	R := make([]float32, 4*H*H)
	for h := range H {
		for g := range 4 * H {
			R[g*H+h] = m.RT[h*4*H+g]
		}
	}
	B := make([]float32, 8*H)
	copy(B, m.B)
	graph := &onnx.GraphProto{
		Name: "forewarm_demand",
		Initializer: []*onnx.TensorProto{
			models.FloatTensor("W", []int64{1, int64(4 * H), int64(F)}, W),
			models.FloatTensor("R", []int64{1, int64(4 * H), int64(H)}, R),
			models.FloatTensor("B", []int64{1, int64(8 * H)}, B),
			{Name: "squeeze_axes", Dims: []int64{1}, DataType: int32(onnx.TensorProto_INT64), Int64Data: []int64{0}},
			models.FloatTensor("Wout", []int64{1, int64(H)}, m.Wout),
			models.FloatTensor("Bout", []int64{1}, m.Bout),
		},
		Node: []*onnx.NodeProto{
			{Name: "lstm", OpType: "LSTM", Input: []string{demandInput, "W", "R", "B"}, Output: []string{"Y", "Y_h", "Y_c"},
				Attribute: []*onnx.AttributeProto{models.IntAttr("hidden_size", int64(H))}},
			{Name: "squeeze", OpType: "Squeeze", Input: []string{"Y_h", "squeeze_axes"}, Output: []string{"h"}},
			{Name: "readout", OpType: "Gemm", Input: []string{"h", "Wout", "Bout"}, Output: []string{"logit"},
				Attribute: []*onnx.AttributeProto{models.IntAttr("transB", 1)}},
			{Name: "sigmoid", OpType: "Sigmoid", Input: []string{"logit"}, Output: []string{demandOutput}},
		},
		Input:  []*onnx.ValueInfoProto{models.ValueInfo(demandInput, T, "batch", F)},
		Output: []*onnx.ValueInfoProto{models.ValueInfo(demandOutput, "batch", 1)},
	}
	return models.MarshalModel(graph, meta)
}

// demandFromONNX rebuilds the Go LSTM from an exported file.
func demandFromONNX(p *models.Parsed, spec Spec) (*lstm, error) {
	F, H := int64(spec.NumFeatures()), int64(spec.Hidden)
	W, err := p.Floats("W", 1, 4*H, F)
	if err != nil {
		return nil, err
	}
	R, err := p.Floats("R", 1, 4*H, H)
	if err != nil {
		return nil, err
	}
	B, err := p.Floats("B", 1, 8*H)
	if err != nil {
		return nil, err
	}
	Wout, err := p.Floats("Wout", 1, H)
	if err != nil {
		return nil, err
	}
	Bout, err := p.Floats("Bout", 1)
	if err != nil {
		return nil, err
	}
	in := p.Model.GetGraph().GetInput()
	if len(in) != 1 || in[0].GetName() != demandInput {
		return nil, fmt.Errorf("onnx: graph input must be the single tensor %q", demandInput)
	}
	dims := in[0].GetType().GetTensorType().GetShape().GetDim()
	if len(dims) != 3 || dims[0].GetDimValue() != int64(spec.SeqLen) || dims[2].GetDimValue() != F {
		return nil, fmt.Errorf("onnx: graph input %q shape does not match the spec [T=%d, batch, F=%d]", demandInput, spec.SeqLen, F)
	}
	m := &lstm{F: int(F), H: int(H), WT: make([]float32, F*4*H), RT: make([]float32, H*4*H),
		B: make([]float32, 4*H), Wout: append([]float32(nil), Wout...), Bout: append([]float32(nil), Bout...)}
	for f := range F {
		for g := range 4 * H {
			m.WT[f*4*H+g] = W[g*F+f]
		}
	}
	for h := range H {
		for g := range 4 * H {
			m.RT[h*4*H+g] = R[g*H+h]
		}
	}
	for g := range 4 * H {
		m.B[g] = B[g] + B[4*H+g]
	}
	return m, m.check()
}
