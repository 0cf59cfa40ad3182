package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/forewarm/forewarm/internal/testenv"
)

// runStarter runs the CLI in-process and returns stdout and the error.
func runStarter(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil && slices.Contains(args, "--json") {
		requireOperatorJSON(t, out.String())
	}
	return out.String(), err
}

// durationKeys name durations: in the operator style a string ("1m0s") or a
// key ending in _seconds, never a number of nanoseconds.
var durationKeys = map[string]bool{"bin": true, "duration": true, "lease_ttl": true, "keep_ttl": true, "ttl": true, "span": true, "elapsed": true, "every": true}

// requireOperatorJSON checks that a --json output is in the one style:
// no key written the Go way (an upper-case first letter) and no duration
// as a bare number. The JSON starts at the first line opening with { or [
// (progress may come before it).
func requireOperatorJSON(t *testing.T, out string) {
	t.Helper()
	start := -1
	for i := 0; i < len(out); i++ {
		if (i == 0 || out[i-1] == '\n') && (out[i] == '{' || out[i] == '[') {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("--json printed no JSON:\n%s", out)
	}
	dec := json.NewDecoder(strings.NewReader(out[start:]))
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("--json output is not JSON: %v\n%s", err, out)
		}
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					if k != "" && unicode.IsUpper(rune(k[0])) {
						t.Errorf("--json key %s%s is not snake_case", path, k)
					}
					if _, num := e.(float64); num && durationKeys[k] {
						t.Errorf("--json key %s%s is a duration written as a number (%v)", path, k, e)
					}
					walk(path+k+".", e)
				}
			case []any:
				for _, e := range x {
					walk(path, e)
				}
			}
		}
		walk("", v)
	}
}

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// writeEvents writes an events CSV with one request of app "a" (256 MB)
// at each of the given Unix seconds.
func writeEvents(t *testing.T, secs ...int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp,app_id,memory_mb\n")
	for _, s := range secs {
		b.WriteString(strconv.Itoa(s) + ",a,256\n")
	}
	path := filepath.Join(t.TempDir(), "events.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// periodic is Unix seconds from a fixed start, every step, for span.
func periodic(step, span int) []int {
	var out []int
	for s := 0; s < span; s += step {
		out = append(out, 1_700_000_000+s)
	}
	return out
}

func TestEvalEventsTableJSONAndFiles(t *testing.T) {
	// A request every 10 minutes for 4 hours.
	path := writeEvents(t, periodic(600, 4*3600)...)
	dir := t.TempDir()
	out, err := runStarter(t, "eval", "--format", "events", "--file", path,
		"--policies", "reactive,keepalive,histogram,oracle", "--keepalive-minutes", "10,11", "--out", dir, "--per-app")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, out)
	}
	for _, want := range []string{"keepalive-10m", "keepalive-11m", "histogram", "oracle", "100.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"results.csv", "results.json", "pareto.svg", "pareto.png", "apps.csv"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	out, err = runStarter(t, "eval", "--format", "events", "--file", path, "--policies", "keepalive", "--keepalive-minutes", "10,11", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results struct {
			Rows []struct {
				Range    string   `json:"range"`
				Policy   string   `json:"policy"`
				Selected bool     `json:"selected"`
				ColdP75  float64  `json:"cold_rate_p75"`
				WastePct *float64 `json:"waste_pct_of_keepalive10"`
			} `json:"rows"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	// Every 10 minutes: the 10- and 11-minute keep-alives are always warm
	// (the gap is exactly 10 bins); the 10-minute one wastes less and is
	// chosen on the select range, reported on the test range.
	rows := got.Results.Rows
	if len(rows) != 4 || rows[0].Range != "select" || rows[2].Range != "test" || rows[2].Policy != "keepalive-10m" ||
		rows[2].WastePct == nil || *rows[2].WastePct != 100 || rows[2].ColdP75 != 0 || !rows[2].Selected || rows[3].Selected || rows[0].Selected {
		t.Errorf("rows %+v", rows)
	}
}

func TestEvalBadInput(t *testing.T) {
	path := writeEvents(t, periodic(600, 3600)...)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown policy", []string{"--format", "events", "--file", path, "--policies", "reactive,lru"}, 2, `unknown policy "lru"`},
		{"fraction 1", []string{"--format", "events", "--file", path, "--train-fraction", "1"}, 2, "--train-fraction/--select-fraction: train fraction 1 and select fraction 0.333"},
		{"fraction 0", []string{"--format", "events", "--file", path, "--train-fraction", "0"}, 2, "both must be positive"},
		{"no test range", []string{"--format", "events", "--file", path, "--train-fraction", "0.5", "--select-fraction", "0.5"}, 2, "leave a test range"},
		{"no format", []string{"--file", path}, 2, "--format is required"},
		{"missing file", []string{"--format", "events", "--file", path + ".nope"}, 1, "events.csv.nope"},
		{"memory with events", []string{"--format", "events", "--file", path, "--memory", path}, 1, "azure2019 only"},
		{"bad keep-alive", []string{"--format", "events", "--file", path, "--keepalive-minutes", "-1"}, 2, "must be positive"},
		{"bad cold rule", []string{"--format", "events", "--file", path, "--cold-rule", "some"}, 2, "--cold-rule: cold rule \"some\""},
		{"bad budget", []string{"--format", "events", "--file", path, "--budget", "-5"}, 2, "--budget -5"},
		{"bad prepare seconds", []string{"--format", "events", "--file", path, "--prepare-seconds", "-1"}, 2, "--prepare-seconds -1"},
		{"bad mix", []string{"--format", "synth", "--mix", "timer=x"}, 2, "--mix: mix \"timer=x\""},
		{"bad drift", []string{"--format", "synth", "--drift", "1.5"}, 2, "--drift 1.5: must be in [0, 1]"},
		{"per-app without out", []string{"--format", "events", "--file", path, "--per-app"}, 2, "give --out"},
		{"bad threshold", []string{"--format", "events", "--file", path, "--thresholds", "1.5"}, 2, "--thresholds 1.5: each must be in [0, 1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStarter(t, append([]string{"eval"}, c.args...)...)
			if exitCode(err) != c.code || err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v (exit %d), want exit %d mentioning %q", err, exitCode(err), c.code, c.want)
			}
		})
	}
}

func TestEvalEmptyEvaluationRange(t *testing.T) {
	// Four minutes, requests in the first two only: evaluating the last two
	// measures nothing.
	inv := filepath.Join(t.TempDir(), "inv.csv")
	if err := os.WriteFile(inv, []byte("HashFunction,HashOwner,HashApp,minute_1,minute_2,minute_3,minute_4\nf,o,a,1,2,0,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runStarter(t, "eval", "--format", "azure2019", "--file", inv, "--train-fraction", "0.25", "--select-fraction", "0.25", "--policies", "reactive")
	if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), "no request") {
		t.Errorf("empty test range: %v", err)
	}
	_, err = runStarter(t, "eval", "--format", "azure2019", "--file", inv, "--train-fraction", "0.1", "--policies", "reactive")
	if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), "0 training") {
		t.Errorf("no training bin: %v", err)
	}
}

func TestEvalMemoryFileOfAnotherTrace(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.csv")
	mem := filepath.Join(dir, "mem.csv")
	os.WriteFile(inv, []byte("HashFunction,HashOwner,HashApp,minute_1,minute_2,minute_3\nf,o,a,1,0,1\n"), 0o644)
	os.WriteFile(mem, []byte("HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,zzz,1,300\n"), 0o644)
	_, err := runStarter(t, "eval", "--format", "azure2019", "--file", inv, "--memory", mem, "--policies", "reactive")
	if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), "none of the 1 apps") {
		t.Errorf("mismatched memory file: %v", err)
	}
}

func TestTuneKeepAlive(t *testing.T) {
	// A request every 15 minutes for 6 hours: the 15-minute keep-alive is
	// the least wasteful one that is never cold; 12 minutes is always cold.
	path := writeEvents(t, periodic(900, 6*3600)...)
	out, err := runStarter(t, "tune", "--format", "events", "--file", path, "--policy", "keepalive", "--cold-target", "1", "--json")
	if err != nil {
		t.Fatalf("tune: %v\n%s", err, out)
	}
	var got struct {
		Policy  string  `json:"policy"`
		Param   float64 `json:"param"`
		TestP75 float64 `json:"test_cold_rate_p75"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if got.Param != 15 || got.Policy != "keepalive-15m" || got.TestP75 != 0 {
		t.Errorf("recommended %+v, want keepalive-15m, never cold on the test range", got)
	}
	// Keep-alive 15 holds 14 idle bins per period, 140% of keep-alive 10's
	// 10: a budget of 150% buys no cold start, one of 130% buys nothing
	// better than always cold, at the least waste (1 minute).
	for budget, want := range map[string]string{"150": "keepalive-15m (setting 15)", "130": "keepalive-1m (setting 1)"} {
		out, err = runStarter(t, "tune", "--format", "events", "--file", path, "--policy", "keepalive", "--budget", budget)
		if err != nil || !strings.Contains(out, "recommended: "+want) {
			t.Errorf("budget %s%%: %v\n%s", budget, err, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", "keepalive", "--budget", "10", "--cold-target", "5"}, "not both"},
		{[]string{"--policy", "reactive"}, `--policy "reactive"`},
		{[]string{"--policy", "keepalive", "--cold-target", "150"}, "--cold-target 150"},
	} {
		_, err := runStarter(t, append([]string{"tune", "--format", "events", "--file", path}, c.args...)...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("tune %v: %v, want a usage error mentioning %q", c.args, err, c.want)
		}
	}
}

// TestEvalOurs trains a small demand model before each range of a
// synthetic workload and runs our policy on ONNX Runtime, as production
// does, next to the oracle.
func TestEvalOurs(t *testing.T) {
	lib := testenv.ORTLib(t)
	out, err := runStarter(t, "eval", "--onnxruntime-lib", lib, "--format", "synth", "--apps", "12", "--days", "1",
		"--policies", "keepalive,ours,oracle", "--keepalive-minutes", "10", "--thresholds", "0.1,0.5",
		"--keep-alive-floors", "0", "--trust-gaps", "2", "--samples", "600", "--epochs", "1", "--bootstrap", "20", "--json")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, out)
	}
	var got struct {
		SelectModel string `json:"select_model"`
		TestModel   string `json:"test_model"`
		Results     struct {
			Rows []struct {
				Range        string  `json:"range"`
				Policy       string  `json:"policy"`
				ColdP75      float64 `json:"cold_rate_p75"`
				WastedMBSec  float64 `json:"wasted_mb_s"`
				IdleMBSec    float64 `json:"idle_mb_s"`
				Preparations int     `json:"preparations"`
			} `json:"rows"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	rows := got.Results.Rows
	if got.SelectModel == "" || got.TestModel == "" || got.SelectModel == got.TestModel || len(rows) != 10 {
		t.Fatalf("models %q/%q rows %+v: want two models (one per range) and 5 rows per range", got.SelectModel, got.TestModel, rows)
	}
	for _, r := range [][]int{{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}} {
		ka, lo, hi, fb, or := rows[r[0]], rows[r[1]], rows[r[2]], rows[r[3]], rows[r[4]]
		if ka.Policy != "keepalive-10m" || lo.Policy != "ours-0.1" || hi.Policy != "ours-0.5" || fb.Policy != "ours-1-k10" || or.Policy != "oracle" {
			t.Fatalf("rows %+v", rows)
		}
		// Ours at threshold 1 is the fixed keep-alive it falls back to.
		if fb.ColdP75 != ka.ColdP75 || fb.WastedMBSec != ka.WastedMBSec {
			t.Errorf("%s: ours at threshold 1 %+v, the keep-alive %+v: want the same", fb.Range, fb, ka)
		}
		// A lower threshold holds at least as much: never more cold, never
		// less idle memory.
		if lo.ColdP75 > hi.ColdP75 || lo.IdleMBSec < hi.IdleMBSec {
			t.Errorf("%s: threshold 0.1 %+v vs 0.5 %+v: not monotone", lo.Range, lo, hi)
		}
		if or.ColdP75 != 0 || or.IdleMBSec != 0 || or.WastedMBSec <= 0 {
			t.Errorf("%s: oracle %+v: no cold start, no idle memory, its preparations charged", or.Range, or)
		}
	}
}
