package workflows

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
		"LookaheadBins 1439 at 1m0s bins: a lease may be asked to live 1441 bins (24h1m0s), beyond the 24h0m0s a host agent accepts")
	p.LookaheadBins = 10
	require.EqualError(t, p.ValidateFor(3*time.Hour),
		"LookaheadBins 10 at 3h0m0s bins: a lease may be asked to live 12 bins (36h0m0s), beyond the 24h0m0s a host agent accepts")
	require.Error(t, p.ValidateFor(time.Duration(math.MaxInt64/4)), "an overflowing product is refused, not wrapped")

	// Loops from before the policy package: their lease TTL and horizon
	// against the same host limits.
	legacy := Policy{Threshold: 0.5, HorizonBins: 5, TopN: 1, MaxShadowMS: 500, SampleMB: 8}
	require.NoError(t, legacy.legacyValidate(time.Second))
	legacy.LeaseTTL = 300
	require.EqualError(t, legacy.legacyValidate(time.Second), "lease TTL 300ns is outside [1s, 24h0m0s], what a host agent accepts")
	legacy.LeaseTTL = 0
	legacy.HorizonBins = 1000
	require.EqualError(t, legacy.legacyValidate(2*time.Minute), "horizon 1000 × 2m0s bins: leases of 33h20m0s are outside [1s, 24h0m0s], what a host agent accepts")
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
