package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/sdk/v1"
)

// The loop's Current Details (the Web UI's "User Metadata" tab, read with
// the workflow metadata query) open with a one-paragraph summary: state,
// the last probability against the thresholds, the leases, the next wake.
func TestLoopCurrentDetailsSummarise(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var details string
	env.RegisterDelayedCallback(func() { var r0 ClaimUpdateResult; claimNow(t, env, "r0", 100, &r0) }, 500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdk.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		details = md.GetCurrentDetails()
	}, 2600*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 2700*time.Millisecond)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-d", Bin: time.Second, Policy: rulePolicy()})
	require.NoError(t, env.GetWorkflowError())
	summary, _, _ := strings.Cut(details, "\n\n")
	for _, want := range []string{"**app-d** is running", "last P = 0.900 against keep ≥", "prepare ≥", "→ keep", "1 lease(s) live (h1 until", "next wake", "model recent-1."} {
		require.Contains(t, summary, want, "summary paragraph:\n%s", details)
	}
}
