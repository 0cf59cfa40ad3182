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

// An observation's kept lease is a value a worker built: read as every
// payload is, a field of Lease this release does not know is skipped (as
// when Lease had its own UnmarshalJSON), while the observation's own
// fields stay strict and a kept lease of the wrong shape is refused.
func TestObservationKeptLeaseIsReadLeniently(t *testing.T) {
	obs, err := decodeStrict[ObservationSignal]([]byte(`{"request_id":"r1","kept":{"lease_id":"a.1.h","host_url":"http://h","memory_mb":64,"expires":"2026-01-02T03:04:05Z","later_field":1}}`))
	require.NoError(t, err)
	require.Equal(t, "a.1.h", obs.Kept.LeaseID)
	require.Equal(t, 64.0, obs.Kept.MemoryMB)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), obs.Kept.Expires)
	obs, err = decodeStrict[ObservationSignal]([]byte(`{"RequestID":"r1","Kept":{"LeaseID":"a.1.h","HostURL":"http://h","MemoryMB":64}}`))
	require.NoError(t, err)
	require.Equal(t, "a.1.h", obs.Kept.LeaseID)
	obs, err = decodeStrict[ObservationSignal]([]byte(`{"RequestID":"r1","Kept":null}`))
	require.NoError(t, err)
	require.Nil(t, obs.Kept)

	observation := func(b string) error { _, err := decodeStrict[ObservationSignal]([]byte(b)); return err }
	kept := `"kept":{"lease_id":"a.1.h","host_url":"http://h","memory_mb":64}`
	require.ErrorContains(t, observation(`{"request_id":"r1",`+kept+`,"extra":1}`), `unknown field "extra"`)
	require.ErrorContains(t, observation(`{"request_id":"r1","kept":{"lease_id":"a.1.h","host_url":"http://h","memory_mb":"big"}}`), "string is not a float64")
	require.ErrorContains(t, observation(`{"request_id":"r1","kept":[1]}`), "array is not a")
	require.ErrorContains(t, observation(`{"request_id":"r1","kept":{"lease_id":"a.1.h"}}`), "field Kept: a kept lease needs")
}
