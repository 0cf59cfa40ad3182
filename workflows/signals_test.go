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

	for payload, want := range map[string]string{
		`{"threshold":"0.3"}`:                   "field Threshold: string is not a float64",
		`{"treshold":0.3}`:                      "field Threshold is missing",
		`{"threshold":0.3,"extra":1}`:           `unknown field "extra"`,
		`{"change":{"lease_ttl":"soon"}}`:       `field Change: field LeaseTTL: duration "soon"`,
		`{"change":{"top_n":"two"}}`:            "field Change.TopN: string is not a int",
		`{"reason":"x","bin":"yesterday"}`:      "payload",
		`{"change":{"lookahead_bins":5,"x":1}}`: `unknown field "x"`,
	} {
		var err error
		if payload[2] == 'r' {
			_, err = decodeStrict[WakeSignal]([]byte(payload))
		} else if payload[2] == 'c' {
			_, err = decodeStrict[PolicyUpdate]([]byte(payload))
		} else {
			_, err = decodeStrict[ThresholdSignal]([]byte(payload))
		}
		require.ErrorContains(t, err, want, payload)
	}
}
