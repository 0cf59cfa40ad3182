package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An idle loop sleeps up to its bound and says why (30 bins less this
// application's share of a quarter: 26); a wake signal moves its next
// decision to the bin it names, and one naming a bin already decided
// changes nothing.
func TestLoopSleepsUpToItsBoundAndWakesOnSignal(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var asleep, woken, late LoopStatus
	env.RegisterDelayedCallback(func() { asleep = queryState(t, env) }, 3500*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalWake, WakeSignal{Reason: "a request found no warm instance"})
	}, 5500*time.Millisecond)
	env.RegisterDelayedCallback(func() { woken = queryState(t, env) }, 5600*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalWake, WakeSignal{Bin: t0.Add(6 * time.Second), Reason: "late"})
		env.SignalWorkflow(SignalWake, WakeSignal{Bin: t0.Add(3 * time.Second), Reason: "old"})
	}, 6500*time.Millisecond)
	env.RegisterDelayedCallback(func() { late = queryState(t, env) }, 6600*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 7*time.Second)
	pol := rulePolicy()
	pol.MaxSleepBins = 30
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-w", Bin: time.Second, Policy: pol})
	require.NoError(t, env.GetWorkflowError())

	grace := 200 * time.Millisecond // a fifth of the bin
	require.Equal(t, t0.Add(27*time.Second+grace), asleep.NextWake, "decided bin 1, sleeps 26 bins")
	require.Contains(t, asleep.WakeReason, "bound on the sleep (26 bins)")
	require.Equal(t, 1, asleep.Stats.Wakes)
	require.Equal(t, t0.Add(6*time.Second+grace), woken.NextWake, "woken for the bin after the request's")
	require.Equal(t, "woken: a request found no warm instance", woken.WakeReason)
	require.Equal(t, 1, woken.Stats.Woken)
	require.Equal(t, 2, late.Stats.Wakes, "decided bin 6, then slept again")
	require.Equal(t, 1, late.Stats.Woken, "bins 6 and 3 were decided already: nothing to wake for")
	require.Equal(t, t0.Add(32*time.Second+grace), late.NextWake)
	require.Equal(t, [4]int{6, 0, 0, 0}, late.Stats.Decisions, "bins 1 to 6: idle, decided or planned")
}

// FirstSleepBins shortens only the sleep after the first decision (here
// 5 bins instead of this application's 26); the next sleep is the
// policy's bound again, and SleepBound is the bound the loop uses.
func TestLoopFirstSleepIsBoundedByFirstSleepBins(t *testing.T) {
	env, fh, _ := newPolicyLoopEnv(t, recentModel{})
	fh.mock(env)
	var first, second LoopStatus
	env.RegisterDelayedCallback(func() { first = queryState(t, env) }, 3500*time.Millisecond)
	env.RegisterDelayedCallback(func() { second = queryState(t, env) }, 7500*time.Millisecond)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 8*time.Second)
	pol := rulePolicy()
	pol.MaxSleepBins = 30
	require.Equal(t, 26, SleepBound(pol, "app-w"))
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-w", Bin: time.Second, Policy: pol, FirstSleepBins: 5})
	require.NoError(t, env.GetWorkflowError())

	grace := 200 * time.Millisecond
	require.Equal(t, t0.Add(6*time.Second+grace), first.NextWake, "decided bin 1, sleeps 5 bins")
	require.Contains(t, first.WakeReason, "bound on the sleep (5 bins)")
	require.Equal(t, 2, second.Stats.Wakes)
	require.Equal(t, t0.Add(32*time.Second+grace), second.NextWake, "decided bin 6, sleeps the policy's 26 bins")
}
