package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
)

func newTrainingEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(payload.Converter())
	env.SetStartTime(t0)
	RegisterTraining(env)
	return env
}

var baselines = map[string]map[string]float64{"histogram": {"log_loss": 0.5}, "keep-alive": {"log_loss": 0.6}}

func TestTrainingPublishesOnlyWhenBetter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cand      float64
		champ     string
		champLoss float64
		outcomes  int
		published bool
		reason    string
	}{
		{"first model", 0.30, "", 0, 10, true, "no champion yet"},
		{"beats champion", 0.30, "d-0", 0.40, 10, true, "beats champion d-0"},
		{"not better than champion", 0.30, "d-0", 0.301, 10, false, "champion kept"},
		{"loses to a baseline", 0.55, "", 0, 10, false, "does not beat baseline(s) histogram 0.5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTrainingEnv()
			env.OnActivity(training.Describe, mock.Anything, mock.Anything).Return(wire.DescribeResult{Dataset: wire.DatasetSummary{
				From: t0.Add(-time.Hour), To: t0, Bin: time.Minute, Apps: 3, Bins: 60, RequestOutcomes: tc.outcomes}}, nil)
			m := wire.TrainedModel{Version: "d-1", Kind: "demand", Metrics: map[string]float64{"log_loss": tc.cand}, Baselines: baselines, Champion: tc.champ}
			if tc.champ != "" {
				m.ChampionMetrics = map[string]float64{"log_loss": tc.champLoss}
			}
			env.OnActivity(training.TrainDemand, mock.Anything, mock.Anything).Return(wire.TrainResult{Model: m}, nil)
			promoted := ""
			env.OnActivity(training.Promote, mock.Anything, mock.Anything).Return(func(_ context.Context, in wire.PromoteInput) (wire.PromoteResult, error) {
				promoted = in.Version
				return wire.PromoteResult{}, nil
			}).Maybe()
			env.ExecuteWorkflow(TrainingWorkflowName, TrainingInput{})
			require.NoError(t, env.GetWorkflowError())
			var res TrainingResult
			require.NoError(t, env.GetWorkflowResult(&res))
			require.Equal(t, tc.published, res.Demand.Published, res.Demand.Reason)
			require.Contains(t, res.Demand.Reason, tc.reason)
			require.Equal(t, tc.published, promoted == "d-1")
			require.Contains(t, res.Affinity.Reason, "not trained: 10 request outcomes, 50 needed")
		})
	}
}

func TestTrainingTrainsAffinityWithEnoughOutcomes(t *testing.T) {
	env := newTrainingEnv()
	env.OnActivity(training.Describe, mock.Anything, mock.Anything).Return(wire.DescribeResult{Dataset: wire.DatasetSummary{RequestOutcomes: 500}}, nil)
	env.OnActivity(training.TrainDemand, mock.Anything, mock.Anything).Return(wire.TrainResult{Model: wire.TrainedModel{
		Version: "d-1", Kind: "demand", Metrics: map[string]float64{"log_loss": 0.3}}, Resumed: true}, nil)
	env.OnActivity(training.TrainAffinity, mock.Anything, mock.Anything).Return(wire.TrainResult{Model: wire.TrainedModel{
		Version: "a-1", Kind: "affinity", Metrics: map[string]float64{"mse": 0.02}, Baselines: map[string]map[string]float64{"heuristic": {"mse": 0.05}}}}, nil)
	var promoted []string
	env.OnActivity(training.Promote, mock.Anything, mock.Anything).Return(func(_ context.Context, in wire.PromoteInput) (wire.PromoteResult, error) {
		promoted = append(promoted, in.Version)
		return wire.PromoteResult{}, nil
	})
	env.ExecuteWorkflow(TrainingWorkflowName, TrainingInput{})
	require.NoError(t, env.GetWorkflowError())
	var res TrainingResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Demand.Resumed)
	require.True(t, res.Affinity.Published, res.Affinity.Reason)
	require.Equal(t, []string{"d-1", "a-1"}, promoted)
	v, err := env.QueryWorkflow(QueryTrainingProgress, TrainingProgressQuery{})
	require.NoError(t, err)
	var p TrainingProgress
	require.NoError(t, v.Get(&p))
	require.Contains(t, p.Stage, "done")
}
