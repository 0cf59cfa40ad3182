package wfclient

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

type fakeSource struct {
	profiles []store.AppProfile
	asked    struct {
		apps []string
		end  time.Time
		bins int
		bin  time.Duration
	}
}

func (f *fakeSource) AppProfiles(context.Context) ([]store.AppProfile, error) { return f.profiles, nil }
func (f *fakeSource) RecentActivity(_ context.Context, apps []string, end time.Time, bins int, bin time.Duration) (map[string][]float64, error) {
	f.asked.apps, f.asked.end, f.asked.bins, f.asked.bin = apps, end, bins, bin
	out := map[string][]float64{}
	for _, a := range apps {
		out[a] = []float64{1, 0, 2}
	}
	return out, nil
}
func (f *fakeSource) Adjustments(context.Context) (map[[2]string]float64, error) {
	return map[[2]string]float64{{"a", "h1"}: 0.2, {"b", "h1"}: -0.1}, nil
}

var now = time.Date(2026, 1, 5, 10, 0, 30, 0, time.UTC)

func TestLoopInputsWithoutTheStoreSeedThemselves(t *testing.T) {
	in, err := LoopInputs(context.Background(), nil, Seed{Apps: []string{"a", "b"}, Bin: time.Second, Window: 60}, now)
	if err != nil || len(in) != 2 || in[0].Seeded || in[1].App != "b" || in[1].Window != 60 {
		t.Fatalf("%+v, %v", in, err)
	}
}

func TestLoopInputsSeedEveryAppInBulk(t *testing.T) {
	src := &fakeSource{profiles: []store.AppProfile{{ID: "a", MemoryMB: 400, ReadRatio: 0.3}, {ID: "b"}}}
	in, err := LoopInputs(context.Background(), src, Seed{All: true, Bin: time.Minute, Window: 3, MemoryScale: 0.5}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !src.asked.end.Equal(now.Truncate(time.Minute)) || src.asked.bins != 3 || src.asked.bin != time.Minute {
		t.Errorf("asked %+v", src.asked)
	}
	a, b := in[0], in[1]
	if !a.Seeded || a.Profile.MemoryMB != 200 || a.Profile.DiskMB != 50 || a.Adjustments["h1"] != 0.2 || len(a.Recent) != 3 || a.Clock != nil {
		t.Errorf("a: %+v", a)
	}
	if b.Profile.MemoryMB != 85 || b.Adjustments["h1"] != -0.1 {
		t.Errorf("b (unknown memory: the default, scaled): %+v", b.Profile)
	}
}

func TestLoopInputsContinueATraceOnItsClock(t *testing.T) {
	src := &fakeSource{profiles: []store.AppProfile{{ID: "a"}, {ID: "b"}}}
	end := time.Date(2019, 7, 15, 16, 0, 0, 0, time.UTC)
	start := now.Add(20 * time.Second)
	in, err := LoopInputs(context.Background(), src, Seed{Apps: []string{"b"}, Bin: time.Second, Window: 3, End: end, SeedBin: time.Minute, ClockStart: start}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].App != "b" || in[0].Clock == nil || !in[0].Clock.TraceStart.Equal(end) || in[0].Clock.TraceBin != time.Minute {
		t.Fatalf("%+v", in)
	}
	if !in[0].BinEnd.Equal(start) || in[0].Pending != 2 || len(in[0].Recent) != 2 {
		t.Errorf("the last stored bin is the open one: %+v", in[0])
	}
	if _, err := LoopInputs(context.Background(), src, Seed{Apps: []string{"zz"}, Bin: time.Second, End: end}, now); err == nil || !strings.Contains(err.Error(), `application "zz" has no stored history`) {
		t.Errorf("unknown app: %v", err)
	}
}

func TestStartLoopOptions(t *testing.T) {
	pol := workflows.DefaultPolicy()
	pol.DryRun = true
	o := StartLoopOptions("q", workflows.LoopInput{App: "a", Bin: time.Second, Policy: pol})
	if o.ID != "predict/a" || o.TaskQueue != "q" || !o.WorkflowExecutionErrorWhenAlreadyStarted || o.StaticSummary != "prediction loop of a" {
		t.Errorf("%+v", o)
	}
	if v, ok := o.TypedSearchAttributes.GetKeyword(workflows.AttrLoopState); !ok || v != workflows.LoopStateDryRun {
		t.Errorf("state attribute %q", v)
	}
}
