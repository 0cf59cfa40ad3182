package payload_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/workflows"
)

var t0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// A loop's input, carried state included, round trips in the operator
// style: snake_case keys, durations as "1m30s", Counts in its compact form.
func TestLoopInputRoundTripsInTheOperatorStyle(t *testing.T) {
	policy := workflows.DefaultPolicy()
	policy.LeaseTTL = 90 * time.Second
	in := workflows.LoopInput{
		App: "app-a", Bin: time.Minute, Window: 1440, Policy: policy,
		Profile: wire.AppProfile{App: "app-a", MemoryMB: 256},
		Clock:   &workflows.TraceClock{RealStart: t0, TraceStart: t0.Add(-time.Hour), TraceBin: time.Minute},
		Seeded:  true, Recent: wire.Counts{0, 0, 0, 0, 0, 3}, BinEnd: t0,
		Leases: []wire.Lease{{LeaseID: "app-a.1.h1", App: "app-a", Host: "h1", HostURL: "http://h1", MemoryMB: 256, Expires: t0.Add(time.Minute)}},
	}
	p, err := payload.Converter().ToPayload(in)
	require.NoError(t, err)
	require.Equal(t, converter.MetadataEncodingJSON, string(p.GetMetadata()[converter.MetadataEncoding]))
	data := string(p.GetData())
	for _, want := range []string{`"app":"app-a"`, `"bin":"1m0s"`, `"lease_ttl":"1m30s"`, `"reference_mb":`, `"profile":{"app":"app-a","memory_mb":256`,
		`"trace_bin":"1m0s"`, `"recent":{"n":6,"z":[5],"v":[3]}`, `"leases":[{"lease_id":"app-a.1.h1"`, `"bin_end":"2026-01-05T10:00:00Z"`} {
		require.Contains(t, data, want)
	}
	require.NotContains(t, data, `"App"`)
	var back workflows.LoopInput
	require.NoError(t, payload.Converter().FromPayload(p, &back))
	require.Equal(t, in, back)

	// The loop's state, as its query answers it.
	st := workflows.LoopStatus{App: "app-a", Policy: policy, Leases: in.Leases}
	p, err = payload.Converter().ToPayload(st)
	require.NoError(t, err)
	require.Contains(t, string(p.GetData()), `"lease_ttl":"1m30s"`)
	var stBack workflows.LoopStatus
	require.NoError(t, payload.Converter().FromPayload(p, &stBack))
	require.Equal(t, st, stBack)
}

// Payloads recorded before the operator style (Go field names, durations
// in nanoseconds) still decode, and so do those of types that were never
// in it (activity inputs written by encoding/json).
func TestTheOlderFormDecodes(t *testing.T) {
	old := jsonPayload(`{"App":"app-b","Bin":60000000000,"Window":64,"Policy":{"Threshold":0.3,"LeaseTTL":90000000000,"TopN":1},` +
		`"Profile":{"App":"app-b","MemoryMB":128},"Recent":[0,1,2],"Leases":[{"LeaseID":"app-b.1.h","Expires":"2026-01-05T10:01:00Z"}]}`)
	var in workflows.LoopInput
	require.NoError(t, payload.Converter().FromPayload(old, &in))
	require.Equal(t, "app-b", in.App)
	require.Equal(t, time.Minute, in.Bin)
	require.Equal(t, 90*time.Second, in.Policy.LeaseTTL)
	require.Equal(t, 128.0, in.Profile.MemoryMB)
	require.Equal(t, wire.Counts{0, 1, 2}, in.Recent)
	require.Equal(t, t0.Add(time.Minute), in.Leases[0].Expires)

	var fin wire.ForecastInput
	require.NoError(t, payload.Converter().FromPayload(jsonPayload(`{"App":"app-b","Bin":1000000000,"Bins":4,"Counts":[0,0,1]}`), &fin))
	require.Equal(t, wire.ForecastInput{App: "app-b", Bin: time.Second, Bins: 4, Counts: []float64{0, 0, 1}}, fin)

	// The snake_case form of a type never written in it before reads too.
	require.NoError(t, payload.Converter().FromPayload(jsonPayload(`{"app":"app-c","bin":"1s","bins":2}`), &fin))
	require.Equal(t, "app-c", fin.App)
	require.Equal(t, time.Second, fin.Bin)
}

// nil, []byte and protobuf values are converted as the SDK's default
// converter converts them, byte for byte; so are plain strings and numbers.
func TestOtherValuesAsTheDefaultConverter(t *testing.T) {
	for _, v := range []any{nil, []byte("raw"), &commonpb.WorkflowExecution{WorkflowId: "w", RunId: "r"}, "running", 42, 0.5, true} {
		got, err := payload.Converter().ToPayload(v)
		require.NoError(t, err)
		want, err := converter.GetDefaultDataConverter().ToPayload(v)
		require.NoError(t, err)
		require.True(t, proto.Equal(want, got), "%T: got %v, want %v", v, got, want)
	}
	p, err := payload.Converter().ToPayload(nil)
	require.NoError(t, err)
	lease := &wire.Lease{LeaseID: "x"}
	require.NoError(t, payload.Converter().FromPayload(p, &lease))
	require.Nil(t, lease)

	p, err = payload.Converter().ToPayload([]byte("raw"))
	require.NoError(t, err)
	var b []byte
	require.NoError(t, payload.Converter().FromPayload(p, &b))
	require.Equal(t, []byte("raw"), b)

	// A raw payload passes through untouched (signals are received raw).
	raw := converter.NewRawValue(jsonPayload(`{"Threshold":0.5}`))
	p, err = payload.Converter().ToPayload(raw)
	require.NoError(t, err)
	require.True(t, proto.Equal(raw.Payload(), p))
}

// A type with its own MarshalJSON keeps its form, alone as inside a value.
func TestOwnMarshalJSONKeepsItsForm(t *testing.T) {
	c := wire.Counts{0, 0, 0, 0, 2}
	p, err := payload.Converter().ToPayload(c)
	require.NoError(t, err)
	require.JSONEq(t, `{"n":5,"z":[4],"v":[2]}`, string(p.GetData()))
	var back wire.Counts
	require.NoError(t, payload.Converter().FromPayload(p, &back))
	require.Equal(t, c, back)

	p, err = payload.Converter().ToPayload(wire.ForecastResult{Counts: wire.Counts{0, 0, 0, 1}})
	require.NoError(t, err)
	require.Contains(t, string(p.GetData()), `"counts":{"n":4,"z":[3],"v":[1]}`)

	require.Error(t, payload.Converter().FromPayload(jsonPayload(`[1,-2]`), &back), "Counts' own checks still apply")
}

func jsonPayload(data string) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingJSON)}, Data: []byte(data)}
}

// No type opts in to the operator style with its own MarshalJSON or
// UnmarshalJSON calling package jsonx: the data converter writes every
// payload in it, and code that writes it elsewhere calls jsonx itself.
// (Such a method would also recurse: jsonx.Encode uses a type's own
// MarshalJSON.)
func TestNoTypeForwardsToJSONX(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "module root")
	fset := token.NewFileSet()
	seen := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		seen++
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Body == nil {
				continue
			}
			switch fn.Name.Name {
			case "MarshalJSON", "UnmarshalJSON", "MarshalText", "UnmarshalText":
			default:
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "jsonx" {
						rel, _ := filepath.Rel(root, path)
						t.Errorf("%s:%d: %s calls jsonx.%s: drop the method, the data converter (internal/payload) and jsonx.Encode/Decode write the style",
							rel, fset.Position(fn.Pos()).Line, fn.Name.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, seen, 100, "the walk found the repository's Go files")
}
