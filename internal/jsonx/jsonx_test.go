package jsonx

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

type inner struct {
	LeaseTTL time.Duration
	HostURL  string
}

type Base struct{ ModelVers string }

type outer struct {
	Base
	Bin       time.Duration
	Waits     []time.Duration
	Tagged    int    `json:"tagged_count"`
	Skip      int    `json:"-"`
	Empty     string `json:",omitempty"`
	Inner     inner
	Ptr       *inner
	ByHost    map[string]inner
	At        time.Time
	Raw       []byte
	unexposed int
}

func TestEncodeIsSnakeWithReadableDurations(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := outer{Base: Base{"m1"}, Bin: time.Second, Waits: []time.Duration{time.Minute}, Tagged: 3, Skip: 9,
		Inner: inner{LeaseTTL: 90 * time.Second, HostURL: "u"}, ByHost: map[string]inner{"h-B": {HostURL: "x"}}, At: at, Raw: []byte("ab")}
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model_vers":"m1","bin":"1s","waits":["1m0s"],"tagged_count":3,"inner":{"lease_ttl":"1m30s","host_url":"u"},"ptr":null,` +
		`"by_host":{"h-B":{"lease_ttl":"0s","host_url":"x"}},"at":"2026-01-02T03:04:05Z","raw":"YWI="}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back outer
	if err := Decode(b, &back); err != nil {
		t.Fatal(err)
	}
	v.Skip = 0
	if !reflect.DeepEqual(back, v) {
		t.Errorf("round trip %+v, want %+v", back, v)
	}
}

func TestDecodeAcceptsTheOlderForm(t *testing.T) {
	old := `{"ModelVers":"m0","Bin":1000000000,"Waits":[60000000000],"Tagged":7,"tagged_count":4,"Inner":{"LeaseTTL":0,"HostURL":"h"},"Ptr":{"LeaseTTL":2000000000},"ByHost":{"a":{"LeaseTTL":3000000000}}}`
	var v outer
	if err := Decode([]byte(old), &v); err != nil {
		t.Fatal(err)
	}
	if v.ModelVers != "m0" || v.Bin != time.Second || v.Waits[0] != time.Minute || v.Tagged != 4 || v.Inner.HostURL != "h" ||
		v.Ptr == nil || v.Ptr.LeaseTTL != 2*time.Second || v.ByHost["a"].LeaseTTL != 3*time.Second {
		t.Errorf("decoded %+v", v)
	}
	if err := Decode([]byte(`{"bin":"soon"}`), &v); err == nil {
		t.Error("a duration that is neither a number nor a Go duration was accepted")
	}
}

// compact has its own form, as wire.Counts has.
type compact []float64

func (c compact) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf(`{"n":%d}`, len(c))), nil }
func (c *compact) UnmarshalJSON(b []byte) error {
	var s struct{ N int }
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = make(compact, s.N)
	return nil
}

// metrics has its own MarshalJSON only, as models.Metrics has.
type metrics struct{ LogLoss float64 }

func (m metrics) MarshalJSON() ([]byte, error) { return []byte(`{"log_loss":null}`), nil }

// level is written as text, as encoding/json writes an encoding.TextMarshaler.
type level [2]byte

func (l level) MarshalText() ([]byte, error) { return []byte{l[0], l[1]}, nil }
func (l *level) UnmarshalText(b []byte) error {
	if len(b) != 2 {
		return fmt.Errorf("level %q", b)
	}
	copy(l[:], b)
	return nil
}

// A type's own MarshalJSON, UnmarshalJSON or MarshalText is used at the top
// as inside a value, and any value decodes, not only structs.
func TestEncodeAndDecodeAnyValue(t *testing.T) {
	type holder struct {
		Counts compact
		M      metrics
		Level  level
		ByApp  map[string]time.Duration
	}
	for _, c := range []struct {
		v    any
		want string
	}{
		{compact{0, 0, 0}, `{"n":3}`},
		{&compact{0}, `{"n":1}`},
		{metrics{LogLoss: 1}, `{"log_loss":null}`},
		{level{'o', 'k'}, `"ok"`},
		{holder{Counts: compact{0, 0}, Level: level{'h', 'i'}, ByApp: map[string]time.Duration{"a": time.Minute}},
			`{"counts":{"n":2},"m":{"log_loss":null},"level":"hi","by_app":{"a":"1m0s"}}`},
		{[]inner{{LeaseTTL: time.Second}}, `[{"lease_ttl":"1s","host_url":""}]`},
		{90 * time.Second, `"1m30s"`},
		{"text", `"text"`},
		{nil, `null`},
		{(*inner)(nil), `null`},
	} {
		b, err := Encode(c.v)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", c.v, err)
		}
		if string(b) != c.want {
			t.Errorf("Encode(%#v) = %s, want %s", c.v, b, c.want)
		}
	}

	var h holder
	if err := Decode([]byte(`{"Counts":{"n":2},"level":"hi","ByApp":{"a":60000000000}}`), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Counts) != 2 || h.Level != (level{'h', 'i'}) || h.ByApp["a"] != time.Minute {
		t.Errorf("decoded %+v", h)
	}
	var list []inner
	if err := Decode([]byte(`[{"lease_ttl":"1s"},{"LeaseTTL":2000000000}]`), &list); err != nil || len(list) != 2 ||
		list[0].LeaseTTL != time.Second || list[1].LeaseTTL != 2*time.Second {
		t.Errorf("decoded %+v, %v", list, err)
	}
	var d time.Duration
	if err := Decode([]byte(`"1m30s"`), &d); err != nil || d != 90*time.Second {
		t.Errorf("decoded %v, %v", d, err)
	}
	var p *inner
	if err := Decode([]byte(`{"host_url":"u"}`), &p); err != nil || p == nil || p.HostURL != "u" {
		t.Errorf("decoded %+v, %v", p, err)
	}
	var anything any
	if err := Decode([]byte(`{"a":[1]}`), &anything); err != nil || !reflect.DeepEqual(anything, map[string]any{"a": []any{1.0}}) {
		t.Errorf("decoded %#v, %v", anything, err)
	}
	if err := Decode([]byte(`{}`), inner{}); err == nil {
		t.Error("Decode into a value that is not a pointer")
	}
	if err := Decode([]byte(`{}`), (*inner)(nil)); err == nil {
		t.Error("Decode into a nil pointer")
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"LeaseTTL": "lease_ttl", "HostURL": "host_url", "ModelVers": "model_vers", "P": "p",
		"CPUMilli": "cpu_milli", "Window": "window", "ShadowMS": "shadow_ms", "IOLatencyMS": "io_latency_ms", "V2Loop": "v2_loop"} {
		if got := Snake(in); got != want {
			t.Errorf("Snake(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestGoKeysRewritesEitherSpellingToGoNames(t *testing.T) {
	got, err := GoKeys([]byte(`{"lease_ttl":"1m30s","HOST_URL":"u","other":1}`), reflect.TypeFor[inner]())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"HostURL":"u","LeaseTTL":90000000000,"other":1}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	got, err = GoKeys([]byte(`{"inner":{"LeaseTTL":5},"bin":null}`), reflect.TypeFor[outer]())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Bin":null,"Inner":{"LeaseTTL":5}}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, err := GoKeys([]byte(`{"inner":{"lease_ttl":"soon"}}`), reflect.TypeFor[outer]()); err == nil ||
		err.Error() != `field Inner: field LeaseTTL: duration "soon": want one such as "1m30s"` {
		t.Fatalf("a bad duration: %v", err)
	}
	if got, _ := GoKeys([]byte(`[1]`), reflect.TypeFor[outer]()); string(got) != `[1]` {
		t.Fatalf("not an object: %s", got)
	}
}

type renamed struct {
	BinEnd         time.Time `was:"NextTick"`
	MaxWakesPerRun int       `was:"MaxTicksPerRun"`
}

func TestRenamedFieldsReadTheirFormerNames(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	want := renamed{BinEnd: at, MaxWakesPerRun: 7}
	for _, in := range []string{
		`{"NextTick":"2026-01-02T03:04:00Z","MaxTicksPerRun":7}`,                      // recorded before the rename
		`{"next_tick":"2026-01-02T03:04:00Z","max_ticks_per_run":7}`,                  // its snake_case form
		`{"bin_end":"2026-01-02T03:04:00Z","max_wakes_per_run":7}`,                    // today's
		`{"bin_end":"2026-01-02T03:04:00Z","max_wakes_per_run":7,"MaxTicksPerRun":1}`, // both: the current name wins
	} {
		var got renamed
		if err := Decode([]byte(in), &got); err != nil || !got.BinEnd.Equal(want.BinEnd) || got.MaxWakesPerRun != want.MaxWakesPerRun {
			t.Errorf("Decode(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	b, err := Encode(want)
	if err != nil || string(b) != `{"bin_end":"2026-01-02T03:04:00Z","max_wakes_per_run":7}` {
		t.Errorf("Encode = %s, %v: written under the current names only", b, err)
	}
	g, err := GoKeys([]byte(`{"max_ticks_per_run":7}`), reflect.TypeFor[renamed]())
	if err != nil || string(g) != `{"MaxWakesPerRun":7}` {
		t.Errorf("GoKeys = %s, %v; want the current Go name", g, err)
	}
}
