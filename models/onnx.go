package models

import (
	"encoding/json"
	"fmt"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// ONNX graphs are written for opset 13 and IR version 7: ONNX Runtime runs
// them, and so does gonnx (the independent check in the tests).
const (
	onnxIRVersion = 7
	onnxOpset     = 13
	// metaKey holds the JSON model description in metadata_props.
	metaKey = "forewarm.meta"
)

// Graph tensor names.
const (
	demandInput  = "x" // [T, batch, F]
	demandOutput = "p" // [batch, 1]
)

func floatTensor(name string, dims []int64, data []float32) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: append([]float32(nil), data...)}
}

func valueInfo(name string, dims ...any) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		switch v := d.(type) {
		case int:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}})
		case string:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: v}})
		}
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_FLOAT), Shape: shape}}}}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

func newModelProto(graph *onnx.GraphProto, meta any) ([]byte, error) {
	mj, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	mp := &onnx.ModelProto{
		IrVersion:    onnxIRVersion,
		OpsetImport:  []*onnx.OperatorSetIdProto{{Domain: "", Version: onnxOpset}},
		ProducerName: "forewarm",
		Graph:        graph,
		MetadataProps: []*onnx.StringStringEntryProto{
			{Key: metaKey, Value: string(mj)},
		},
	}
	return proto.Marshal(mp)
}

// exportDemandONNX writes LSTM -> Squeeze -> Gemm -> Sigmoid.
func exportDemandONNX(m *lstm, meta demandMeta) ([]byte, error) {
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
			floatTensor("W", []int64{1, int64(4 * H), int64(F)}, W),
			floatTensor("R", []int64{1, int64(4 * H), int64(H)}, R),
			floatTensor("B", []int64{1, int64(8 * H)}, B),
			{Name: "squeeze_axes", Dims: []int64{1}, DataType: int32(onnx.TensorProto_INT64), Int64Data: []int64{0}},
			floatTensor("Wout", []int64{1, int64(H)}, m.Wout),
			floatTensor("Bout", []int64{1}, m.Bout),
		},
		Node: []*onnx.NodeProto{
			{Name: "lstm", OpType: "LSTM", Input: []string{demandInput, "W", "R", "B"}, Output: []string{"Y", "Y_h", "Y_c"},
				Attribute: []*onnx.AttributeProto{intAttr("hidden_size", int64(H))}},
			{Name: "squeeze", OpType: "Squeeze", Input: []string{"Y_h", "squeeze_axes"}, Output: []string{"h"}},
			{Name: "readout", OpType: "Gemm", Input: []string{"h", "Wout", "Bout"}, Output: []string{"logit"},
				Attribute: []*onnx.AttributeProto{intAttr("transB", 1)}},
			{Name: "sigmoid", OpType: "Sigmoid", Input: []string{"logit"}, Output: []string{demandOutput}},
		},
		Input:  []*onnx.ValueInfoProto{valueInfo(demandInput, T, "batch", F)},
		Output: []*onnx.ValueInfoProto{valueInfo(demandOutput, "batch", 1)},
	}
	return newModelProto(graph, meta)
}

// parsedModel is an ONNX file's initializers and metadata.
type parsedModel struct {
	mp    *onnx.ModelProto
	meta  string
	inits map[string]*onnx.TensorProto
}

func parseONNX(data []byte) (*parsedModel, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("onnx: empty model")
	}
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("onnx: not a valid ONNX model (%d bytes): %w", len(data), err)
	}
	if mp.GetGraph() == nil {
		return nil, fmt.Errorf("onnx: model has no graph")
	}
	p := &parsedModel{mp: mp, inits: map[string]*onnx.TensorProto{}}
	for _, kv := range mp.GetMetadataProps() {
		if kv.GetKey() == metaKey {
			p.meta = kv.GetValue()
		}
	}
	if p.meta == "" {
		return nil, fmt.Errorf("onnx: metadata_props has no %q entry: not a Forewarm model", metaKey)
	}
	for _, t := range mp.GetGraph().GetInitializer() {
		p.inits[t.GetName()] = t
	}
	return p, nil
}

// floats returns initializer name's data, checking its shape.
func (p *parsedModel) floats(name string, dims ...int64) ([]float32, error) {
	t, ok := p.inits[name]
	if !ok {
		return nil, fmt.Errorf("onnx: initializer %q missing", name)
	}
	if t.GetDataType() != int32(onnx.TensorProto_FLOAT) {
		return nil, fmt.Errorf("onnx: initializer %q has data type %d, want float", name, t.GetDataType())
	}
	if fmt.Sprint(t.GetDims()) != fmt.Sprint(dims) {
		return nil, fmt.Errorf("onnx: initializer %q has shape %v, want %v", name, t.GetDims(), dims)
	}
	want := int64(1)
	for _, d := range dims {
		want *= d
	}
	data := t.GetFloatData()
	if int64(len(data)) != want {
		return nil, fmt.Errorf("onnx: initializer %q holds %d floats, want %d (raw_data encodings are not read)", name, len(data), want)
	}
	for _, v := range data {
		if !finite(float64(v)) {
			return nil, fmt.Errorf("onnx: initializer %q contains %v", name, v)
		}
	}
	return data, nil
}

// demandFromONNX rebuilds the Go LSTM from an exported file.
func demandFromONNX(p *parsedModel, spec DemandSpec) (*lstm, error) {
	F, H := int64(spec.NumFeatures()), int64(spec.Hidden)
	W, err := p.floats("W", 1, 4*H, F)
	if err != nil {
		return nil, err
	}
	R, err := p.floats("R", 1, 4*H, H)
	if err != nil {
		return nil, err
	}
	B, err := p.floats("B", 1, 8*H)
	if err != nil {
		return nil, err
	}
	Wout, err := p.floats("Wout", 1, H)
	if err != nil {
		return nil, err
	}
	Bout, err := p.floats("Bout", 1)
	if err != nil {
		return nil, err
	}
	in := p.mp.GetGraph().GetInput()
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
