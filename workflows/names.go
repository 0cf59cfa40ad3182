package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Every Temporal name Forewarm uses lives in this file: the worker, the
// starter CLI, the tests and deploy/local/env.sh (search attributes) must
// agree on them, and a rename here is a breaking change for running loops.

// Task queues. Training is CPU-heavy and runs apart so it can never starve
// the prediction loops of worker slots.
const (
	PredictionTaskQueue = "forewarm-prediction"
	TrainingTaskQueue   = "forewarm-training"
)

// Workflow type names (registered explicitly so a Go rename cannot change them).
const (
	LoopWorkflowName        = "PredictionLoop"
	PreparationWorkflowName = "Preparation"
	RequestWorkflowName     = "ServeRequest"
	TrainingWorkflowName    = "Training"
)

// Activity type names. Activities are registered under these names
// (RegisterPredictionActivities, RegisterTrainingActivities) and workflows
// call them by these names, so renaming a Go method cannot change what a
// recorded history expects. They are the names histories already hold.
const (
	ActivitySeed          = "Seed"          // activities.Predictor.Seed
	ActivityForecast      = "Forecast"      // activities.Predictor.Forecast (local)
	ActivityRankHosts     = "RankHosts"     // activities.Hosts.RankHosts
	ActivityReserve       = "Reserve"       // activities.Hosts.Reserve
	ActivityShadow        = "Shadow"        // activities.Hosts.Shadow
	ActivityExtend        = "Extend"        // activities.Hosts.Extend
	ActivityRelease       = "Release"       // activities.Hosts.Release
	ActivityServe         = "Serve"         // activities.Hosts.Serve (local in lean requests)
	ActivityClaimLease    = "ClaimLease"    // activities.Requests.ClaimLease (local in lean requests)
	ActivityRecordRequest = "RecordRequest" // activities.Requests.RecordRequest
	ActivityDescribe      = "Describe"      // activities.Training.Describe
	ActivityTrainDemand   = "TrainDemand"   // activities.Training.TrainDemand
	ActivityTrainAffinity = "TrainAffinity" // activities.Training.TrainAffinity
	ActivityPromote       = "Promote"       // activities.Training.Promote
)

// Signals, queries and updates of the prediction loop.
const (
	SignalThreshold   = "threshold"   // ThresholdSignal
	SignalPolicy      = "policy"      // PolicySignal
	SignalObservation = "observation" // ObservationSignal
	SignalStop        = "stop"        // StopSignal
	SignalWake        = "wake"        // WakeSignal

	QueryState = "state" // StateQuery -> LoopStatus

	UpdatePolicy = "set-policy"  // PolicyUpdate -> PolicyUpdateResult
	UpdateClaim  = "claim-lease" // ClaimUpdate -> ClaimUpdateResult
)

// Query of the training workflow.
const QueryTrainingProgress = "progress" // TrainingProgressQuery -> TrainingProgress

// TrainingScheduleID is the fixed ID of the periodic training schedule, so
// creating it twice is refused and the CLI can address it.
const TrainingScheduleID = "forewarm-training"

// Typed search attributes. Keep in step with SEARCH_ATTRIBUTES in
// deploy/local/env.sh (the dev server must know them before a workflow
// upserts them).
var (
	AttrApp          = temporal.NewSearchAttributeKeyKeyword("ForewarmApp")
	AttrLoopState    = temporal.NewSearchAttributeKeyKeyword("ForewarmLoopState")
	AttrThreshold    = temporal.NewSearchAttributeKeyFloat64("ForewarmThreshold")
	AttrHost         = temporal.NewSearchAttributeKeyKeyword("ForewarmHost")
	AttrModelVersion = temporal.NewSearchAttributeKeyKeyword("ForewarmModelVersion")
)

// Memo fields set when a loop starts (shown by the Web UI and
// `temporal workflow describe`; not searchable).
const (
	MemoBin     = "bin"     // bin width, e.g. "1m0s"
	MemoProfile = "profile" // wire.AppProfile the loop started with
)

// Values of AttrLoopState.
const (
	LoopStateRunning = "running"
	LoopStatePaused  = "paused"
	LoopStateDryRun  = "dry-run"
	LoopStateStopped = "stopped"
)

// LoopStates are the states a running loop can be in (the worker's
// forewarm_loops metric counts each).
var LoopStates = []string{LoopStateRunning, LoopStatePaused, LoopStateDryRun}

// LoopWorkflowID is the prediction loop of one application: predict/<app>.
func LoopWorkflowID(app string) string { return "predict/" + app }

// AppFromLoopWorkflowID inverts LoopWorkflowID ("" when id is not a loop's).
func AppFromLoopWorkflowID(id string) string {
	app, ok := strings.CutPrefix(id, "predict/")
	if !ok {
		return ""
	}
	return app
}

// PreparationWorkflowID names the preparation a loop starts for the bin that
// begins at binStart: prepare/<app>/<unix seconds>. Deterministic, so a
// retried or replayed start is the same preparation, and the lease IDs the
// hosts see (PreparationID/host) are stable across worker crashes.
func PreparationWorkflowID(app string, binStart time.Time) string {
	return fmt.Sprintf("prepare/%s/%d", app, binStart.Unix())
}

// LeaseID is the preparation ID a host is given for one reservation:
// <app>.<unix seconds>.<host>, derived from the preparation's workflow ID
// (host agents accept [A-Za-z0-9._-] only, so no slashes).
func LeaseID(preparationWorkflowID, host string) string {
	id := strings.TrimPrefix(preparationWorkflowID, "prepare/")
	return strings.ReplaceAll(id, "/", ".") + "." + host
}

// RequestWorkflowID is the serve-request workflow of one request.
func RequestWorkflowID(app, requestID string) string {
	return "request/" + app + "/" + requestID
}

// TrainingWorkflowID names an on-demand training run started at t.
func TrainingWorkflowID(t time.Time) string {
	return "train/" + t.UTC().Format("20060102T150405Z")
}

// ScheduledTrainingWorkflowID is the ID prefix the schedule gives its runs
// (the server appends the scheduled time).
const ScheduledTrainingWorkflowID = "train/scheduled"
