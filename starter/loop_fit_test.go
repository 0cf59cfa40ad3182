package main

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/workflows"
)

// `starter loop start --bin 1h` without --max-sleep-bins starts loops whose
// leases a host agent accepts: the default sleep is lowered to what fits,
// and says so; a value given is kept (and refused by ValidateFor).
func TestLoopStartFitsTheDefaultSleepToTheBin(t *testing.T) {
	parse := func(args ...string) (*policyFlags, *pflag.FlagSet) {
		var pf policyFlags
		fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
		pf.register(fs)
		require.NoError(t, fs.Parse(args))
		return &pf, fs
	}
	pf, fs := parse()
	pol, notes := pf.fitBin(fs, pf.policy(), time.Minute)
	require.Equal(t, workflows.DefaultPolicy(), pol, "one-minute bins: the defaults fit")
	require.Empty(t, notes)

	pol, notes = pf.fitBin(fs, pf.policy(), time.Hour)
	require.Equal(t, 22, pol.MaxSleepBins)
	require.Equal(t, 10, pol.LookaheadBins)
	require.NoError(t, pol.ValidateFor(time.Hour))
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "--max-sleep-bins is 22, not 60")

	pol, notes = pf.fitBin(fs, pf.policy(), 3*time.Hour)
	require.Equal(t, 6, pol.MaxSleepBins)
	require.Equal(t, 6, pol.LookaheadBins)
	require.NoError(t, pol.ValidateFor(3*time.Hour))
	require.Len(t, notes, 2)

	pf, fs = parse("--max-sleep-bins", "60")
	pol, notes = pf.fitBin(fs, pf.policy(), time.Hour)
	require.Equal(t, 60, pol.MaxSleepBins, "given: kept, and refused")
	require.Empty(t, notes)
	require.ErrorContains(t, pol.ValidateFor(time.Hour), "lower MaxSleepBins to at most 22")
}
