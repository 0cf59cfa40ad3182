package workflows

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/agent/api"
)

// Every field of a policy is bounded, and each refusal names its field and
// the bound; what a host agent accepts comes from package agent/api.
func TestPolicyValidateBoundsEveryField(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Policy)
		want   string
	}{
		{"threshold above 1", func(p *Policy) { p.Threshold = 1.5 }, "threshold 1.5 is outside [0, 1]"},
		{"threshold NaN", func(p *Policy) { p.Threshold = math.NaN() }, "threshold NaN is outside [0, 1]"},
		{"reference size 0", func(p *Policy) { p.ReferenceMB = 0 }, "reference_mb 0 is outside [1, 1.048576e+06]"},
		{"prepare seconds negative", func(p *Policy) { p.PrepareSeconds = -1 }, "prepare_seconds -1 is outside [0, 3600]"},
		{"prepare seconds beyond an hour", func(p *Policy) { p.PrepareSeconds = 3601 }, "prepare_seconds 3601 is outside [0, 3600]"},
		{"lookahead 0", func(p *Policy) { p.LookaheadBins = 0 }, "lookahead_bins 0 is outside [1, 1440]"},
		{"lookahead beyond a day of bins", func(p *Policy) { p.LookaheadBins = 1441 }, "lookahead_bins 1441 is outside [1, 1440]"},
		{"size percentile below the median", func(p *Policy) { p.SizePercentile = 0.2 }, "size_percentile 0.2 is outside [0.5, 1]"},
		{"top-N 0", func(p *Policy) { p.TopN = 0 }, "TopN 0 is outside [1, 16]"},
		{"top-N 17", func(p *Policy) { p.TopN = 17 }, "TopN 17 is outside [1, 16]"},
		{"max shadow 0", func(p *Policy) { p.MaxShadowMS = 0 }, "MaxShadowMS 0 is outside (0, 60000]"},
		{"max shadow NaN", func(p *Policy) { p.MaxShadowMS = math.NaN() }, "MaxShadowMS NaN is outside (0, 60000]"},
		{"max shadow over a minute", func(p *Policy) { p.MaxShadowMS = 60001 }, "MaxShadowMS 60001 is outside (0, 60000]"},
		{"shadow sample negative", func(p *Policy) { p.SampleMB = -1 }, "SampleMB -1 is outside [0, 1024], what a host agent samples at most"},
		{"shadow sample beyond the agent's", func(p *Policy) { p.SampleMB = api.MaxSampleMB + 1 }, "SampleMB 1025 is outside [0, 1024], what a host agent samples at most"},
		{"legacy horizon", func(p *Policy) { p.HorizonBins = 5 }, "HorizonBins 5: only loops from before the policy package read it; use LookaheadBins"},
		{"legacy lease TTL of 300 ns", func(p *Policy) { p.LeaseTTL = 300 }, "LeaseTTL 300ns: only loops from before the policy package read it; leases live as long as the policy holds them"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := DefaultPolicy()
			c.change(&p)
			err := p.Validate()
			require.EqualError(t, err, c.want)
			require.EqualError(t, p.ValidateFor(time.Second), c.want, "ValidateFor checks what Validate does")
		})
	}
	require.NoError(t, DefaultPolicy().Validate())
	p := DefaultPolicy()
	p.Threshold, p.TopN, p.MaxShadowMS, p.SampleMB = 0, 2, 3.5, 0
	require.NoError(t, p.Validate(), "every field just inside its bounds")

	// Several problems at once, each on its line.
	p = DefaultPolicy()
	p.TopN, p.SampleMB = 0, -1
	require.EqualError(t, p.Validate(), "TopN 0 is outside [1, 16]\nSampleMB -1 is outside [0, 1024], what a host agent samples at most")
}

// The bin width decides how long the leases a loop asks for live: never
// shorter than a host agent's api.MinTTL, never longer than its api.MaxTTL.
func TestPolicyValidateForTheBinWidth(t *testing.T) {
	p := DefaultPolicy()
	require.NoError(t, p.ValidateFor(time.Second))
	require.NoError(t, p.ValidateFor(time.Minute))
	require.EqualError(t, p.ValidateFor(500*time.Millisecond), "bin 500ms is shorter than 1s, the shortest lease a host agent accepts")
	require.EqualError(t, p.ValidateFor(0), "bin 0s is shorter than 1s, the shortest lease a host agent accepts")
	require.EqualError(t, p.ValidateFor(-time.Minute), "bin -1m0s is shorter than 1s, the shortest lease a host agent accepts")

	p.LookaheadBins = 1438 // 1440 one-minute bins: 24 h, what a host agent accepts at most
	require.NoError(t, p.ValidateFor(time.Minute))
	p.LookaheadBins = 1439
	require.EqualError(t, p.ValidateFor(time.Minute),
		"LookaheadBins 1439 at 1m0s bins: a held instance's lease may be planned 1439 bins ahead and asked to live 24h1m0s with its grace and lead, beyond the 24h0m0s a host agent accepts; lower LookaheadBins to at most 1438")
	p.LookaheadBins = 10
	require.EqualError(t, p.ValidateFor(3*time.Hour),
		"LookaheadBins 10 and MaxSleepBins 60 at 3h0m0s bins: a held instance's lease may be planned 60 bins ahead and asked to live 186h0m0s with its grace and lead, beyond the 24h0m0s a host agent accepts; lower LookaheadBins and MaxSleepBins to at most 6")
	require.Error(t, p.ValidateFor(time.Duration(math.MaxInt64/4)), "an overflowing product is refused, not wrapped")
}

// A loop started with a bin no host can keep a lease for fails at once,
// saying why; a policy change that would make its leases too long is
// refused the same way.
func TestLoopRefusesASubSecondBin(t *testing.T) {
	env := newLoopEnv(t)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-b", Bin: 200 * time.Millisecond, Policy: DefaultPolicy()})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "loop app-b: bin 200ms is shorter than 1s, the shortest lease a host agent accepts")
}

// A held instance's lease is planned as far as the loop may sleep
// (MaxSleepBins, DefaultMaxSleepBins when 0), not only the lookahead: the
// check bounds that lease, so a policy whose every reserve a host agent
// would refuse is refused at once, naming the setting to lower and how far.
func TestPolicyValidateForBoundsTheLeaseAsFarAsTheLoopSleeps(t *testing.T) {
	// One-hour bins: the default sleeps up to 60 bins, a lease of 62 h.
	err := DefaultPolicy().ValidateFor(time.Hour)
	require.Error(t, err, "the default policy at one-hour bins plans leases of 62 h")
	require.ErrorContains(t, err, "MaxSleepBins 60")
	require.ErrorContains(t, err, "24h0m0s a host agent accepts")
	require.ErrorContains(t, err, "lower MaxSleepBins to at most 22")
	require.NotContains(t, err.Error(), "lower LookaheadBins", "the lookahead of 10 bins fits")

	// MaxSleepBins 0 is the default, 60 bins.
	p := DefaultPolicy()
	p.MaxSleepBins = 0
	err = p.ValidateFor(time.Hour)
	require.Error(t, err)
	require.ErrorContains(t, err, "MaxSleepBins 0 (the default, 60)")

	// --max-sleep-bins 1440 at two-minute bins: leases of 48 h.
	p = DefaultPolicy()
	p.MaxSleepBins = 1440
	err = p.ValidateFor(2 * time.Minute)
	require.Error(t, err)
	require.ErrorContains(t, err, "lower MaxSleepBins to at most 718")
	p.MaxSleepBins = 718
	require.NoError(t, p.ValidateFor(2*time.Minute))
	p.MaxSleepBins = 719
	require.Error(t, p.ValidateFor(2*time.Minute))

	// Both beyond: both named.
	p = DefaultPolicy()
	p.LookaheadBins, p.MaxSleepBins = 30, 40
	err = p.ValidateFor(time.Hour)
	require.ErrorContains(t, err, "lower LookaheadBins and MaxSleepBins to at most 22")

	// What fits at one-hour bins.
	p = DefaultPolicy()
	p.MaxSleepBins = 22
	require.NoError(t, p.ValidateFor(time.Hour))

	// Bins so wide that no lease fits.
	p.MaxSleepBins = 1
	p.LookaheadBins = 1
	require.ErrorContains(t, p.ValidateFor(9*time.Hour), "at most 8h0m0s")
}

// A loop started at one-hour bins with the default policy (a 60-bin sleep:
// leases of 62 h) fails at once, naming the setting; loops from before the
// check, and loops that continue as new with the policy they were started
// with, keep running (their forecast plans leases the agents accept), and
// a change to their policy is checked against the bound.
func TestLoopRefusesLeasesNoAgentAccepts(t *testing.T) {
	env := newLoopEnv(t)
	env.ExecuteWorkflow(LoopWorkflowName, LoopInput{App: "app-h", Bin: time.Hour, Policy: DefaultPolicy()})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "loop app-h: policy: MaxSleepBins 60 at 1h0m0s bins")
	require.Contains(t, err.Error(), "lower MaxSleepBins to at most 22")

	runs := func(t *testing.T, env *testsuite.TestWorkflowEnvironment, in LoopInput, change PolicyChange) (rejected error, accepted bool) {
		env.RegisterActivity(&activities.Predictor{Models: oneModel{recentModel{}}})
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(UpdatePolicy, "change", &testsuite.TestUpdateCallback{
				OnReject:   func(err error) { rejected = err },
				OnAccept:   func() { accepted = true },
				OnComplete: func(any, error) {},
			}, PolicyUpdate{Change: change})
		}, 90*time.Minute)
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalStop, StopSignal{Reason: "test over"}) }, 3*time.Hour)
		env.ExecuteWorkflow(LoopWorkflowName, in)
		require.NoError(t, env.GetWorkflowError())
		return rejected, accepted
	}
	t.Run("continued as new", func(t *testing.T) {
		env := newLoopEnv(t)
		rejected, _ := runs(t, env, LoopInput{App: "app-h", Bin: time.Hour, Policy: DefaultPolicy(), Runs: 1}, PolicyChange{TopN: ptr(2)})
		require.ErrorContains(t, rejected, "lower MaxSleepBins to at most 22", "a change leaving the sleep too long is refused")
	})
	t.Run("continued as new, sleep lowered", func(t *testing.T) {
		env := newLoopEnv(t)
		rejected, accepted := runs(t, env, LoopInput{App: "app-h", Bin: time.Hour, Policy: DefaultPolicy(), Runs: 1}, PolicyChange{MaxSleepBins: ptr(22)})
		require.NoError(t, rejected)
		require.True(t, accepted)
	})
}
