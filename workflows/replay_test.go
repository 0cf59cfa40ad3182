package workflows

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
)

// TestReplayRecordedHistories replays histories recorded from the real dev
// server (worker's TestEndToEnd with FOREWARM_RECORD_HISTORIES set): a change
// to workflow code that would break running workflows fails here.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata/")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: payload.Converter()})
			require.NoError(t, err)
			RegisterPrediction(r)
			RegisterTraining(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}

type nameRecorder map[string]bool

func (n nameRecorder) RegisterActivityWithOptions(_ any, o activity.RegisterOptions) {
	n[o.Name] = true
}

// Every activity a recorded history scheduled is registered under that
// name (names.go), whatever its Go method is called.
func TestRecordedActivityNamesAreRegistered(t *testing.T) {
	names := nameRecorder{}
	RegisterPredictionActivities(names, &activities.Predictor{}, &activities.Hosts{}, &activities.Requests{})
	RegisterTrainingActivities(names, &activities.Training{})
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	re := regexp.MustCompile(`"activityType":\s*\{\s*"name":\s*"([^"]+)"`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range re.FindAllSubmatch(b, -1) {
			seen++
			require.True(t, names[string(m[1])], "%s schedules activity %q, which no name in names.go registers", filepath.Base(f), m[1])
		}
	}
	require.NotZero(t, seen, "no activity found in the recorded histories")
}

// The recorded histories cover the paths a change is most likely to break,
// not only the happy ones: each fixture below must exist and show its path
// in its events (a re-recording that lost it fails here).
func TestRecordedHistoriesCoverTheFaultPaths(t *testing.T) {
	cases := []struct {
		file, what string
		has        func(events []*historypb.HistoryEvent) bool
	}{
		{"preparation-fallback.json", "attempts [first host reserve-failed, second host prepared]", func(evs []*historypb.HistoryEvent) bool {
			var res PrepareResult
			return decodeResult(t, evs, &res) && len(res.Attempts) == 2 && res.Attempts[0].Outcome == "reserve-failed" &&
				res.Attempts[1].Outcome == "prepared" && len(res.Leases) == 1
		}},
		{"preparation-cancelled.json", "a cancelled preparation that released its reservation", func(evs []*historypb.HistoryEvent) bool {
			return hasEvent(evs, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED) && released(t, evs, func(in wire.ReleaseInput) bool { return in.Reason == "preparation cancelled" })
		}},
		{"loop-stopped-mid-preparation.json", "a stop that cancels the preparation in flight", func(evs []*historypb.HistoryEvent) bool {
			var res LoopResult
			return hasEvent(evs, enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED) && decodeResult(t, evs, &res) && strings.HasPrefix(res.Reason, "stopped:")
		}},
		{"loop-lease-expired.json", "a lease released as expired", func(evs []*historypb.HistoryEvent) bool {
			return released(t, evs, func(in wire.ReleaseInput) bool { return in.Event == "expired" })
		}},
		{"request-cold.json", "a request served cold", func(evs []*historypb.HistoryEvent) bool {
			var res RequestResult
			return decodeResult(t, evs, &res) && !res.Warm && res.Outcome == "cold"
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", c.file))
			require.NoError(t, err)
			var h historypb.History
			require.NoError(t, protojson.Unmarshal(b, &h))
			require.True(t, c.has(h.Events), "%s does not show %s", c.file, c.what)
		})
	}
}

func hasEvent(evs []*historypb.HistoryEvent, typ enumspb.EventType) bool {
	for _, e := range evs {
		if e.GetEventType() == typ {
			return true
		}
	}
	return false
}

// decodeResult decodes the workflow's completion result into v.
func decodeResult(t *testing.T, evs []*historypb.HistoryEvent, v any) bool {
	for _, e := range evs {
		if a := e.GetWorkflowExecutionCompletedEventAttributes(); a != nil {
			require.NoError(t, payload.Converter().FromPayloads(a.GetResult(), v))
			return true
		}
	}
	return false
}

// released says whether a Release was scheduled with an input that has
// what is wanted (decoded, so a history recorded in either style reads).
func released(t *testing.T, evs []*historypb.HistoryEvent, has func(wire.ReleaseInput) bool) bool {
	for _, e := range evs {
		a := e.GetActivityTaskScheduledEventAttributes()
		if a == nil || a.GetActivityType().GetName() != ActivityRelease {
			continue
		}
		var in wire.ReleaseInput
		require.NoError(t, payload.Converter().FromPayloads(a.GetInput(), &in))
		if has(in) {
			return true
		}
	}
	return false
}

// Loop inputs recorded under the names from when the loop woke at every
// bin (next_tick, max_ticks_per_run, stats.ticks) read into today's
// fields: a running loop carries its state across the rename.
func TestRecordedLoopInputsReadUnderRenamedFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "loop-continued-as-new.json"))
	require.NoError(t, err)
	var h historypb.History
	require.NoError(t, protojson.Unmarshal(b, &h))
	checked := 0
	for _, e := range h.Events {
		a := e.GetWorkflowExecutionContinuedAsNewEventAttributes()
		if a == nil {
			continue
		}
		p := a.GetInput().GetPayloads()[0]
		var old struct {
			NextTick       time.Time `json:"next_tick"`
			MaxTicksPerRun int       `json:"max_ticks_per_run"`
			Stats          struct {
				Ticks int `json:"ticks"`
			} `json:"stats"`
		}
		require.NoError(t, json.Unmarshal(p.GetData(), &old))
		require.False(t, old.NextTick.IsZero(), "the recorded input was written under next_tick")
		var in LoopInput
		require.NoError(t, payload.Converter().FromPayload(p, &in))
		require.True(t, in.BinEnd.Equal(old.NextTick), "BinEnd %v, recorded next_tick %v", in.BinEnd, old.NextTick)
		require.Equal(t, old.MaxTicksPerRun, in.MaxWakesPerRun)
		require.Equal(t, old.Stats.Ticks, in.Stats.Wakes)
		checked++
	}
	require.NotZero(t, checked, "no continued-as-new input in the recorded history")
}
