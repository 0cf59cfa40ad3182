package faults

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var soakFaults = []Fault{
	{Kind: "kill-worker", Lasts: 3 * time.Second},
	{Kind: "kill-agent", Target: "soak-b", Lasts: 3 * time.Second},
	{Kind: "cut-clickhouse", Lasts: 20 * time.Second},
	{Kind: "kill-worker", Lasts: 4 * time.Second},
}

// A plan is the same for the same seed, inside its window, and its faults
// never overlap (each has settled before the next begins).
func TestPlanIsSeededAndFaultsDoNotOverlap(t *testing.T) {
	start, end, settle := 20*time.Second, 170*time.Second, 8*time.Second
	seen := map[string]bool{}
	for seed := range uint64(200) {
		p, err := NewPlan(seed, start, end, settle, soakFaults)
		require.NoError(t, err)
		again, _ := NewPlan(seed, start, end, settle, soakFaults)
		require.Equal(t, p, again, "seed %d", seed)
		require.Len(t, p, len(soakFaults))
		kinds := map[string]int{}
		for i, e := range p {
			kinds[e.Kind]++
			require.GreaterOrEqual(t, e.At, start)
			require.LessOrEqual(t, e.At+e.Lasts+settle, end, "seed %d: %s", seed, p)
			if i > 0 {
				prev := p[i-1]
				require.GreaterOrEqual(t, e.At, prev.At+prev.Lasts+settle, "seed %d overlaps: %s", seed, p)
			}
		}
		require.Equal(t, map[string]int{"kill-worker": 2, "kill-agent": 1, "cut-clickhouse": 1}, kinds)
		seen[p.String()] = true
	}
	require.Greater(t, len(seen), 150, "seeds give different plans")
	_, err := NewPlan(1, 0, 30*time.Second, 8*time.Second, soakFaults)
	require.EqualError(t, err, "kill-worker lasts 3s: does not fit a 7.5s slot with 8s to settle (a longer run, or fewer faults)")
}

// Cut resets the connections through the proxy and refuses new ones;
// Restore accepts again on the same address.
func TestProxyCutAndRestore(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := NewProxy(echo.Addr().String())
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	roundTrip := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	require.NoError(t, roundTrip(c))

	p.Cut()
	require.Error(t, roundTrip(c), "the open connection is broken")
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "new connections are refused")
	require.Equal(t, 1, p.Cuts())

	require.NoError(t, p.Restore())
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	require.NoError(t, roundTrip(c2), "the same address forwards again")
	c2.Close()
}
