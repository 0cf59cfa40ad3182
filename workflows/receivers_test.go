package workflows

import "github.com/forewarm/forewarm/activities"

// Activity receivers: tests name the activities they mock through nil
// pointers of the worker's structs (only the method names matter).
// Workflow code names them by the strings in names.go.
var (
	predictor *activities.Predictor
	hosts     *activities.Hosts
	requests  *activities.Requests
	training  *activities.Training
)
