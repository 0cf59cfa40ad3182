package workflows

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/forewarm/forewarm/activities"
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
			r := worker.NewWorkflowReplayer()
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
