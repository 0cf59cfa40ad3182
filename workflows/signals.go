package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/jsonx"
)

// maxRequestMB bounds a request's size in claims and observations: what a
// host agent accepts at most.
const maxRequestMB = api.MaxSizeMB

// receiveSignal takes one signal off c without letting its payload block
// the loop: the SDK drops a payload it cannot decode into the target type
// and keeps waiting, so the raw payload is received and decoded here, and a
// malformed one becomes an error the caller records.
func receiveSignal[T any](ctx workflow.Context, c workflow.ReceiveChannel) (T, error) {
	var raw converter.RawValue
	c.Receive(ctx, &raw)
	return decodePayload[T](raw)
}

// decodePayload decodes one signal's or update's raw payload into T,
// strictly (see decodeStrict). Signals and updates take raw payloads so
// that the SDK never decodes them leniently (unknown fields dropped,
// absent ones zero) or drops them.
func decodePayload[T any](raw converter.RawValue) (T, error) {
	var zero T
	p := raw.Payload()
	if p == nil {
		return zero, errors.New("no payload")
	}
	switch enc := string(p.GetMetadata()[converter.MetadataEncoding]); enc {
	case converter.MetadataEncodingJSON:
	case converter.MetadataEncodingNil:
		return zero, errors.New("payload is null: send a JSON object")
	default:
		return zero, fmt.Errorf("payload encoding %q: send a JSON object", enc)
	}
	return decodeStrict[T](p.GetData())
}

// decodeStrict decodes a JSON object into T, its keys spelt either way
// (snake_case or Go field names): unknown fields, a field of the wrong
// type, and a missing field that T requires (see required) are refused,
// each naming the field; then T's own check, if it has one. A field
// tagged `payload:"lenient"` (a value a worker built, such as an
// observation's kept lease) is read as every payload is (package jsonx):
// unknown fields inside it are skipped, so that a worker of a newer
// release can still report it.
func decodeStrict[T any](payload []byte) (T, error) {
	var v T
	// Operators write snake_case keys and "1m0s" durations (the style
	// every output uses); workers and older clients send Go field names.
	data, err := jsonx.GoKeys(payload, reflect.TypeFor[T]())
	if err != nil {
		return v, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return v, fmt.Errorf("payload %s is not a JSON object", truncate(payload))
	}
	for _, name := range required(v) {
		if raw, ok := fields[name]; !ok || string(raw) == "null" {
			return v, fmt.Errorf("field %s is missing", name)
		}
	}
	var lenient []taggedField
	for _, f := range tagged(v, "lenient") {
		if raw, ok := fields[f.name]; ok {
			lenient = append(lenient, taggedField{f.index, f.name, raw})
			delete(fields, f.name)
		}
	}
	if len(lenient) > 0 {
		if data, err = json.Marshal(fields); err != nil {
			return v, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, refusal(err, payload)
	}
	for _, f := range lenient {
		if err := jsonx.Decode(f.raw, reflect.ValueOf(&v).Elem().Field(f.index).Addr().Interface()); err != nil {
			return v, refusal(err, payload)
		}
	}
	if c, ok := any(&v).(interface{ check() error }); ok {
		if err := c.check(); err != nil {
			return v, err
		}
	}
	return v, nil
}

// refusal names the field of a decoding error, or else the payload.
func refusal(err error, payload []byte) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %s: %s is not a %s", te.Field, te.Value, te.Type)
	}
	return fmt.Errorf("payload %s: %v", truncate(payload), err)
}

// required lists the fields a payload must name: those of T tagged
// `payload:"required"`.
func required(v any) []string {
	var out []string
	for _, f := range tagged(v, "required") {
		out = append(out, f.name)
	}
	return out
}

// taggedField is a field of a payload's type: its index, its name in the
// payload, and (for a lenient one) its value.
type taggedField struct {
	index int
	name  string
	raw   json.RawMessage
}

// tagged lists, in order, the fields of v's struct type tagged
// `payload:"<tag>"`.
func tagged(v any, tag string) []taggedField {
	t := reflect.TypeOf(v)
	var out []taggedField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("payload") == tag {
			name := f.Name
			if n := strings.Split(f.Tag.Get("json"), ",")[0]; n != "" {
				name = n
			}
			out = append(out, taggedField{index: i, name: name})
		}
	}
	return out
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}
