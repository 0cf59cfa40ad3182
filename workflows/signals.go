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
// each naming the field; then T's own check, if it has one.
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return v, fmt.Errorf("field %s: %s is not a %s", te.Field, te.Value, te.Type)
		}
		return v, fmt.Errorf("payload %s: %v", truncate(payload), err)
	}
	if c, ok := any(&v).(interface{ check() error }); ok {
		if err := c.check(); err != nil {
			return v, err
		}
	}
	return v, nil
}

// required lists the fields a payload must name: those of T tagged
// `payload:"required"`.
func required(v any) []string {
	t := reflect.TypeOf(v)
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("payload") == "required" {
			name := f.Name
			if tag := strings.Split(f.Tag.Get("json"), ",")[0]; tag != "" {
				name = tag
			}
			out = append(out, name)
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
