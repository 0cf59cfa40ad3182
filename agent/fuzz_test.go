package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// FuzzDecodeRequest feeds arbitrary bodies to the decoding and checks of
// every request the agent reads (reserve, shadow, extend, serve): nothing
// panics; a refusal is a 400 or 413 with a code and a message; what is
// accepted is within every limit the API states and survives a JSON round
// trip unchanged. The seed corpus is in testdata/fuzz/FuzzDecodeRequest.
//
//	go test ./agent -run '^$' -fuzz FuzzDecodeRequest -fuzztime 30s
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []struct {
		kind uint8
		body string
	}{
		{kindReserve, `{"preparation_id":"p1","app":"app-a","memory_mb":8,"disk_mb":4,"cpu_milli":500,"ttl_seconds":60}`},
		{kindReserve, `{"preparation_id":"p1","app":"app-a","memory_mb":1e300}`},
		{kindShadow, `{"read_ratio":0.5,"sample_mb":8}`},
		{kindExtend, `{"ttl_seconds":60,"app":"app-a"}`},
		{kindServe, `{"request_id":"r1","app":"app-a","preparation_id":"p1","memory_mb":8,"fallback_cold":true}`},
		{kindServe, `{"request_id":"r1","app":"app-a","memory_mb":8,"keep_id":"k1","keep_ttl_seconds":30,"keep_memory_mb":16}`},
	} {
		f.Add(s.kind, s.body)
	}
	a := &Agent{cfg: Config{DefaultTTL: time.Minute}}
	f.Fuzz(func(t *testing.T, kind uint8, body string) {
		switch kind % 4 {
		case kindReserve:
			var r api.ReserveRequest
			if decodeOrRefuse(t, body, &r) {
				ttl, err := a.checkReserve(r)
				if checked(t, err) {
					okID(t, "preparation_id", r.PreparationID)
					okID(t, "app", r.App)
					okSize(t, "memory_mb", r.MemoryMB)
					okSize(t, "disk_mb", r.DiskMB)
					okCPU(t, "cpu_milli", r.CPUMilli)
					okTTL(t, "ttl", ttl)
					if r.MemoryMB == 0 && r.DiskMB == 0 && r.CPUMilli == 0 {
						t.Errorf("a reserve of nothing was accepted: %+v", r)
					}
					roundTrip(t, r)
				}
			}
		case kindShadow:
			var r api.ShadowRequest
			if decodeOrRefuse(t, body, &r) && checked(t, checkShadow(r)) {
				okRatio(t, "read_ratio", r.ReadRatio)
				if !(r.SampleMB >= 0 && r.SampleMB <= api.MaxSampleMB) {
					t.Errorf("sample_mb %g accepted", r.SampleMB)
				}
				roundTrip(t, r)
			}
		case kindExtend:
			var r api.ExtendRequest
			if decodeOrRefuse(t, body, &r) {
				ttl, err := checkExtend(r)
				if checked(t, err) {
					okTTL(t, "ttl_seconds", ttl)
					if r.App != "" {
						okID(t, "app", r.App)
					}
					roundTrip(t, r)
				}
			}
		case kindServe:
			var r api.ServeRequest
			if decodeOrRefuse(t, body, &r) && checked(t, a.checkServe(r)) {
				okID(t, "request_id", r.RequestID)
				okID(t, "app", r.App)
				if r.PreparationID != "" {
					okID(t, "preparation_id", r.PreparationID)
				}
				okSize(t, "memory_mb", r.MemoryMB)
				okSize(t, "disk_mb", r.DiskMB)
				okCPU(t, "cpu_milli", r.CPUMilli)
				okRatio(t, "read_ratio", r.ReadRatio)
				if !(r.WorkMS >= 0 && r.WorkMS <= api.MaxWorkMS) {
					t.Errorf("work_ms %g accepted", r.WorkMS)
				}
				if (r.KeepID == "") != (r.KeepTTLSeconds == 0) {
					t.Errorf("keep_id %q with keep_ttl_seconds %g accepted", r.KeepID, r.KeepTTLSeconds)
				}
				if r.KeepID != "" {
					okID(t, "keep_id", r.KeepID)
					okTTL(t, "keep_ttl_seconds", time.Duration(r.KeepTTLSeconds*float64(time.Second)))
					okSize(t, "keep_memory_mb", r.KeepMemoryMB)
					okSize(t, "keep_disk_mb", r.KeepDiskMB)
					okCPU(t, "keep_cpu_milli", r.KeepCPUMilli)
					if r.KeepID == r.PreparationID {
						t.Errorf("keep_id equal to preparation_id accepted: %+v", r)
					}
				} else if r.KeepMemoryMB != 0 || r.KeepDiskMB != 0 || r.KeepCPUMilli != 0 {
					t.Errorf("keep sizes without keep_id accepted: %+v", r)
				}
				roundTrip(t, r)
			}
		}
	})
}

const (
	kindReserve uint8 = iota
	kindShadow
	kindExtend
	kindServe
)

// decodeOrRefuse runs the handlers' decoder on body; a refusal must be a
// 400 or 413 answer carrying an error body with a code and a message.
func decodeOrRefuse(t *testing.T, body string, v any) bool {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if decode(rec, req, v) {
		return true
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatalf("refusal body %q is not JSON: %v", rec.Body.String(), err)
	}
	switch {
	case rec.Code == http.StatusBadRequest && eb.Code == api.CodeBadRequest:
	case rec.Code == http.StatusRequestEntityTooLarge && eb.Code == api.CodeTooLarge:
	default:
		t.Fatalf("refusal %d %+v, want 400 bad_request or 413 too_large", rec.Code, eb)
	}
	if eb.Message == "" {
		t.Fatal("refusal without a message")
	}
	return false
}

// checked says whether a check passed; a refusal must be a bad_request
// naming what is wrong.
func checked(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != api.CodeBadRequest || e.Msg == "" {
		t.Fatalf("check refused with %#v, want a bad_request with a message", err)
	}
	return false
}

func okID(t *testing.T, field, id string) {
	if api.CheckID(field, id) != nil || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		t.Errorf("%s %q accepted", field, id)
	}
}

func okSize(t *testing.T, field string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > api.MaxSizeMB {
		t.Errorf("%s %g accepted", field, v)
	}
}

func okCPU(t *testing.T, field string, v int64) {
	if v < 0 || v > api.MaxCPUMilli {
		t.Errorf("%s %d accepted", field, v)
	}
}

func okRatio(t *testing.T, field string, v float64) {
	if !(v >= 0 && v <= 1) {
		t.Errorf("%s %g accepted", field, v)
	}
}

func okTTL(t *testing.T, field string, d time.Duration) {
	if d < api.MinTTL || d > api.MaxTTL {
		t.Errorf("%s %s accepted", field, d)
	}
}

// roundTrip checks that an accepted request encodes and decodes strictly
// to itself, so what the agent acted on is what a client can send.
func roundTrip[T any](t *testing.T, v T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	var back T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip of %+v gave %+v, %v", v, back, err)
	}
}
