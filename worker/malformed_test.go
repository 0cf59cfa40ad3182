package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/forewarm/forewarm/workflows"
)

// jsonPayload is a payload marked JSON whose bytes are exactly s (valid
// JSON or not): what `temporal workflow signal --input` or any other client
// can send.
func jsonPayload(s string) converter.RawValue {
	return converter.NewRawValue(&commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingJSON)},
		Data:     []byte(s)})
}

// malformed is one payload and the refusal it must get.
type malformed struct {
	name string
	arg  any // a RawValue, nil (a null payload) or []byte (binary)
	want string
}

// TestMalformedPayloadsThroughTheServer sends every malformed shape — a
// field of the wrong type, an empty object, an unknown or misspelt field,
// a value out of range, null, bytes that are not JSON, a payload that is
// not JSON at all — to every signal and update of the prediction loop
// through the real dev server and a real worker. Each signal is refused
// into LastError (and counted), each update is rejected naming the field,
// the policy is unchanged, the loop keeps waking, and a valid stop still
// stops it. (Training, preparation and serve-request workflows take no
// signals or updates.)
func TestMalformedPayloadsThroughTheServer(t *testing.T) {
	k := newStack(t)
	app := k.prefix + "-m"
	k.loadHistory([]string{app}, []int{3}, 600)
	k.startWorker()
	k.trainedModel()
	pol := workflows.DefaultPolicy()
	pol.DryRun, pol.Ticking = true, true
	k.startLoop(app, pol)
	k.waitFor("the loop deciding with the model", 60*time.Second, func() bool {
		st := k.status(app)
		return st.Stats.Predictions >= 2 && st.LastError == ""
	})
	before := k.status(app)

	null := func(name string) malformed {
		return malformed{name, nil, name + " signal refused: payload is null: send a JSON object"}
	}
	notJSON := func(name string) malformed {
		return malformed{name, jsonPayload("Threshold=0.7"), name + " signal refused: payload Threshold=0.7 is not a JSON object"}
	}
	binary := func(name string) malformed {
		return malformed{name, []byte(`{"x":1}`), name + ` signal refused: payload encoding "binary/plain": send a JSON object`}
	}
	signals := []malformed{
		{workflows.SignalThreshold, jsonPayload(`{"Threshold":"0.7"}`), "threshold signal refused: field Threshold: string is not a float64"},
		{workflows.SignalThreshold, jsonPayload(`{}`), "threshold signal refused: field Threshold is missing"},
		{workflows.SignalThreshold, jsonPayload(`{"Treshold":0.3}`), "threshold signal refused: field Threshold is missing"},
		{workflows.SignalThreshold, jsonPayload(`{"Threshold":0.3,"Now":true}`), `threshold signal refused: payload {"Threshold":0.3,"Now":true}: json: unknown field "Now"`},
		{workflows.SignalThreshold, jsonPayload(`{"Threshold":1.5}`), "threshold signal refused: threshold 1.5 is outside [0, 1]"},
		{workflows.SignalThreshold, jsonPayload(`{"Threshold":null}`), "threshold signal refused: field Threshold is missing"},
		{workflows.SignalThreshold, jsonPayload(`null`), "threshold signal refused: payload null is not a JSON object"},
		null(workflows.SignalThreshold), notJSON(workflows.SignalThreshold), binary(workflows.SignalThreshold),

		{workflows.SignalPolicy, jsonPayload(`{"Change":{"TopN":"two"}}`), "policy signal refused: field Change.TopN: string is not a int"},
		{workflows.SignalPolicy, jsonPayload(`{}`), "policy signal refused: field Change is missing"},
		{workflows.SignalPolicy, jsonPayload(`{"Change":{}}`), "policy signal refused: the change names no field"},
		{workflows.SignalPolicy, jsonPayload(`{"Change":{"Threshold":0.3,"Pausd":true}}`), `policy signal refused: payload {"Change":{"Threshold":0.3,"Pausd":true}}: json: unknown field "Pausd"`},
		{workflows.SignalPolicy, jsonPayload(`{"Change":{"LookaheadBins":0}}`), "policy signal refused: lookahead_bins 0 is outside [1, 1440]"},
		{workflows.SignalPolicy, jsonPayload(`{"Change":{"TopN":99}}`), "policy signal refused: TopN 99 is outside [1, 16]"},
		null(workflows.SignalPolicy), notJSON(workflows.SignalPolicy),

		{workflows.SignalObservation, jsonPayload(`{"RequestID":"r1","Count":"1"}`), "observation signal refused: field Count: string is not a float64"},
		{workflows.SignalObservation, jsonPayload(`{}`), "observation signal refused: field RequestID is missing"},
		{workflows.SignalObservation, jsonPayload(`{"RequestID":"r1","Hots":"h"}`), `observation signal refused: payload {"RequestID":"r1","Hots":"h"}: json: unknown field "Hots"`},
		{workflows.SignalObservation, jsonPayload(`{"RequestID":"r1","Count":-3}`), "observation signal refused: field Count: -3 is outside [0, 1e9]"},
		{workflows.SignalObservation, jsonPayload(`{"RequestID":"r1","Adjustment":7}`), "observation signal refused: field Adjustment: 7 is outside [-1, 1]"},
		null(workflows.SignalObservation), notJSON(workflows.SignalObservation),

		{workflows.SignalStop, jsonPayload(`{"Reason":5}`), "stop signal refused: field Reason: number is not a string"},
		{workflows.SignalStop, jsonPayload(`{}`), "stop signal refused: field Reason is missing"},
		{workflows.SignalStop, jsonPayload(`{"Reason":"x","Force":true}`), `stop signal refused: payload {"Reason":"x","Force":true}: json: unknown field "Force"`},
		null(workflows.SignalStop), notJSON(workflows.SignalStop), binary(workflows.SignalStop),
	}
	id := workflows.LoopWorkflowID(app)
	for i, m := range signals {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, k.c.SignalWorkflow(ctx, id, "", m.name, m.arg), "signal %d", i)
		cancel()
		var st workflows.LoopStatus
		k.waitFor("the refusal of signal "+m.want, 20*time.Second, func() bool {
			st = k.status(app)
			return st.Stats.Refusals-before.Stats.Refusals >= i+1
		})
		require.Equal(t, i+1, st.Stats.Refusals-before.Stats.Refusals, "one refusal per malformed signal")
		require.Equal(t, m.want, st.LastError, "signal %d (%s)", i, m.name)
	}

	updates := []struct {
		name string
		args []any
		want string
	}{
		{workflows.UpdatePolicy, []any{jsonPayload(`{"Change":{"TopN":"two"}}`)}, "set-policy update refused: field Change.TopN: string is not a int"},
		{workflows.UpdatePolicy, []any{jsonPayload(`{}`)}, "set-policy update refused: field Change is missing"},
		{workflows.UpdatePolicy, []any{jsonPayload(`{"Change":{"Threshold":0.2,"Pausd":true}}`)}, `set-policy update refused: payload {"Change":{"Threshold":0.2,"Pausd":true}}: json: unknown field "Pausd"`},
		{workflows.UpdatePolicy, []any{jsonPayload(`{"Change":{"SampleMB":4096}}`)}, "set-policy update refused: SampleMB 4096 is outside [0, 1024], what a host agent samples at most"},
		{workflows.UpdatePolicy, []any{jsonPayload(`{"Change":{"LeaseTTL":300}}`)}, "set-policy update refused: LeaseTTL 300ns: only loops from before the policy package read it"},
		{workflows.UpdatePolicy, []any{jsonPayload(`{"Change":{"Threshold":-0.1}}`)}, "set-policy update refused: threshold -0.1 is outside [0, 1]"},
		{workflows.UpdatePolicy, []any{nil}, "set-policy update refused: payload is null: send a JSON object"},
		{workflows.UpdatePolicy, []any{jsonPayload(`Paused`)}, "set-policy update refused: payload Paused is not a JSON object"},
		{workflows.UpdateClaim, []any{jsonPayload(`{"RequestID":5}`)}, "claim-lease update refused: field RequestID: number is not a string"},
		{workflows.UpdateClaim, []any{jsonPayload(`{}`)}, "claim-lease update refused: field RequestID is missing"},
		{workflows.UpdateClaim, []any{jsonPayload(`{"RequestID":"r2","Size":3}`)}, `claim-lease update refused: payload {"RequestID":"r2","Size":3}: json: unknown field "Size"`},
		{workflows.UpdateClaim, []any{jsonPayload(`{"RequestID":"r2","SizeMB":-1}`)}, "claim-lease update refused: field SizeMB: -1 is outside [0, 1048576]"},
		{workflows.UpdateClaim, []any{jsonPayload(`{"RequestID":""}`)}, "claim-lease update refused: field RequestID is empty"},
		{workflows.UpdateClaim, []any{nil}, "claim-lease update refused: payload is null: send a JSON object"},
		{workflows.UpdateClaim, []any{[]byte("r2")}, `claim-lease update refused: payload encoding "binary/plain": send a JSON object`},
	}
	for i, u := range updates {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		h, err := k.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: u.name, Args: u.args,
			WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		cancel()
		require.Error(t, err, "update %d (%s) was accepted", i, u.want)
		require.Contains(t, err.Error(), u.want, "update %d", i)
	}

	// The loop is unchanged and still waking; a valid stop stops it.
	after := k.status(app)
	k.waitFor("two more wakes after the last refusal", 30*time.Second, func() bool {
		return k.status(app).Stats.Wakes >= after.Stats.Wakes+2
	})
	final := k.status(app)
	require.Equal(t, before.Policy, final.Policy, "no refused payload changed the policy")
	require.Zero(t, final.Stats.Requests, "no refused observation or claim was counted")
	require.Equal(t, len(signals), final.Stats.Refusals-before.Stats.Refusals, "update rejections leave the loop's state alone")
	require.Equal(t, workflows.LoopStateDryRun, final.State)
	res := k.stopLoop(app)
	require.Equal(t, "stopped: test over", res.Reason)
}
