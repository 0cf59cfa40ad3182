package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A claim that reaches a loop in its first workflow task, before the loop
// has begun its first sleep, is answered (it once panicked the task: the
// wake-up channel did not exist yet).
func TestClaimInTheFirstTaskIsAnswered(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var r0 ClaimUpdateResult
	env.RegisterDelayedCallback(func() { claimNow(t, env, "r0", 100, &r0) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 1500*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-first", Bin: time.Second, Policy: rulePolicy()})
	require.NoError(t, env.GetWorkflowError())
	require.NotNil(t, r0.Adjustments, "the claim was answered")
}
