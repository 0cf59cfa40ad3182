// Package jsonx is the one JSON style of everything an operator reads:
// workflow inputs, results, queries and states, and every --json output.
// Keys are snake_case (a field's json tag, else its Go name in
// snake_case) and durations are strings a person can read ("1m0s").
//
// Decoding also accepts the form written before this style: Go field
// names as keys and durations as nanosecond numbers, so that workflow
// histories recorded then still replay. A field renamed since names its
// former Go names in a `was:"Old,Older"` tag: decoding reads them too
// (under the current name when both are there).
//
// Types do not opt in: every Temporal payload is written by Encode and
// read by Decode (package internal/payload, the data converter of every
// client, worker and replayer), and code that writes the style elsewhere
// (the starter's --json) calls Encode itself. A type keeps its own form
// by implementing json.Marshaler / json.Unmarshaler (or
// encoding.TextMarshaler / TextUnmarshaler), as with encoding/json; such
// a method must not call Encode or Decode on its own type.
package jsonx

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	timeType            = reflect.TypeFor[time.Time]()
	marshalerType       = reflect.TypeFor[json.Marshaler]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Encode writes any value in the operator style: structs field by field,
// the rest as encoding/json does, with the values inside them in the
// style. A value whose type has its own MarshalJSON (or MarshalText) is
// written by it, at the top as inside.
func Encode(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return []byte("null"), nil
	}
	var buf bytes.Buffer
	if err := encodeValue(&buf, rv); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode decodes data into v, a non-nil pointer to any value, accepting
// both the operator style and the older one (Go field names, nanosecond
// durations).
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("jsonx: Decode into %T, want a non-nil pointer", v)
	}
	return decodeValue(data, rv.Elem())
}

// Snake is a Go name in snake_case: LeaseTTL -> lease_ttl, ModelVers ->
// model_vers, HTTPURL -> http_url.
func Snake(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if i > 0 && (prevLower || (nextLower && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// field is one encoded field: its key, whether it is omitted when empty,
// and its path through embedded structs.
type field struct {
	key       string
	goName    string
	was       []string // former Go names (tag was), read when decoding
	omitEmpty bool
	index     []int
}

// fields lists t's encoded fields, embedded untagged structs flattened.
func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for _, sub := range fields(ft) {
					sub.index = append([]int{i}, sub.index...)
					out = append(out, sub)
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = Snake(f.Name)
		}
		var was []string
		if w := f.Tag.Get("was"); w != "" {
			was = strings.Split(w, ",")
		}
		out = append(out, field{key: name, goName: f.Name, was: was, omitEmpty: strings.Contains(opts, "omitempty"), index: []int{i}})
	}
	return out
}

// fieldOf follows index, allocating nil embedded pointers when alloc.
func fieldOf(v reflect.Value, index []int, alloc bool) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !alloc {
					return reflect.Value{}, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func encodeStruct(buf *bytes.Buffer, v reflect.Value) error {
	buf.WriteByte('{')
	first := true
	for _, f := range fields(v.Type()) {
		fv, ok := fieldOf(v, f.index, false)
		if !ok || (f.omitEmpty && fv.IsZero()) {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(f.key)
		buf.Write(k)
		buf.WriteByte(':')
		if err := encodeValue(buf, fv); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	buf.WriteByte('}')
	return nil
}

func encodeValue(buf *bytes.Buffer, v reflect.Value) error {
	switch {
	case v.Type() == durationType:
		b, _ := json.Marshal(time.Duration(v.Int()).String())
		buf.Write(b)
		return nil
	case v.Type().Implements(marshalerType) || v.Type() == timeType:
		return marshalPlain(buf, v)
	case v.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(v.Type()).Implements(marshalerType):
		return marshalPlain(buf, v.Addr()) // as encoding/json does for an addressable value
	case v.Type().Implements(textMarshalerType),
		v.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(v.Type()).Implements(textMarshalerType):
		return marshalPlain(buf, v)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return encodeValue(buf, v.Elem())
	case reflect.Interface:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return encodeValue(buf, v.Elem())
	case reflect.Struct:
		return encodeStruct(buf, v)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && (v.IsNil() || v.Type().Elem().Kind() == reflect.Uint8) {
			return marshalPlain(buf, v)
		}
		buf.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeValue(buf, v.Index(i)); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case reflect.Map:
		if v.IsNil() || v.Type().Key().Kind() != reflect.String {
			return marshalPlain(buf, v)
		}
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.String()
		}
		order := sortedIndex(names)
		buf.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(names[i])
			buf.Write(k)
			buf.WriteByte(':')
			if err := encodeValue(buf, v.MapIndex(keys[i])); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	}
	return marshalPlain(buf, v)
}

func marshalPlain(buf *bytes.Buffer, v reflect.Value) error {
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return err
	}
	buf.Write(b)
	return nil
}

// sortedIndex orders names the way encoding/json orders map keys.
func sortedIndex(names []string) []int {
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && names[idx[j]] < names[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

func decodeStruct(data []byte, v reflect.Value) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: %w", v.Type(), err)
	}
	for _, f := range fields(v.Type()) {
		r, ok := lookup(raw, f)
		if !ok {
			continue
		}
		fv, _ := fieldOf(v, f.index, true)
		if err := decodeValue(r, fv); err != nil {
			return fmt.Errorf("field %s: %w", f.key, err)
		}
	}
	return nil
}

// lookup finds a field's value under its key, its Go name, or (as
// encoding/json does) either of them in another case; then under a former
// name, in either style.
func lookup(raw map[string]json.RawMessage, f field) (json.RawMessage, bool) {
	for _, k := range []string{f.key, f.goName} {
		if r, ok := raw[k]; ok {
			return r, true
		}
	}
	for k, r := range raw {
		if strings.EqualFold(k, f.key) || strings.EqualFold(k, f.goName) {
			return r, true
		}
	}
	for _, old := range f.was {
		for k, r := range raw {
			if strings.EqualFold(k, old) || strings.EqualFold(k, Snake(old)) {
				return r, true
			}
		}
	}
	return nil, false
}

// spells says whether k is one of f's spellings: its key or Go name in any
// case, or a former name in either style.
func (f field) spells(k string) bool {
	if strings.EqualFold(k, f.key) || strings.EqualFold(k, f.goName) {
		return true
	}
	for _, old := range f.was {
		if strings.EqualFold(k, old) || strings.EqualFold(k, Snake(old)) {
			return true
		}
	}
	return false
}

func decodeValue(data json.RawMessage, v reflect.Value) error {
	t := v.Type()
	switch {
	case t == durationType:
		return decodeDuration(data, v)
	case reflect.PointerTo(t).Implements(unmarshalerType) || t == timeType ||
		reflect.PointerTo(t).Implements(textUnmarshalerType):
		return json.Unmarshal(data, v.Addr().Interface())
	}
	null := bytes.Equal(bytes.TrimSpace(data), []byte("null"))
	switch t.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return decodeValue(data, v.Elem())
	case reflect.Struct:
		return decodeStruct(data, v)
	case reflect.Slice:
		if null || t.Elem().Kind() == reflect.Uint8 {
			return json.Unmarshal(data, v.Addr().Interface())
		}
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, it := range items {
			if err := decodeValue(it, s.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if null || t.Key().Kind() != reflect.String {
			return json.Unmarshal(data, v.Addr().Interface())
		}
		var items map[string]json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(t, len(items))
		for k, it := range items {
			e := reflect.New(t.Elem()).Elem()
			if err := decodeValue(it, e); err != nil {
				return fmt.Errorf("[%s]: %w", k, err)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		v.Set(m)
		return nil
	}
	return json.Unmarshal(data, v.Addr().Interface())
}

// decodeDuration accepts "1m30s" and, as written before, nanoseconds.
func decodeDuration(data json.RawMessage, v reflect.Value) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"1m30s\"", data)
	}
	if i, err := n.Int64(); err == nil {
		v.SetInt(i)
		return nil
	}
	f, err := n.Float64()
	if err != nil {
		return err
	}
	v.SetInt(int64(f))
	return nil
}

// GoKeys rewrites a JSON object meant for a value of type t so that each
// key naming one of t's fields (in the operator style, by Go name, or
// either in another case) becomes the Go field name, and durations written
// as "1m30s" become nanoseconds: the form encoding/json decodes strictly.
// Nested structs are rewritten too. Keys naming no field are kept as they
// are, so a strict decoder still refuses them; data that is not an object
// is returned unchanged for the decoder to refuse.
func GoKeys(data []byte, t reflect.Type) ([]byte, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		var s string
		if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '"' || json.Unmarshal(t, &s) != nil {
			return data, nil // a number (nanoseconds), null, or for the decoder to refuse
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("duration %q: want one such as \"1m30s\"", s)
		}
		return json.Marshal(int64(d))
	case t.Kind() != reflect.Struct || t == timeType:
		return data, nil
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil || raw == nil {
		return data, nil
	}
	out := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		out[k] = v
	}
	for _, f := range fields(t) {
		r, ok := lookup(raw, f)
		if !ok {
			continue
		}
		for k := range raw { // every spelling of this field gives way to its Go name
			if f.spells(k) {
				delete(out, k)
			}
		}
		ft := t.FieldByIndex(f.index).Type
		v, err := GoKeys(r, ft)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.goName, err)
		}
		out[f.goName] = v
	}
	return json.Marshal(out)
}
