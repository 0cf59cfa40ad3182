package wire

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCountsJSONIsCompactAndRoundTrips(t *testing.T) {
	idle := make(Counts, 1440)
	idle[3], idle[1439] = 2, 5
	busy := Counts{1, 2, 0, 4, 5, 6}
	for _, c := range []Counts{idle, busy, {}, nil, {0, 0, 0}} {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		var back Counts
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, len(c), len(back), "%s", b)
		for i := range c {
			require.Equal(t, c[i], back[i], "bin %d of %s", i, b)
		}
	}
	b, err := json.Marshal(idle)
	require.NoError(t, err)
	require.JSONEq(t, `{"n":1440,"z":[3,1435],"v":[2,5]}`, string(b))
	b, err = json.Marshal(busy)
	require.NoError(t, err)
	require.Equal(t, `[1,2,0,4,5,6]`, string(b), "a busy history stays a plain array")
}

// Loops wrote their history as a plain array before; it is read as it is.
func TestCountsReadTheOldArray(t *testing.T) {
	var c Counts
	require.NoError(t, json.Unmarshal([]byte(`[0, 1.5, 0, 3]`), &c))
	require.Equal(t, Counts{0, 1.5, 0, 3}, c)
}

func TestCountsRefuseWhatNoHistoryHolds(t *testing.T) {
	for in, want := range map[string]string{
		`[0, -1]`:                       "bin 1 holds -1",
		`{"n":3,"z":[0],"v":[1,2]}`:     "1 gaps for 2 values",
		`{"n":3,"z":[1,1],"v":[1,2]}`:   "value 1 falls beyond the 3 bins",
		`{"n":3,"z":[-1],"v":[1]}`:      "gap 0 is negative",
		`{"n":3,"z":[0],"v":[0]}`:       "value 0 is 0",
		`{"n":-1,"z":[],"v":[]}`:        "n -1 is outside",
		`{"n":3,"z":[0],"v":[1],"x":1}`: "unknown field",
		`{"n":99999999,"z":[],"v":[]}`:  "n 99999999 is outside",
		`"1,2"`:                         "counts:",
	} {
		var c Counts
		err := json.Unmarshal([]byte(in), &c)
		require.Error(t, err, in)
		require.True(t, strings.Contains(err.Error(), want), "%s: %v", in, err)
	}
}
