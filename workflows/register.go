package workflows

import (
	"go.temporal.io/sdk/workflow"
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
