package workflows

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
)

// Registry is the part of worker.Worker (and of the test environment) that
// registers workflows.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// RegisterPrediction registers the workflows of the prediction task queue
// under their stable names.
func RegisterPrediction(r Registry) {
	r.RegisterWorkflowWithOptions(PredictionLoop, workflow.RegisterOptions{Name: LoopWorkflowName})
	r.RegisterWorkflowWithOptions(Preparation, workflow.RegisterOptions{Name: PreparationWorkflowName})
	r.RegisterWorkflowWithOptions(ServeRequest, workflow.RegisterOptions{Name: RequestWorkflowName})
}

// RegisterTraining registers the workflows of the training task queue.
func RegisterTraining(r Registry) {
	r.RegisterWorkflowWithOptions(Training, workflow.RegisterOptions{Name: TrainingWorkflowName})
}

// ActivityRegistry is the part of worker.Worker (and of the test
// environment) that registers activities.
type ActivityRegistry interface {
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// RegisterPredictionActivities registers the prediction queue's activities
// under their names in names.go.
func RegisterPredictionActivities(r ActivityRegistry, p *activities.Predictor, h *activities.Hosts, q *activities.Requests) {
	for name, fn := range map[string]any{
		ActivitySeed: p.Seed, ActivityForecast: p.Forecast,
		ActivityRankHosts: h.RankHosts, ActivityReserve: h.Reserve, ActivityShadow: h.Shadow, ActivityExtend: h.Extend,
		ActivityRelease: h.Release, ActivityServe: h.Serve,
		ActivityClaimLease: q.ClaimLease, ActivityRecordRequest: q.RecordRequest,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// RegisterTrainingActivities registers the training queue's activities
// under their names in names.go.
func RegisterTrainingActivities(r ActivityRegistry, t *activities.Training) {
	for name, fn := range map[string]any{
		ActivityDescribe: t.Describe, ActivityTrainDemand: t.TrainDemand, ActivityTrainAffinity: t.TrainAffinity, ActivityPromote: t.Promote,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
