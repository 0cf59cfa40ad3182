package trace

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// write puts content in a fresh file and returns its path.
func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func counts(t *testing.T, tr *Trace) map[string][]uint32 {
	t.Helper()
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	m := map[string][]uint32{}
	for _, a := range tr.Apps {
		m[a.ID] = a.Counts
	}
	return m
}

func TestReadAzure2019BothHeaderStyles(t *testing.T) {
	original := write(t, "inv.csv", "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"+
		"o1,a1,f1,http,0,2,1\n"+
		"o1,a1,f2,timer,1,0,0\n"+
		"o2,a2,f3,queue,5,0,7\n")
	sample := write(t, "inv.csv", "HashFunction,HashOwner,HashApp,minute_1,minute_2,minute_3\n"+
		"f1,o1,a1,0,2,1\n"+
		"f2,o1,a1,1,0,0\n"+
		"f3,o2,a2,5,0,7\n")
	mem := write(t, "mem.csv", "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no1,a1,10,128\no2,a2,3,256\n")
	dur := write(t, "run.csv", "HashOwner,HashApp,HashFunction,Average,Count\no1,a1,f1,20,3\no2,a2,f3,1500.5,12\n")
	want := map[string][]uint32{"f1": {0, 2, 1}, "f2": {1, 0, 0}, "f3": {5, 0, 7}}
	for name, path := range map[string]string{"original": original, "sample": sample} {
		t.Run(name, func(t *testing.T) {
			tr, err := ReadAzure2019(path, AzureOptions{MemoryPath: mem, DurationsPath: dur})
			if err != nil {
				t.Fatal(err)
			}
			if got := counts(t, tr); !reflect.DeepEqual(got, want) {
				t.Errorf("counts %v, want %v", got, want)
			}
			if tr.Total() != 16 || tr.Bins != 3 || tr.Bin != time.Minute || !tr.Start.Equal(AzureStart) {
				t.Errorf("total %d bins %d bin %v start %v", tr.Total(), tr.Bins, tr.Bin, tr.Start)
			}
			f1, f2, f3 := tr.Apps[0], tr.Apps[1], tr.Apps[2]
			if f1.MemoryMB != 128 || f2.MemoryMB != 128 || f3.MemoryMB != 256 {
				t.Errorf("memory by HashApp: %v %v %v", f1.MemoryMB, f2.MemoryMB, f3.MemoryMB)
			}
			if f1.DurationMS != 20 || f2.DurationMS != 0 || f3.DurationMS != 1500.5 {
				t.Errorf("durations by HashFunction: %v %v %v", f1.DurationMS, f2.DurationMS, f3.DurationMS)
			}
			if f2.MemoryOrDefault() != 128 || (&App{}).MemoryOrDefault() != DefaultMemoryMB {
				t.Error("MemoryOrDefault")
			}
		})
	}
}

func TestReadAzure2019Options(t *testing.T) {
	p := write(t, "inv.csv", "HashFunction,minute_1,minute_2\nf,1,2\nf,3,0\n")
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	tr, err := ReadAzure2019(p, AzureOptions{Start: start, Bin: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Start.Equal(start) || tr.Bin != time.Second {
		t.Errorf("start %v bin %v", tr.Start, tr.Bin)
	}
	if got := counts(t, tr)["f"]; !reflect.DeepEqual(got, []uint32{4, 2}) {
		t.Errorf("repeated function rows are summed: %v", got)
	}
	if tr.Apps[0].MemoryMB != 0 || tr.Apps[0].ReadRatio != DefaultReadRatio {
		t.Errorf("profile without side files: %+v", tr.Apps[0])
	}
}

// wantInputError checks err is an *InputError at the given place whose
// message mentions every word of msg.
func wantInputError(t *testing.T, err error, file string, line, col int, msg string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T), want *InputError", err, err)
	}
	if ie.File != file || ie.Line != line || ie.Column != col {
		t.Errorf("error at %s:%d:%d, want %s:%d:%d (%v)", ie.File, ie.Line, ie.Column, file, line, col, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not mention %q", err, msg)
	}
	if !strings.HasPrefix(err.Error(), file) {
		t.Errorf("error %q does not start with the file name", err)
	}
}

func TestReadAzure2019BadInput(t *testing.T) {
	head := "HashFunction,HashOwner,HashApp,minute_1,minute_2\n"
	cases := []struct {
		name, content string
		line, col     int
		msg           string
	}{
		{"empty file", "", 1, 0, "empty file"},
		{"header only", head, 2, 0, "no function rows"},
		{"wrong header", "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,2\n", 1, 3, "unexpected column"},
		{"no minutes", "HashOwner,HashApp,HashFunction,Trigger\n", 1, 0, "no minute columns"},
		{"minute gap", "HashFunction,minute_1,minute_3\n", 1, 3, "out of sequence"},
		{"non-numeric", head + "f,o,a,1,2\ng,o,a,1,x\n", 3, 5, `"x" is not a number`},
		{"negative", head + "f,o,a,-3,2\n", 2, 4, "negative count -3"},
		{"fraction", head + "f,o,a,1.5,2\n", 2, 4, "not a whole number"},
		{"empty count", head + "f,o,a,,2\n", 2, 4, "empty count"},
		{"short row", head + "f,o,a,1\n", 2, 5, "row has 4 fields"},
		{"empty id", head + ",o,a,1,1\n", 2, 1, "empty function ID"},
		{"bad quoting", head + "f,o,a,1\"2,3\n", 2, 0, "malformed CSV"},
		{"sum overflows", head + "f,o,a,4294967295,0\nf,o,a,1,0\n", 3, 4, "adds up to 4294967296 over its rows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, "inv.csv", c.content)
			tr, err := ReadAzure2019(p, AzureOptions{})
			if tr != nil {
				t.Error("a trace returned with an error")
			}
			wantInputError(t, err, p, c.line, c.col, c.msg)
		})
	}
	t.Run("unreadable path", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "missing.csv")
		_, err := ReadAzure2019(p, AzureOptions{})
		wantInputError(t, err, p, 0, 0, "no such file")
	})
	t.Run("bad memory file", func(t *testing.T) {
		inv := write(t, "inv.csv", head+"f,o,a,1,2\n")
		mem := write(t, "mem.csv", "HashApp,AverageAllocatedMb\na,big\n")
		_, err := ReadAzure2019(inv, AzureOptions{MemoryPath: mem})
		wantInputError(t, err, mem, 2, 2, `"big" is not a number`)
	})
	t.Run("durations file lacks Average", func(t *testing.T) {
		inv := write(t, "inv.csv", head+"f,o,a,1,2\n")
		dur := write(t, "run.csv", "HashFunction,Count\nf,3\n")
		_, err := ReadAzure2019(inv, AzureOptions{DurationsPath: dur})
		wantInputError(t, err, dur, 1, 0, "Average")
	})
}

func TestReadEvents(t *testing.T) {
	p := write(t, "events.csv", "timestamp,app_id,memory_mb,read_ratio,duration_ms\n"+
		"2026-03-01T10:02:30Z,b,100,0.2,10\n"+
		"1772359200,a,,,\n"+ // 2026-03-01T10:00:00Z as Unix seconds
		"2026-03-01T10:00:59.9Z,a,300,1,\n"+
		"1772359380.5,b,200,0.4,30\n"+ // 10:03:00.5
		"2026-03-01T11:00:00+01:00,a,,,\n") // 10:00:00Z in another zone
	tr, err := ReadEvents(p, EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint32{"a": {3, 0, 0, 0}, "b": {0, 0, 1, 1}}
	if got := counts(t, tr); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if !tr.Start.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) || tr.Total() != 5 {
		t.Errorf("start %v total %d", tr.Start, tr.Total())
	}
	a, b := tr.Apps[0], tr.Apps[1]
	if a.MemoryMB != 300 || a.ReadRatio != 1 || a.DurationMS != 0 {
		t.Errorf("app a profile %+v", a)
	}
	if b.MemoryMB != 150 || math.Abs(b.ReadRatio-0.3) > 1e-9 || b.DurationMS != 20 {
		t.Errorf("app b profile is the mean of its rows: %+v", b)
	}

	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tr, err = ReadEvents(p, EventsOptions{Start: start, Bin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := counts(t, tr); !reflect.DeepEqual(got, map[string][]uint32{"a": {0, 3}, "b": {0, 2}}) || !tr.Start.Equal(start) {
		t.Errorf("with start and hour bins: %v from %v", got, tr.Start)
	}
}

func TestReadEventsBOMAndCRLF(t *testing.T) {
	p := write(t, "events.csv", "\ufeffTimestamp,App_ID\r\n1772359200,a\r\n\r\n1772359261,a\r\n")
	tr, err := ReadEvents(p, EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := counts(t, tr)["a"]; !reflect.DeepEqual(got, []uint32{1, 1}) {
		t.Errorf("counts %v", got)
	}
}

func TestReadEventsBadInput(t *testing.T) {
	head := "timestamp,app_id\n"
	cases := []struct {
		name, content string
		line, col     int
		msg           string
	}{
		{"empty file", "", 1, 0, "empty file"},
		{"header only", head, 2, 0, "no events"},
		{"wrong header", "time,app\n", 1, 1, "unexpected column"},
		{"missing app column", "timestamp,memory_mb\n", 1, 0, "timestamp and app_id"},
		{"bad timestamp", head + "2026-03-01T10:00:00Z,a\nyesterday,a\n", 3, 1, `bad timestamp "yesterday"`},
		{"milliseconds", head + "1772359200000,a\n", 2, 1, "out of range"},
		{"empty app", head + "1772359200,\n", 2, 2, "empty app_id"},
		{"negative memory", "timestamp,app_id,memory_mb\n1772359200,a,-5\n", 2, 3, "negative value -5"},
		{"read ratio above 1", "timestamp,app_id,read_ratio\n1772359200,a,1.5\n", 2, 3, "above 1"},
		{"huge span", head + "1,a\n1772359200,a\n", 3, 1, "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, "events.csv", c.content)
			opt := EventsOptions{}
			if c.name == "huge span" {
				opt.Bin = time.Millisecond
			}
			tr, err := ReadEvents(p, opt)
			if tr != nil {
				t.Error("a trace returned with an error")
			}
			wantInputError(t, err, p, c.line, c.col, c.msg)
		})
	}
	t.Run("before start", func(t *testing.T) {
		p := write(t, "events.csv", head+"1772359200,a\n")
		_, err := ReadEvents(p, EventsOptions{Start: time.Unix(1772359200+60, 0)})
		wantInputError(t, err, p, 2, 1, "before the start")
	})
}

func TestRead(t *testing.T) {
	p := write(t, "events.csv", "timestamp,app_id\n1772359200,a\n")
	if tr, err := Read(FormatEvents, p, ReadOptions{}); err != nil || tr.Total() != 1 {
		t.Fatalf("Read events: %v", err)
	}
	if _, err := Read("parquet", p, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "unknown trace format") {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := Read(FormatEvents, p, ReadOptions{MemoryPath: "m.csv"}); err == nil {
		t.Error("memory file with events accepted")
	}
}

func TestSynth(t *testing.T) {
	opt := SynthOptions{Apps: 60, Days: 2, Seed: 42}
	a, b := Synth(opt), Synth(opt)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same options, different traces")
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Bins != 2*1440 || !a.Start.Equal(SynthStart) || len(a.Apps) != 60 {
		t.Fatalf("shape: %d bins from %v, %d apps", a.Bins, a.Start, len(a.Apps))
	}
	if reflect.DeepEqual(a, Synth(SynthOptions{Apps: 60, Days: 2, Seed: 43})) {
		t.Error("the seed changes nothing")
	}
	small := Synth(SynthOptions{Apps: 10, Days: 2, Seed: 42})
	if !reflect.DeepEqual(small.Apps, a.Apps[:10]) {
		t.Error("app i depends on the fleet size")
	}
	kinds := map[string]int{}
	for _, app := range a.Apps {
		kind := app.ID[strings.LastIndex(app.ID, "-")+1:]
		kinds[kind]++
		if app.MemoryMB < 32 || app.ReadRatio <= 0 || app.ReadRatio >= 1 || app.DurationMS < 1 {
			t.Errorf("%s profile %v MB, read %v, %v ms", app.ID, app.MemoryMB, app.ReadRatio, app.DurationMS)
		}
	}
	for _, k := range []string{KindTimer, KindDiurnal, KindBursty, KindRare, KindHeavy} {
		if kinds[k] == 0 {
			t.Errorf("no %s app among 60: %v", k, kinds)
		}
	}
	// A timer fires on a fixed period: the gaps between active bins repeat.
	for _, app := range a.Apps {
		if !strings.HasSuffix(app.ID, KindTimer) {
			continue
		}
		var active []int
		for i, c := range app.Counts {
			if c > 0 {
				active = append(active, i)
			}
		}
		gaps := map[int]int{}
		for i := 1; i < len(active); i++ {
			gaps[active[i]-active[i-1]]++
		}
		best := 0
		for _, n := range gaps {
			best = max(best, n)
		}
		if len(active) > 10 && best < (len(active)-1)*9/10 {
			t.Errorf("%s: gaps %v are not periodic", app.ID, gaps)
		}
	}
	// Second-wide bins (the demos' time scale) work.
	sec := Synth(SynthOptions{Apps: 3, Days: 1, Bin: time.Second, Seed: 1})
	if sec.Bins != 86400 || sec.Validate() != nil {
		t.Errorf("second bins: %d", sec.Bins)
	}
}

// TestSynthShapes checks each kind looks like what it claims to be.
func TestSynthShapes(t *testing.T) {
	tr := Synth(SynthOptions{Apps: 80, Days: 2, Seed: 11})
	for _, a := range tr.Apps {
		kind := a.ID[strings.LastIndex(a.ID, "-")+1:]
		var total uint64
		active, longestIdle, idle := 0, 0, 0
		hours := make([]uint64, 24)
		for b, c := range a.Counts {
			total += uint64(c)
			hours[tr.BinStart(b).Hour()] += uint64(c)
			if c > 0 {
				active++
				idle = 0
			} else {
				idle++
				longestIdle = max(longestIdle, idle)
			}
		}
		switch kind {
		case KindHeavy:
			if active < tr.Bins*99/100 || total < uint64(tr.Bins)*15 {
				t.Errorf("%s: heavy hitter active in %d of %d bins, %d requests", a.ID, active, tr.Bins, total)
			}
		case KindRare:
			if total == 0 || total > 25 { // 0.3–5 a day, Poisson
				t.Errorf("%s: rare app with %d requests in 2 days", a.ID, total)
			}
		case KindBursty:
			if longestIdle < 30 {
				t.Errorf("%s: bursty app never idle for 30 minutes (longest %d)", a.ID, longestIdle)
			}
		case KindDiurnal:
			busiest, quietest := slices.Max(hours), slices.Min(hours)
			if total > 500 && busiest < 5*quietest {
				t.Errorf("%s: business-hours app has no daily swing: %v", a.ID, hours)
			}
		}
	}
}

func TestSharedAzureSample(t *testing.T) {
	dir := os.Getenv("FOREWARM_AZURE_SAMPLE")
	if dir == "" {
		dir = filepath.Join("..", "testdata", "azure2019-sample") // the copy in the repository
	}
	inv := filepath.Join(dir, "1350_inv.csv")
	if _, err := os.Stat(inv); err != nil {
		t.Fatalf("the shared Azure sample is missing (set FOREWARM_AZURE_SAMPLE to its folder): %v", err)
	}
	tr, err := ReadAzure2019(inv, AzureOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv"), DurationsPath: filepath.Join(dir, "1350_run.csv")})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	// 927,272 = the sum of every minute column of 1350_inv.csv (awk).
	if tr.Total() != 927272 || len(tr.Apps) != 1350 || tr.Bins != 1440 {
		t.Errorf("total %d, apps %d, bins %d; want 927272, 1350, 1440", tr.Total(), len(tr.Apps), tr.Bins)
	}
	withDuration := 0
	for _, a := range tr.Apps {
		if a.MemoryMB <= 0 {
			t.Fatalf("%s lacks memory", a.ID)
		}
		if a.DurationMS > 0 {
			withDuration++
		}
	}
	if withDuration != 1350-64 { // 64 functions average 0 ms in 1350_run.csv
		t.Errorf("%d functions with a duration, want %d", withDuration, 1350-64)
	}
}
