package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/jsonx"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/workflows"
)

func TestLoopCommandsRefuseBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"loop", "threshold", "--app", "a", "1.5"},
		{"loop", "threshold", "--app", "a", "NaN"},
		{"loop", "threshold", "--app", "a", "--", "-0.1"},
		{"loop", "threshold", "--app", "a", "high"},
		{"loop", "threshold", "0.5"},
		{"loop", "start", "--app", "a", "--all"},
		{"loop", "start"},
		{"loop", "start", "--app", "a", "--threshold", "2"},
		{"loop", "start", "--app", "a", "--bin", "1500ms"},
		{"loop", "start", "--app", "a/b"},
		{"loop", "start", "--app", "a", "--top-n", "0"},
		{"loop", "policy", "--app", "a"},
		{"loop", "policy", "--app", "a", "--threshold", "NaN"},
		{"loop", "policy", "--app", "a", "--objective", "per_request"},
		{"loop", "start", "--app", "a", "--objective", "p90"},
		{"loop", "start", "--app", "a", "--keep-alive-bins", "-1"},
		{"loop", "status"},
		{"request", "--app", "a", "--read-ratio", "2"},
		{"request"},
		{"schedule", "training", "--every", "10s"},
		{"train", "--from", "yesterday", "--to", "2026-01-01T00:00:00Z"},
		{"train", "--from", "2019-07-15T00:00:00Z", "--to", "2019-07-15T12:00:00Z", "--span", "1h"},
		{"train", "--from", "2019-07-15T00:00:00Z"},
		{"train", "--span", "0s"},
		{"train", "--span", "-1h"},
	} {
		_, err := runStarter(t, args...)
		require.Error(t, err, "%v", args)
		require.Equal(t, 2, exitCode(err), "%v: %v", args, err)
	}
}

// devServer points the CLI at the Temporal dev server and returns a client
// of it (closed when the test ends) and a random suffix for the names the
// test creates there.
func devServer(t *testing.T) (client.Client, string) {
	t.Helper()
	tc := testenv.Temporal(t)
	t.Setenv("TEMPORAL_ADDRESS", tc.Address)
	c, err := tc.Dial(nil)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	var r [4]byte
	_, _ = rand.Read(r[:])
	return c, hex.EncodeToString(r[:])
}

// fakeDemand predicts from the last bin, so the loop is testable without
// ClickHouse or ONNX Runtime.
type fakeDemand struct{}

func (fakeDemand) Predict(in []activities.DemandQuery) ([]float64, error) {
	return make([]float64, len(in)), nil
}
func (fakeDemand) Version() string  { return "fake-1" }
func (fakeDemand) HistoryBins() int { return 8 }
func (fakeDemand) HorizonBins() int { return 5 }

type fakeRegistry struct{}

func (fakeRegistry) ChampionVersion(context.Context) (string, error) { return "fake-1", nil }
func (fakeRegistry) LoadDemand(context.Context, string) (activities.DemandModel, error) {
	return fakeDemand{}, nil
}

type fakeHistory struct{}

func (fakeHistory) RecentActivity(_ context.Context, apps []string, _ time.Time, bins int, _ time.Duration) (map[string][]float64, error) {
	return map[string][]float64{apps[0]: make([]float64, bins)}, nil
}
func (fakeHistory) AppProfile(_ context.Context, app string) (wire.AppProfile, bool, error) {
	return wire.AppProfile{App: app, MemoryMB: 64}, true, nil
}
func (fakeHistory) Adjustments(context.Context, string) (map[string]float64, error) { return nil, nil }

// TestLoopCommandsAgainstTheDevServer drives a loop through the CLI on the
// real Temporal server (the worker's activities use fakes: no ClickHouse).
func TestLoopCommandsAgainstTheDevServer(t *testing.T) {
	c, suffix := devServer(t)
	queue, app := "cli-"+suffix, "cli-"+suffix
	w := worker.New(c, queue, worker.Options{})
	workflows.RegisterPrediction(w)
	w.RegisterActivity(&activities.Predictor{Models: fakeRegistry{}, History: fakeHistory{}})
	require.NoError(t, w.Start())
	defer w.Stop()
	defer func() { _ = c.TerminateWorkflow(context.Background(), workflows.LoopWorkflowID(app), "", "test over") }()

	out, err := runStarter(t, "loop", "start", "--app", app, "--bin", "1s", "--threshold", "0.4", "--dry-run", "--task-queue", queue, "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"status": "started"`)
	out, err = runStarter(t, "loop", "start", "--app", app, "--bin", "1s", "--task-queue", queue)
	require.NoError(t, err, out)
	require.Contains(t, out, "already running")

	status := func() workflows.LoopStatus {
		out, err := runStarter(t, "loop", "status", "--app", app, "--json")
		require.NoError(t, err, out)
		var st workflows.LoopStatus
		require.NoError(t, jsonx.Decode([]byte(out), &st))
		return st
	}
	require.Eventually(t, func() bool { return status().Stats.Predictions > 0 }, 30*time.Second, 250*time.Millisecond)
	st := status()
	require.Equal(t, 0.4, st.Policy.Threshold)
	require.Equal(t, workflows.LoopStateDryRun, st.State)
	require.Equal(t, "fake-1", st.ModelVersion)

	out, err = runStarter(t, "loop", "threshold", "--app", app, "0.25")
	require.NoError(t, err, out)
	require.Eventually(t, func() bool { return status().Policy.Threshold == 0.25 }, 10*time.Second, 100*time.Millisecond)

	out, err = runStarter(t, "loop", "pause", "--app", app)
	require.NoError(t, err, out)
	require.Equal(t, workflows.LoopStatePaused, status().State)
	out, err = runStarter(t, "loop", "resume", "--app", app)
	require.NoError(t, err, out)
	require.Equal(t, workflows.LoopStateDryRun, status().State)

	// The Update's validator answers a bad policy with the reason.
	_, err = runStarter(t, "loop", "policy", "--app", app, "--lookahead", "0")
	require.Error(t, err)
	require.Contains(t, err.Error(), "lookahead_bins 0 is outside [1, 1440]")
	out, err = runStarter(t, "loop", "policy", "--app", app, "--top-n", "3", "--json")
	require.NoError(t, err, out)
	require.Equal(t, 3, status().Policy.TopN)

	out, err = runStarter(t, "loop", "status", "--app", app)
	require.NoError(t, err, out)
	require.Contains(t, out, "threshold 0.25 for 170 MB")

	out, err = runStarter(t, "loop", "stop", "--app", app, "--wait", "--reason", "cli test")
	require.NoError(t, err, out)
	require.Contains(t, out, "stopped: cli test")

	_, err = runStarter(t, "loop", "status", "--app", "no-such-app-"+suffix)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "starter loop start --app no-such-app-"+suffix), err.Error())
}

// `starter train` starts the training workflow with the range asked for,
// or without one the default span of the most recent history (no worker
// polls the queue: the input is read from the workflow's history).
func TestTrainCommandStartsTheTrainingWorkflow(t *testing.T) {
	c, suffix := devServer(t)
	queue := "cli-train-" + suffix

	started := func(args ...string) workflows.TrainingInput {
		t.Helper()
		out, err := runStarter(t, append([]string{"train", "--task-queue", queue}, args...)...)
		require.NoError(t, err, out)
		id, _, ok := strings.Cut(strings.TrimPrefix(out, "training "), " started")
		require.True(t, ok, out)
		defer func() { _ = c.TerminateWorkflow(context.Background(), id, "", "test over") }()
		ev, err := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT).Next()
		require.NoError(t, err)
		var in workflows.TrainingInput
		require.NoError(t, payload.Converter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in))
		return in
	}
	in := started("--from", "2019-07-15T00:00:00Z", "--to", "2019-07-15T12:00:00Z", "--bin", "1m")
	require.Equal(t, time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC), in.From)
	require.Equal(t, time.Date(2019, 7, 15, 12, 0, 0, 0, time.UTC), in.To)
	require.Zero(t, in.Span, "a range asked for carries no span")
	require.Equal(t, time.Minute, in.Bin)
	in = started("--span", "24h")
	require.True(t, in.From.IsZero() && in.To.IsZero())
	require.Equal(t, 24*time.Hour, in.Span)
}

func TestScheduleTrainingCreatesUpdatesDeletes(t *testing.T) {
	c, suffix := devServer(t)
	id := "test-training-" + suffix
	defer func() { _ = c.ScheduleClient().GetHandle(context.Background(), id).Delete(context.Background()) }()

	out, err := runStarter(t, "schedule", "training", "--every", "6h", "--schedule-id", id)
	require.NoError(t, err, out)
	require.Contains(t, out, "created")
	out, err = runStarter(t, "schedule", "training", "--every", "2h", "--schedule-id", id, "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"status": "updated"`)

	d, err := c.ScheduleClient().GetHandle(context.Background(), id).Describe(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, d.Schedule.Spec.Intervals[0].Every)
	require.Equal(t, enums.SCHEDULE_OVERLAP_POLICY_SKIP, d.Schedule.Policy.Overlap)
	act := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	require.Equal(t, workflows.TrainingTaskQueue, act.TaskQueue)

	out, err = runStarter(t, "schedule", "training", "--delete", "--schedule-id", id)
	require.NoError(t, err, out)
	require.Contains(t, out, "deleted")
}

type oneHost struct{}

func (oneHost) LiveHosts(context.Context) ([]activities.HostInfo, error) {
	return []activities.HostInfo{{ID: "h1", URL: "http://h1", Speed: 1}}, nil
}

type flatAffinity struct{}

func (flatAffinity) Score(_ context.Context, _ wire.AppProfile, hs []activities.HostInfo) ([]float64, string, error) {
	out := make([]float64, len(hs))
	for i := range out {
		out[i] = 0.9
	}
	return out, "flat", nil
}

type instantHost struct{}

func (instantHost) Reserve(context.Context, activities.HostReservation) (time.Time, error) {
	return time.Time{}, nil
}
func (instantHost) Shadow(context.Context, string, float64, float64) (float64, error) { return 1, nil }
func (instantHost) Serve(_ context.Context, s wire.HostServing) (wire.HostServed, error) {
	return wire.HostServed{Warm: s.LeaseID != "", SetupMS: 2, WorkMS: 2 * s.WorkMS, TotalMS: 2 + 2*s.WorkMS}, nil
}
func (instantHost) Extend(context.Context, string, string, time.Duration) (time.Time, error) {
	return time.Time{}, nil
}
func (instantHost) Release(context.Context, string) (activities.HostReleased, error) {
	return activities.HostReleased{Released: true}, nil
}

type instantHosts struct{}

func (instantHosts) For(string, string) activities.HostClient { return instantHost{} }
func (instantHosts) Permanent(error) bool                     { return false }
func (instantHosts) NotFound(error) bool                      { return false }

type noLoop struct{}

func (noLoop) Claim(context.Context, wire.ClaimInput) (wire.ClaimResult, error) {
	return wire.ClaimResult{}, nil
}

type nopRecorder struct{}

func (nopRecorder) RecordPredictions(context.Context, []records.Prediction) error {
	return nil
}
func (nopRecorder) RecordPreparationEvents(context.Context, []records.PreparationEvent) error {
	return nil
}
func (nopRecorder) RecordRequests(context.Context, []records.Request) error { return nil }
func (nopRecorder) RecordAdjustments(context.Context, []records.Adjustment) error {
	return nil
}

// TestRequestCommand serves one request through the serve-request workflow
// on the dev server (hosts and store faked): no loop, so cold, and a host
// twice as slow as expected moves the adjustment down.
func TestRequestCommand(t *testing.T) {
	c, suffix := devServer(t)
	queue := "cli-req-" + suffix
	w := worker.New(c, queue, worker.Options{})
	workflows.RegisterPrediction(w)
	w.RegisterActivity(&activities.Hosts{Directory: oneHost{}, Affinity: flatAffinity{}, Clients: instantHosts{}, Recorder: nopRecorder{}})
	w.RegisterActivity(&activities.Requests{Claimer: noLoop{}, Recorder: nopRecorder{}})
	require.NoError(t, w.Start())
	defer w.Stop()

	out, err := runStarter(t, "request", "--app", "cli-app-"+suffix, "--work-ms", "40", "--task-queue", queue, "--json")
	require.NoError(t, err, out)
	var res workflows.RequestResult
	require.NoError(t, jsonx.Decode([]byte(out), &res))
	require.Equal(t, "cold", res.Outcome)
	require.Equal(t, "h1", res.Host)
	require.Equal(t, 0.5, res.Actual)
	require.True(t, res.Adjusted)
	require.InDelta(t, -0.2, res.NewAdjustment, 1e-9)
}

// At one-hour bins the default sleep of 60 bins would plan leases of 62 h,
// which every host agent refuses: a sleep or lookahead given that long is
// refused before anything starts, naming its flag and the most that fits.
func TestLoopStartRefusesLeasesNoHostAccepts(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--bin", "1h", "--max-sleep-bins", "60"}, []string{"MaxSleepBins 60", "at most 22", "--max-sleep-bins"}},
		{[]string{"--bin", "2m", "--max-sleep-bins", "1440"}, []string{"MaxSleepBins 1440", "at most 718", "--max-sleep-bins"}},
		{[]string{"--bin", "1h", "--lookahead", "30", "--max-sleep-bins", "20"}, []string{"LookaheadBins 30", "at most 22", "--lookahead"}},
		{[]string{"--bin", "9h"}, []string{"use bins of at most 8h0m0s"}},
	} {
		args := append([]string{"loop", "start", "--app", "a"}, c.args...)
		_, err := runStarter(t, args...)
		require.Error(t, err, "%v", args)
		require.Equal(t, 2, exitCode(err), "%v: %v", args, err)
		for _, w := range c.want {
			require.Contains(t, err.Error(), w, "%v", args)
		}
	}
}
