package workflows

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/forewarm/forewarm/internal/jsonx"
)

// FuzzDecodePayload feeds arbitrary payloads, under each encoding a client
// can send, to the decoding of every signal and update of the prediction
// loop: nothing panics; a refusal names the field or the payload in one
// short message; what is accepted names every required field (not null),
// passes its type's check, and encodes and decodes to itself. The seed
// corpus is in testdata/fuzz/FuzzDecodePayload.
//
//	go test ./workflows -run '^$' -fuzz FuzzDecodePayload -fuzztime 30s
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []struct {
		kind uint8
		data string
	}{
		{payloadThreshold, `{"Threshold":0.5}`},
		{payloadThreshold, `{"Threshold":"0.7"}`},
		{payloadPolicySignal, `{"Change":{"TopN":2,"DryRun":true}}`},
		{payloadObservation, `{"RequestID":"r1","Count":1,"Host":"h","Warm":true,"At":"2026-01-05T10:00:00Z","Gone":["a.1.h"]}`},
		{payloadStop, `{"Reason":"done"}`},
		{payloadPolicyUpdate, `{"Change":{"Threshold":0.2,"LeaseTTL":60000000000}}`},
		{payloadClaim, `{"RequestID":"r1","CountArrival":true,"SizeMB":64}`},
		{payloadClaim | 8, `{"RequestID":"r1"}`},
		{payloadStop | 16, `null`},
	} {
		f.Add(s.kind, s.data)
	}
	f.Fuzz(func(t *testing.T, kind uint8, data string) {
		meta := map[string][]byte{}
		switch kind / 8 % 3 {
		case 0:
			meta[converter.MetadataEncoding] = []byte(converter.MetadataEncodingJSON)
		case 1:
			meta[converter.MetadataEncoding] = []byte(converter.MetadataEncodingBinary)
		case 2:
			meta[converter.MetadataEncoding] = []byte(converter.MetadataEncodingNil)
		}
		raw := converter.NewRawValue(&commonpb.Payload{Metadata: meta, Data: []byte(data)})
		switch kind % 6 {
		case payloadThreshold:
			fuzzOne[ThresholdSignal](t, raw, data)
		case payloadPolicySignal:
			fuzzOne[PolicySignal](t, raw, data)
		case payloadObservation:
			if o, ok := fuzzOne[ObservationSignal](t, raw, data); ok {
				if !(o.Count >= 0 && o.Count <= 1e9) || !(o.SizeMB >= 0 && o.SizeMB <= maxRequestMB) || !(o.LatencyMS >= 0) ||
					len(o.Gone) > maxGone || (o.Adjustment != nil && !(*o.Adjustment >= -1 && *o.Adjustment <= 1)) ||
					(o.Kept != nil && (o.Kept.LeaseID == "" || !(o.Kept.MemoryMB > 0))) {
					t.Errorf("observation out of bounds accepted: %+v", o)
				}
			}
		case payloadStop:
			fuzzOne[StopSignal](t, raw, data)
		case payloadPolicyUpdate:
			fuzzOne[PolicyUpdate](t, raw, data)
		case payloadClaim:
			if c, ok := fuzzOne[ClaimUpdate](t, raw, data); ok && (c.RequestID == "" || !(c.SizeMB >= 0 && c.SizeMB <= maxRequestMB)) {
				t.Errorf("claim out of bounds accepted: %+v", c)
			}
		}
	})
}

const (
	payloadThreshold uint8 = iota
	payloadPolicySignal
	payloadObservation
	payloadStop
	payloadPolicyUpdate
	payloadClaim
)

// fuzzOne decodes raw as T and checks what every payload type promises.
func fuzzOne[T any](t *testing.T, raw converter.RawValue, data string) (T, bool) {
	t.Helper()
	v, err := decodePayload[T](raw)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "field ") && !strings.HasPrefix(msg, "payload ") && !strings.HasPrefix(msg, "no payload") {
			t.Fatalf("refusal %q names neither a field nor the payload", msg)
		}
		if len(msg) > 400 {
			t.Fatalf("refusal of %d bytes: %.100q…", len(msg), msg)
		}
		return v, false
	}
	if enc := string(raw.Payload().GetMetadata()[converter.MetadataEncoding]); enc != converter.MetadataEncodingJSON {
		t.Fatalf("payload of encoding %q accepted: %+v", enc, v)
	}
	norm, err := jsonx.GoKeys([]byte(data), reflect.TypeFor[T]())
	if err != nil {
		t.Fatalf("accepted %q cannot be read: %v", data, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(norm, &fields); err != nil {
		t.Fatalf("accepted %q is not a JSON object: %v", data, err)
	}
	for _, name := range required(v) {
		if f, ok := fields[name]; !ok || string(f) == "null" {
			t.Fatalf("accepted %q without its required field %s", data, name)
		}
	}
	// What the loop acts on is what a client can send: it encodes and
	// decodes strictly to the same JSON.
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	back, err := decodeStrict[T](b)
	if err != nil {
		t.Fatalf("re-encoded %s refused: %v", b, err)
	}
	if b2, _ := json.Marshal(back); string(b2) != string(b) {
		t.Fatalf("round trip changed %s into %s", b, b2)
	}
	return v, true
}
