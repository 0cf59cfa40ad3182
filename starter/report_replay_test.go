package main

import (
	"context"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// `starter report --replay` judges a live window against the simulator run
// on the same stored history with the champion model (real ClickHouse, real
// ONNX Runtime). The live requests and leases here are written as a replay
// would have left them, with known warm/cold outcomes and one lease held
// through the window, so the live figures are checked exactly; the
// simulated ones must count the same requests and share the JSON keys.
func TestReportReplayComparesLiveWithTheSimulator(t *testing.T) {
	testenv.ORTLib(t)
	st := storetest.New(t)
	ctx := context.Background()
	tr := trace.Synth(trace.SynthOptions{Apps: 12, Days: 1, Seed: 11})
	if _, err := st.LoadTrace(ctx, tr, store.LoadOptions{Format: "synth", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	out, err := runStarter(t, "model", "train", "--from-store", "--clickhouse-database", st.Database(), "--json",
		"--samples", "800", "--epochs", "1", "--hidden", "8", "--seq-len", "24")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var trained modelTrainOutput
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &trained); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Champion whether or not the toy model beat its baselines.
	if err := st.SetModelStatus(ctx, trained.Version, store.StatusChampion); err != nil {
		t.Fatal(err)
	}

	// The window: the trace's last 60 bins; three apps active in some of
	// its bins but not all (so the lease below has idle bins to waste).
	const bins = 60
	from := tr.Bins - bins
	var apps []string
	for _, a := range tr.Apps {
		active := 0
		for _, c := range a.Counts[from:] {
			if c > 0 {
				active++
			}
		}
		if active >= 10 && active <= 50 && len(apps) < 3 {
			apps = append(apps, a.ID)
		}
	}
	if len(apps) < 3 {
		t.Fatalf("the synthetic trace has %d apps active in 10–50 of its last %d bins, want 3", len(apps), bins)
	}

	// Live: one second per trace minute. The first request of every tenth
	// active bin is cold; the first app holds a 100 MB lease all window.
	live := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	var reqs []store.Request
	cold := map[string]int{}
	total := map[string]int{}
	idleBins := 0
	for _, id := range apps {
		a := tr.Apps[slices.IndexFunc(tr.Apps, func(a trace.App) bool { return a.ID == id })]
		active := 0
		for k, c := range a.Counts[from:] {
			if c == 0 {
				if id == apps[0] {
					idleBins++
				}
				continue
			}
			active++
			for j := range int(c) {
				warm := !(j == 0 && active%10 == 0)
				if !warm {
					cold[id]++
				}
				total[id]++
				at := live.Add(time.Duration(k)*time.Second + time.Duration(j+1)*time.Millisecond)
				reqs = append(reqs, store.Request{Time: at, RequestID: uuid.NewString(), App: id, Host: "h1", Warm: warm, SizeMB: 64, Outcome: map[bool]string{true: records.OutcomeWarm, false: records.OutcomeCold}[warm]})
			}
		}
	}
	if idleBins == 0 {
		t.Fatal("the leased app has no idle bin: the waste check would be vacuous")
	}
	if err := st.RecordRequests(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	lease := apps[0] + ".test.h1"
	if err := st.RecordPreparationEvents(ctx, []store.PreparationEvent{
		{Time: live, PreparationID: lease, App: apps[0], Host: "h1", Event: records.EventReserved, MemoryMB: 100},
		{Time: live.Add(bins * time.Second), PreparationID: lease, App: apps[0], Host: "h1", Event: records.EventReleased, MemoryMB: 100, HeldSeconds: bins},
	}); err != nil {
		t.Fatal(err)
	}
	summary := replaySummary{TraceFrom: tr.BinStart(from), TraceTo: tr.BinStart(tr.Bins), Apps: apps, Format: "synth",
		FromBin: from, Bins: bins, TraceBinSeconds: 60, StartedAt: live, LiveBinSeconds: 1}
	dir := t.TempDir()
	sumFile := filepath.Join(dir, "replay.json")
	raw, _ := json.Marshal(summary)
	if err := os.WriteFile(sumFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	plot := filepath.Join(dir, "replay.png")
	out, err = runStarter(t, "report", "--replay", sumFile, "--plot", plot, "--json", "--clickhouse-database", st.Database())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var keys map[string]map[string]any
	var got replayReport
	body := []byte(out[strings.Index(out, "{"):])
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_ = json.Unmarshal(body, &keys)
	for _, side := range []string{"live", "simulated"} {
		for _, k := range []string{"requests", "dropped", "warm_share", "cold_rate_p75", "cold_rate_overall", "wasted_mb_s"} {
			if _, ok := keys[side][k]; !ok {
				t.Errorf("%s has no %q: %v", side, k, keys[side])
			}
		}
	}

	t.Logf("live %+v\nsimulated %+v", got.Live, got.Simulated)
	n, c := 0, 0
	var rates []float64
	for _, id := range apps {
		n += total[id]
		c += cold[id]
		rates = append(rates, float64(cold[id])/float64(total[id]))
	}
	sort.Float64s(rates)
	if got.Live.Requests != n || got.Live.Dropped != 0 {
		t.Errorf("live requests %d (dropped %d), wrote %d", got.Live.Requests, got.Live.Dropped, n)
	}
	if want := 1 - float64(c)/float64(n); math.Abs(got.Live.WarmShare-want) > 1e-9 {
		t.Errorf("live warm share %v, want %v", got.Live.WarmShare, want)
	}
	if want := float64(c) / float64(n); math.Abs(got.Live.ColdOverall-want) > 1e-9 {
		t.Errorf("live overall cold rate %v, want %v", got.Live.ColdOverall, want)
	}
	if got.Live.ColdP75 < rates[1] || got.Live.ColdP75 > rates[2] {
		t.Errorf("live p75 cold rate %v outside the two highest app rates %v", got.Live.ColdP75, rates)
	}
	// 100 MB through the app's idle bins, on the trace clock (60 s a bin).
	if want := 100.0 * 60 * float64(idleBins); math.Abs(got.Live.WastedMBs-want) > 100*60*0.02 {
		t.Errorf("live waste %.0f MB·s, want %.0f (%d idle bins)", got.Live.WastedMBs, want, idleBins)
	}
	if got.Simulated.Requests != n {
		t.Errorf("the simulator counted %d requests of the window, live %d", got.Simulated.Requests, n)
	}
	if got.Simulated.WarmShare < 0 || got.Simulated.WarmShare > 1 || got.Simulated.WastePct == nil || got.Live.WastePct == nil {
		t.Errorf("simulated figures incomplete: %+v, live waste %% %v", got.Simulated, got.Live.WastePct)
	}
	if got.Model != trained.Version {
		t.Errorf("simulated with %q, the champion is %q", got.Model, trained.Version)
	}
	if len(got.Apps) != len(apps) {
		t.Fatalf("per-app figures for %d apps, want %d", len(got.Apps), len(apps))
	}
	for _, a := range got.Apps {
		if a.Live.Requests != total[a.App] || a.Live.Cold != cold[a.App] || a.Simulated.Requests != total[a.App] {
			t.Errorf("%s: live %+v simulated %+v, wrote %d requests, %d cold", a.App, a.Live, a.Simulated, total[a.App], cold[a.App])
		}
	}

	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("--plot wrote no PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
		t.Errorf("plot is %v", b)
	}
}
