package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Operators write payloads in the style every output uses (snake_case
// keys, durations as "1m0s"); workers and older clients send Go field
// names. Both decode to the same value, and strictness is unchanged.
func TestSignalsAcceptEitherSpelling(t *testing.T) {
	th, err := decodeStrict[ThresholdSignal]([]byte(`{"threshold":0.3}`))
	require.NoError(t, err)
	require.Equal(t, 0.3, th.Threshold)
	th, err = decodeStrict[ThresholdSignal]([]byte(`{"Threshold":0.4}`))
	require.NoError(t, err)
	require.Equal(t, 0.4, th.Threshold)

	obs, err := decodeStrict[ObservationSignal]([]byte(`{"request_id":"r1","size_mb":64,"latency_ms":3}`))
	require.NoError(t, err)
	require.Equal(t, ObservationSignal{RequestID: "r1", SizeMB: 64, LatencyMS: 3}, obs)

	up, err := decodeStrict[PolicyUpdate]([]byte(`{"change":{"lookahead_bins":5,"lease_ttl":"1m30s","dry_run":true}}`))
	require.NoError(t, err)
	require.Equal(t, 5, *up.Change.LookaheadBins)
	require.Equal(t, 90*time.Second, *up.Change.LeaseTTL)
	require.True(t, *up.Change.DryRun)
	up, err = decodeStrict[PolicyUpdate]([]byte(`{"Change":{"LeaseTTL":90000000000}}`))
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, *up.Change.LeaseTTL)

	threshold := func(b []byte) error { _, err := decodeStrict[ThresholdSignal](b); return err }
	policy := func(b []byte) error { _, err := decodeStrict[PolicyUpdate](b); return err }
	wake := func(b []byte) error { _, err := decodeStrict[WakeSignal](b); return err }
	for _, c := range []struct {
		decode        func([]byte) error
		payload, want string
	}{
		{threshold, `{"threshold":"0.3"}`, "field Threshold: string is not a float64"},
		{threshold, `{"treshold":0.3}`, "field Threshold is missing"},
		{threshold, `{"threshold":0.3,"extra":1}`, `unknown field "extra"`},
		{policy, `{"change":{"lease_ttl":"soon"}}`, `field Change: field LeaseTTL: duration "soon"`},
		{policy, `{"change":{"top_n":"two"}}`, "field Change.TopN: string is not a int"},
		{policy, `{"change":{"lookahead_bins":5,"x":1}}`, `unknown field "x"`},
		{wake, `{"reason":"x","bin":"yesterday"}`, `payload {"reason":"x","bin":"yesterday"}`},
	} {
		require.ErrorContains(t, c.decode([]byte(c.payload)), c.want, c.payload)
	}
}
