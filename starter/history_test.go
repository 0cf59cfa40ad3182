package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// history runs `starter history …` in-process against database db.
func history(t *testing.T, db string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"history", "--clickhouse-database", db}, args...))
	err := root.Execute()
	return out.String(), err
}

func historyStats(t *testing.T, db string) map[string]any {
	t.Helper()
	out, err := history(t, db, "stats", "--json")
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, out)
	}
	delete(m, "load_list")
	return m
}

func TestHistoryLoadStatsAndBadInput(t *testing.T) {
	db := storetest.Config(t).Database
	dir := t.TempDir()
	events := filepath.Join(dir, "events.csv")
	os.WriteFile(events, []byte("timestamp,app_id,memory_mb\n2026-03-01T10:00:05Z,web,256\n2026-03-01T10:02:00Z,web,\n1772359200,cron,64\n"), 0o644)

	out, err := history(t, db, "load", "--format", "events", "--file", events, "--dry-run")
	if err != nil || !strings.Contains(out, "valid; 3 requests of 2 apps over 3 bins") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if st := historyStats(t, db); st["requests"] != 0.0 {
		t.Fatalf("a dry run stored something: %v", st)
	}
	out, err = history(t, db, "load", "--format", "events", "--file", events)
	if err != nil || !strings.Contains(out, "loaded 3 requests of 2 apps over 3 bins") {
		t.Fatalf("load: %v\n%s", err, out)
	}
	want := historyStats(t, db)
	if want["requests"] != 3.0 || want["apps"] != 2.0 || want["first"] != "2026-03-01T10:00:00Z" {
		t.Errorf("stats %v", want)
	}
	out, err = history(t, db, "load", "--format", "events", "--file", events)
	if err != nil || !strings.Contains(out, "already loaded") {
		t.Errorf("repeated load: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("timestamp,app_id\n2026-03-01T11:00:00Z,web\nlater,web\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"load", "--format", "events", "--file", bad}, 1, bad + `:3:1: column "timestamp": bad timestamp "later"`},
		{[]string{"load", "--format", "events", "--file", filepath.Join(dir, "none.csv")}, 1, "none.csv: cannot read"},
		{[]string{"load", "--format", "parquet", "--file", events}, 2, `--format "parquet"`},
		{[]string{"load", "--format", "events"}, 2, "--file is required"},
		{[]string{"load", "--format", "events", "--file", events, "--bin", "500ms"}, 2, "--bin 500ms"},
		{[]string{"load", "--format", "events", "--file", events, "--start", "tomorrow"}, 2, `--start "tomorrow"`},
		{[]string{"synth", "--apps", "0"}, 2, "--apps 0"},
	} {
		_, err := history(t, db, c.args...)
		if exitCode(err) != c.code || err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: exit %d (%v), want %d and %q", c.args, exitCode(err), err, c.code, c.msg)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: the error is not one line: %q", c.args, err)
		}
		if got := historyStats(t, db); !mapsEqual(got, want) {
			t.Errorf("%v changed the history: %v, was %v", c.args, got, want)
		}
	}
}

func mapsEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestHistorySynthRecent(t *testing.T) {
	db := storetest.Config(t).Database
	out, err := history(t, db, "synth", "--apps", "12", "--days", "1", "--bin", "10s", "--seed", "4", "--start", "recent", "--json")
	if err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	var res struct {
		Requests uint64 `json:"requests"`
		Apps     int    `json:"apps"`
		Bins     int    `json:"bins"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err, out)
	}
	want := trace.Synth(trace.SynthOptions{Apps: 12, Days: 1, Bin: 1e10, Seed: 4})
	if res.Requests != want.Total() || res.Apps != 12 || res.Bins != 8640 {
		t.Errorf("synth result %+v, want %d requests", res, want.Total())
	}
	if _, err := history(t, db, "stats"); err != nil {
		t.Error(err)
	}
}
