package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/workflows"
)

// A cold arrival must wake its loop for one of the two bins after its
// own; arrivals at a holding loop, before the first wake or too close to
// the stop are not judged.
func TestJudgeWakes(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	lw := loopWakes{App: "a", Router: true, End: at(60), Wakes: []loopWake{
		{At: at(1.2)},               // decides bin 1: holds nothing
		{At: at(5.2)},               // bin 5: in time for the arrival in bin 3
		{At: at(7.3)},               // bin 7: woken at once for bin 6
		{At: at(10.9)},              // bin 10: one bin late for bin 8: in time
		{At: at(20.2), Holds: true}, // bin 20: holds
		{At: at(30.2)},              // bin 30: lets go
	}, Signals: []time.Time{at(4)}}
	busy := []time.Time{
		at(0),  // before the first wake: not judged
		at(3),  // due before 6; next wake decided bin 5, at 5.2: in time
		at(6),  // next wake at 7.3: in time
		at(8),  // next wake at 10.9 (bin 10): in time
		at(8),  // the same bin twice: once
		at(12), // next wake at 20.2: lost
		at(25), // the plan holds: not judged
		at(31), // nothing after 30.2: lost (the loop ran until 60)
		at(58), // due before 61, stopped at 60: not judged
	}
	cold, late, lost, err := judgeWakes(lw, busy, nil, time.Second)
	require.NoError(t, err)
	require.Equal(t, 5, cold, "the bins 3, 6, 8, 12 and 31")
	require.Zero(t, late)
	require.Equal(t, []lostWake{{App: "a", Bin: at(12), Next: at(20.2)}, {App: "a", Bin: at(31)}}, lost)

	// Asleep through bins 2 and 3 after an arrival in bin 1: the next wake
	// decides bin 4, two bins after the arrival's became final; the watch's
	// signal for bin 2 did come.
	lw = loopWakes{App: "b", End: at(60), Wakes: []loopWake{{At: at(0.2)}, {At: at(4.2)}}, Signals: []time.Time{at(2)}}
	cold, _, lost, err = judgeWakes(lw, []time.Time{at(1)}, nil, time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, cold)
	require.Equal(t, []lostWake{{App: "b", Bin: at(1), Next: at(4.2), Signal: true}}, lost)
	require.Equal(t, "b: arrival in the bin of 10:00:01, next wake 10:00:04.200, a wake signal came", lost[0].String())

	// The wake for bin 3 comes at 3.999 (late in its bin): in time.
	lw.Wakes[1].At = at(3.999)
	_, _, lost, err = judgeWakes(lw, []time.Time{at(1)}, nil, time.Second)
	require.NoError(t, err)
	require.Empty(t, lost)
}

// A bin a restarted gateway's spool wrote reached the store after the
// watch had checked it: it becomes final at the first boundary whose grace
// (0.2 s of a 1-s bin) ends once it is in the store, and its loop must
// decide that boundary's bin or the next.
func TestJudgeWakesOfASpooledBin(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	lw := loopWakes{App: "a", End: at(60), Wakes: []loopWake{{At: at(0.2)}, {At: at(7.3)}}, Signals: []time.Time{at(6)}}
	busy := []time.Time{at(2)}

	// In the store at 5.5: final at 6 (the grace of 5 ended at 5.2,
	// before it), due before 8: the wake at 7.3 is in time. On time, the
	// bin would have been due before 5.
	cold, late, lost, err := judgeWakes(lw, busy, map[time.Time]time.Time{at(2): at(5.5)}, time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, cold)
	require.Equal(t, 1, late)
	require.Empty(t, lost)
	_, late, lost, err = judgeWakes(lw, busy, nil, time.Second)
	require.NoError(t, err)
	require.Zero(t, late)
	require.Len(t, lost, 1, "judged as on time: lost")

	// In the store at 5.1: final at 5 (its grace ends at 5.2), due before
	// 7: the wake at 7.3 is lost. The watch's signal for 6 came.
	_, late, lost, err = judgeWakes(lw, busy, map[time.Time]time.Time{at(2): at(5.1)}, time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, late)
	require.Equal(t, []lostWake{{App: "a", Bin: at(2), Heard: at(5.1), Next: at(7.3), Signal: true}}, lost)
	require.Equal(t, "a: arrival in the bin of 10:00:02, written late by a restarted gateway (in the store at 10:00:05.100), next wake 10:00:07.300, a wake signal came", lost[0].String())

	// Another bin of the map does not concern this arrival; a loop holding
	// an instance is not judged, late or not.
	_, late, _, err = judgeWakes(lw, busy, map[time.Time]time.Time{at(3): at(5.1)}, time.Second)
	require.NoError(t, err)
	require.Zero(t, late)
	lw.Wakes[0].Holds = true
	cold, late, lost, err = judgeWakes(lw, busy, map[time.Time]time.Time{at(2): at(5.1)}, time.Second)
	require.NoError(t, err)
	require.Zero(t, cold+late+len(lost))
}

func TestJudgeWakesRefusesBadInput(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	_, _, _, err := judgeWakes(loopWakes{App: "a"}, []time.Time{t0.Add(500 * time.Millisecond)}, nil, time.Second)
	require.EqualError(t, err, "loop a: arrival bin 2026-12-07 10:00:00.5 +0000 UTC is not a boundary of 1s bins")
	_, _, _, err = judgeWakes(loopWakes{App: "a", Wakes: []loopWake{{At: t0.Add(time.Second)}, {At: t0}}}, nil, nil, time.Second)
	require.EqualError(t, err, "loop a: wakes out of order")
	_, _, _, err = judgeWakes(loopWakes{App: "a"}, nil, nil, 0)
	require.EqualError(t, err, "bin width 0s: must be positive")
}

// The wakes of a history like a loop's during a ClickHouse cut: one long
// workflow task ran a wake per bin (each forecast failing, each retry on a
// timer of zero), its markers all recorded when it completed; each wake is
// dated by the end of the forecast before it, not by the task's start.
func TestWakesFromHistory(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 12, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	dc := payload.Converter()
	id := int64(0)
	ev := func(typ enumspb.EventType, when time.Time) *historypb.HistoryEvent {
		id++
		return &historypb.HistoryEvent{EventId: id, EventType: typ, EventTime: timestamppb.New(when)}
	}
	marker := func(typ string, replay time.Time, res *wire.ForecastResult) *historypb.HistoryEvent {
		data, err := dc.ToPayloads(struct {
			ActivityID, ActivityType string
			ReplayTime               time.Time
		}{"1", typ, replay})
		require.NoError(t, err)
		a := &historypb.MarkerRecordedEventAttributes{MarkerName: "LocalActivity", Details: map[string]*commonpb.Payloads{"data": data}}
		if res == nil {
			a.Failure = &failurepb.Failure{Message: "arrival mirror: connection refused"}
		} else {
			r, err := dc.ToPayloads(res)
			require.NoError(t, err)
			a.Details["result"] = r
		}
		e := ev(enumspb.EVENT_TYPE_MARKER_RECORDED, at(30))
		e.Attributes = &historypb.HistoryEvent_MarkerRecordedEventAttributes{MarkerRecordedEventAttributes: a}
		return e
	}
	signal := func(name string, when time.Time, v any) *historypb.HistoryEvent {
		in, err := dc.ToPayloads(v)
		require.NoError(t, err)
		e := ev(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, when)
		e.Attributes = &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{
			WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{SignalName: name, Input: in}}
		return e
	}
	events := []*historypb.HistoryEvent{
		ev(enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, at(10.2)),
		marker(workflows.ActivityForecast, at(10.21), &wire.ForecastResult{Action: policy.Keep}),
		ev(enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, at(16.2)),
		marker(workflows.ActivityForecast, at(17.2), nil),
		marker("Other", at(17.3), nil), // another local activity moves the clock too
		marker(workflows.ActivityForecast, at(18.2), nil),
		signal(workflows.SignalWake, at(18.5), workflows.WakeSignal{Bin: at(19), Reason: "a request found no warm instance"}),
		ev(enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, at(19.1)),
		marker(workflows.ActivityForecast, at(19.25), &wire.ForecastResult{Action: policy.Idle}),
		signal(workflows.SignalStop, at(40), workflows.StopSignal{Reason: "soak over"}),
	}
	var lw loopWakes
	require.NoError(t, lw.add(events))
	require.Equal(t, []loopWake{{At: at(10.2), Holds: true}, {At: at(16.2)}, {At: at(17.3)}, {At: at(19.1)}}, lw.Wakes)
	require.Equal(t, []time.Time{at(19)}, lw.Signals)
	require.Equal(t, at(40), lw.End)
}
