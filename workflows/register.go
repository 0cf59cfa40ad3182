package workflows

import (
	"context"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
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

// The activities as workflow code sees them: their signatures, in wire
// types. Package activities implements them (Predictor, Hosts, Requests,
// Training); registering through these keeps its I/O out of workflow code.

// PredictorActivities are the prediction loop's model activities.
type PredictorActivities interface {
	Seed(context.Context, wire.SeedInput) (wire.SeedResult, error)
	Forecast(context.Context, wire.ForecastInput) (wire.ForecastResult, error)
}

// HostActivities are the activities on the hosts.
type HostActivities interface {
	RankHosts(context.Context, wire.RankInput) (wire.RankResult, error)
	Reserve(context.Context, wire.ReserveInput) (wire.ReserveResult, error)
	Shadow(context.Context, wire.ShadowInput) (wire.ShadowResult, error)
	Extend(context.Context, wire.ExtendInput) (wire.ExtendResult, error)
	Release(context.Context, wire.ReleaseInput) (wire.ReleaseResult, error)
	Serve(context.Context, wire.ServeInput) (wire.ServeResult, error)
}

// RequestActivities are a served request's claim and record.
type RequestActivities interface {
	ClaimLease(context.Context, wire.ClaimInput) (wire.ClaimResult, error)
	RecordRequest(context.Context, wire.RecordRequestInput) (wire.RecordRequestResult, error)
}

// TrainingActivities are the training queue's activities.
type TrainingActivities interface {
	Describe(context.Context, wire.DescribeInput) (wire.DescribeResult, error)
	TrainDemand(context.Context, wire.TrainInput) (wire.TrainResult, error)
	TrainAffinity(context.Context, wire.TrainInput) (wire.TrainResult, error)
	Promote(context.Context, wire.PromoteInput) (wire.PromoteResult, error)
}

// RegisterPredictionActivities registers the prediction queue's activities
// under their names in names.go.
func RegisterPredictionActivities(r ActivityRegistry, p PredictorActivities, h HostActivities, q RequestActivities) {
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
func RegisterTrainingActivities(r ActivityRegistry, t TrainingActivities) {
	for name, fn := range map[string]any{
		ActivityDescribe: t.Describe, ActivityTrainDemand: t.TrainDemand, ActivityTrainAffinity: t.TrainAffinity, ActivityPromote: t.Promote,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
