// Package payload is the Temporal data converter of every client, worker,
// workflow replayer and test environment of Forewarm: what passes through
// Temporal (workflow inputs, results, queries, updates, signals, activity
// inputs and results, memos, heartbeats) is written in the one operator
// JSON style of package jsonx — snake_case keys, durations as "1m30s" —
// so the Web UI and `temporal workflow show` read what every --json
// prints. Reading also accepts the form written before (Go field names,
// durations in nanoseconds), so recorded histories replay.
//
// Every payload keeps the "json/plain" encoding, and nil, []byte and
// protobuf values are converted as the SDK's default converter does. No
// type opts in with methods of its own; a type with its own MarshalJSON /
// UnmarshalJSON (wire.Counts' compact form) keeps it. Signals and updates
// of the prediction loop are received raw and decoded strictly by the
// workflows themselves (workflows/signals.go), not here.
package payload

import (
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/forewarm/forewarm/internal/jsonx"
)

// JSON converts values to and from "json/plain" payloads in the operator
// style (jsonx.Encode, jsonx.Decode).
type JSON struct{}

// ToPayload writes value in the operator style.
func (JSON) ToPayload(value any) (*commonpb.Payload, error) {
	data, err := jsonx.Encode(value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", converter.ErrUnableToEncode, err)
	}
	return &commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingJSON)},
		Data:     data,
	}, nil
}

// FromPayload reads a payload in either style into valuePtr.
func (JSON) FromPayload(payload *commonpb.Payload, valuePtr any) error {
	if err := jsonx.Decode(payload.GetData(), valuePtr); err != nil {
		return fmt.Errorf("%w: %v", converter.ErrUnableToDecode, err)
	}
	return nil
}

// ToString is the payload's JSON.
func (JSON) ToString(payload *commonpb.Payload) string { return string(payload.GetData()) }

// Encoding is "json/plain", the encoding of the SDK's JSON converter.
func (JSON) Encoding() string { return converter.MetadataEncodingJSON }

// dataConverter is the SDK's default composition with JSON in place of
// its JSON converter.
var dataConverter = converter.NewCompositeDataConverter(
	converter.NewNilPayloadConverter(),
	converter.NewByteSlicePayloadConverter(),
	converter.NewProtoJSONPayloadConverter(),
	converter.NewProtoPayloadConverter(),
	JSON{},
)

// Converter is the data converter every Temporal client, worker, replayer
// and test environment uses: config.Temporal.ClientOptions sets it on
// every client (and so every worker built on one); replayers and test
// environments take it explicitly.
func Converter() converter.DataConverter { return dataConverter }
