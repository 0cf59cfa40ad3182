package resident

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/activities"
)

// scriptedDirectory answers LiveHosts from its fields; block, when set,
// holds every call until it is closed.
type scriptedDirectory struct {
	mu    sync.Mutex
	hosts []activities.HostInfo
	err   error
	block chan struct{}
	calls atomic.Int32
}

func (d *scriptedDirectory) LiveHosts(ctx context.Context) ([]activities.HostInfo, error) {
	d.calls.Add(1)
	d.mu.Lock()
	block, hs, err := d.block, d.hosts, d.err
	d.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return hs, err
}

func (d *scriptedDirectory) set(hs []activities.HostInfo, err error, block chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts, d.err, d.block = hs, err, block
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type observed struct {
	mu      sync.Mutex
	ages    []time.Duration
	stales  int
	answers int
}

func (o *observed) observe(age time.Duration, stale bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.answers++
	o.ages = append(o.ages, age)
	if stale {
		o.stales++
	}
}

// askTogether starts n callers of c at once; each must get twoHosts.
func askTogether(t *testing.T, c *LastKnownHosts, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs, err := c.LiveHosts(context.Background())
			if err != nil || len(hs) != 2 {
				t.Errorf("a caller got %v, %v", hs, err)
			}
		}()
	}
	return &wg
}

var twoHosts = []activities.HostInfo{{ID: "h1", URL: "http://127.0.0.1:1"}, {ID: "h2", URL: "http://127.0.0.1:2"}}

// While the directory is unreachable the last list read is used, for at
// most MaxStale after that read; then every call fails, saying how old the
// list is. Each stale answer is observed (the worker's metrics) with its
// age, and the list is fresh again as soon as the directory answers.
func TestLastKnownHostsServesAStaleListForABoundedTime(t *testing.T) {
	src := &scriptedDirectory{hosts: twoHosts}
	clk := &fakeClock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	var obs observed
	c := &LastKnownHosts{Source: src, Fresh: 2 * time.Second, Now: clk.Now, Observe: obs.observe}
	ctx := context.Background()

	hs, err := c.LiveHosts(ctx)
	require.NoError(t, err)
	require.Equal(t, twoHosts, hs)
	clk.advance(time.Second)
	_, err = c.LiveHosts(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, src.calls.Load(), "a list younger than Fresh is reused without asking")

	src.set(nil, errors.New("dial tcp 127.0.0.1:19000: connection refused"), nil)
	clk.advance(2 * time.Minute)
	hs, err = c.LiveHosts(ctx)
	require.NoError(t, err, "within the staleness bound the last known list answers")
	require.Equal(t, twoHosts, hs)
	clk.advance(3*time.Minute - time.Second) // exactly 5 minutes after the last read
	hs, err = c.LiveHosts(ctx)
	require.NoError(t, err)
	require.Equal(t, twoHosts, hs)
	obs.mu.Lock()
	require.Equal(t, 2, obs.stales)
	require.Equal(t, []time.Duration{0, time.Second, 2*time.Minute + time.Second, 5 * time.Minute}, obs.ages)
	obs.mu.Unlock()

	clk.advance(time.Second)
	_, err = c.LiveHosts(ctx)
	require.EqualError(t, err, "host directory unreachable and the last known host list is 5m1s old, beyond the 5m0s it may be used for: dial tcp 127.0.0.1:19000: connection refused")

	src.set(twoHosts[:1], nil, nil)
	hs, err = c.LiveHosts(ctx)
	require.NoError(t, err)
	require.Equal(t, twoHosts[:1], hs, "fresh again once the directory answers")
}

func TestLastKnownHostsWithoutAListFails(t *testing.T) {
	src := &scriptedDirectory{err: errors.New("connection refused")}
	c := &LastKnownHosts{Source: src, Fresh: time.Second, MaxStale: time.Minute}
	_, err := c.LiveHosts(context.Background())
	require.EqualError(t, err, "host directory unreachable and no host list read before: connection refused")
}

// No lock is held while the directory is asked: with a list in hand,
// callers are answered at once while one caller waits on a directory that
// hangs; without one, they wait for that single call instead of each
// asking the directory.
func TestLastKnownHostsHoldsNoLockAcrossTheDirectory(t *testing.T) {
	src := &scriptedDirectory{hosts: twoHosts}
	clk := &fakeClock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	c := &LastKnownHosts{Source: src, Fresh: time.Second, Now: clk.Now}
	ctx := context.Background()

	// First read: ten callers, one directory call.
	block := make(chan struct{})
	src.set(twoHosts, nil, block)
	callers := askTogether(t, c, 10)
	require.Eventually(t, func() bool { return src.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(block)
	callers.Wait()
	require.EqualValues(t, 1, src.calls.Load(), "callers without a list share the one read")

	// The directory hangs: the caller that asks it waits (at most
	// Timeout), every other caller gets the list in hand at once.
	clk.advance(10 * time.Second)
	hang := make(chan struct{})
	src.set(nil, errors.New("unreachable"), hang)
	c.Timeout = time.Hour
	hctx, cancel := context.WithCancel(ctx)
	stuck := make(chan error, 1)
	go func() {
		hs, err := c.LiveHosts(hctx)
		if err == nil && len(hs) != 2 {
			err = errors.New("not the list in hand")
		}
		stuck <- err
	}()
	require.Eventually(t, func() bool { return src.calls.Load() == 2 }, 5*time.Second, time.Millisecond)
	for range 100 {
		hs, err := c.LiveHosts(ctx)
		require.NoError(t, err)
		require.Len(t, hs, 2)
	}
	require.EqualValues(t, 2, src.calls.Load(), "one caller asks at a time")
	cancel()
	require.NoError(t, <-stuck, "the asking caller, given up on the directory, gets the list in hand too")
	close(hang)

	// A directory that hangs past Timeout counts as failing.
	c.Timeout = 50 * time.Millisecond
	clk.advance(10 * time.Second)
	src.set(nil, nil, make(chan struct{}))
	hs, err := c.LiveHosts(ctx)
	require.NoError(t, err)
	require.Len(t, hs, 2)
}

// A list read empty (the worker started before any host registered) is
// never handed out while a refresh is in flight: the callers wait for that
// read, which finds the hosts that registered meanwhile. Handing it out
// failed the first preparations of a fleet started with its worker ("no
// live host agent") although the hosts were registered.
func TestLastKnownHostsWaitsRatherThanHandOutAnEmptyList(t *testing.T) {
	src := &scriptedDirectory{hosts: []activities.HostInfo{}}
	clk := &fakeClock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	c := &LastKnownHosts{Source: src, Fresh: 2 * time.Second, Now: clk.Now}
	ctx := context.Background()
	hs, err := c.LiveHosts(ctx)
	require.NoError(t, err)
	require.Empty(t, hs, "no host registered yet")

	block := make(chan struct{})
	src.set(twoHosts, nil, block)
	callers := askTogether(t, c, 5)
	require.Eventually(t, func() bool { return src.calls.Load() == 2 }, 5*time.Second, time.Millisecond)
	close(block)
	callers.Wait()
	require.EqualValues(t, 2, src.calls.Load(), "the callers shared the one refresh")
}
