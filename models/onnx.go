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
	// MetaKey holds the JSON model description in metadata_props.
	MetaKey = "forewarm.meta"
)

// FloatTensor is a float initializer.
func FloatTensor(name string, dims []int64, data []float32) *onnx.TensorProto {
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: append([]float32(nil), data...)}
}

// ValueInfo describes a float tensor; each dim is a size (int) or a
// symbolic name (string, e.g. "batch").
func ValueInfo(name string, dims ...any) *onnx.ValueInfoProto {
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

// IntAttr is an integer node attribute.
func IntAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

// MarshalModel writes graph as an ONNX file with meta (JSON) under MetaKey.
func MarshalModel(graph *onnx.GraphProto, meta any) ([]byte, error) {
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
			{Key: MetaKey, Value: string(mj)},
		},
	}
	return proto.Marshal(mp)
}

// Parsed is an ONNX file's graph, initializers and Forewarm metadata.
type Parsed struct {
	Model *onnx.ModelProto
	Meta  string
	inits map[string]*onnx.TensorProto
}

// Parse reads an exported file; every refusal wraps ErrIncompatible.
func Parse(data []byte) (*Parsed, error) {
	if len(data) == 0 {
		return nil, Incompatible("onnx: empty model")
	}
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, Incompatible("onnx: not a valid ONNX model (%d bytes): %v", len(data), err)
	}
	if mp.GetGraph() == nil {
		return nil, Incompatible("onnx: model has no graph")
	}
	p := &Parsed{Model: mp, inits: map[string]*onnx.TensorProto{}}
	for _, kv := range mp.GetMetadataProps() {
		if kv.GetKey() == MetaKey {
			p.Meta = kv.GetValue()
		}
	}
	if p.Meta == "" {
		return nil, Incompatible("onnx: metadata_props has no %q entry: not a Forewarm model", MetaKey)
	}
	for _, t := range mp.GetGraph().GetInitializer() {
		p.inits[t.GetName()] = t
	}
	return p, nil
}

// Floats returns initializer name's data, checking its shape.
func (p *Parsed) Floats(name string, dims ...int64) ([]float32, error) {
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
		if !Finite(float64(v)) {
			return nil, fmt.Errorf("onnx: initializer %q contains %v", name, v)
		}
	}
	return data, nil
}
