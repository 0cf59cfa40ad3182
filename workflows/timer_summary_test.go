package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities/wire"
)

// The wake timer's summary (its metadata in the Web UI) says what the wake
// is for, from the loop's state.
func TestTimerSummarySaysWhyTheLoopSleeps(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, "2026-03-02T"+s+"Z")
		require.NoError(t, err)
		return v
	}
	l := &loop{}
	l.Bin = time.Minute
	l.BinEnd = at("12:01:00")
	l.NextWake, l.WakeReason = at("12:05:02"), "the policy keeps holding nothing until then"
	require.Equal(t, "sleep to 12:05:02: decide bin 12:05:00 (the policy keeps holding nothing until then); nothing held",
		l.timerSummary(l.NextWake, time.Time{}))

	l.Leases = []wire.Lease{{LeaseID: "a"}}
	l.AheadAt, l.AheadBin = at("12:04:40"), at("12:05:00")
	require.Equal(t, "sleep to 12:04:40: prepare ahead of bin 12:05:00; holds 1 lease", l.timerSummary(l.AheadAt, time.Time{}))

	l.Leases = append(l.Leases, wire.Lease{LeaseID: "b"})
	early := at("12:00:00")
	require.Equal(t, "sleep to 12:00:00: decide the first bin (12:01:00) ahead; holds 2 leases", l.timerSummary(early, early))

	l.WakeReason = ""
	require.Contains(t, l.timerSummary(at("12:05:02"), time.Time{}), "(next decision)")
}
