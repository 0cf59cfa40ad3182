package keda

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestWindowExpiresWithoutACall(t *testing.T) {
	clk := newFakeClock()
	r := NewRegistry(clk.Now)
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(time.Minute)))
	st := r.State("a")
	require.Equal(t, 1, st.Live)
	require.Equal(t, clk.Now().Add(time.Minute), st.NextExpiry)

	clk.Add(time.Minute - time.Nanosecond)
	require.Equal(t, 1, r.State("a").Live, "live up to its expiry")
	clk.Add(time.Nanosecond)
	require.Equal(t, 0, r.State("a").Live, "not live at its expiry, with no call in between")

	// An expired window cannot be extended: the lease is gone...
	require.ErrorIs(t, r.Extend("a.1", clk.Now().Add(time.Minute)), ErrUnknownLease)
	// ...and its late close says how it ended.
	e, err := r.Close("a.1")
	require.NoError(t, err)
	require.True(t, e.Expired)
	require.Equal(t, "a", e.App)
	require.Equal(t, time.Minute, e.Ended.Sub(e.Opened))
}

func TestExtendMovesTheExpiry(t *testing.T) {
	clk := newFakeClock()
	r := NewRegistry(clk.Now)
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(time.Minute)))
	changed := r.Changed()
	require.NoError(t, r.Extend("a.1", clk.Now().Add(3*time.Minute)))
	select {
	case <-changed:
	default:
		t.Fatal("an extension is a change")
	}
	clk.Add(2 * time.Minute)
	require.Equal(t, 1, r.State("a").Live)
	clk.Add(time.Minute)
	require.Equal(t, 0, r.State("a").Live)
	require.ErrorIs(t, r.Extend("nope", clk.Now()), ErrUnknownLease)
}

func TestCloseEndsTheRightWindow(t *testing.T) {
	clk := newFakeClock()
	r := NewRegistry(clk.Now)
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(time.Hour)))
	require.NoError(t, r.Open("a", "a.2", clk.Now().Add(2*time.Hour)))
	require.NoError(t, r.Open("b", "b.1", clk.Now().Add(time.Hour)))
	st := r.State("a")
	require.Equal(t, 2, st.Live)
	require.Equal(t, uint64(2), st.Seq)
	require.Equal(t, clk.Now().Add(time.Hour), st.NextExpiry, "the earliest expiry")

	clk.Add(10 * time.Second)
	changed := r.Changed()
	e, err := r.Close("a.1")
	require.NoError(t, err)
	require.False(t, e.Expired)
	require.Equal(t, 10*time.Second, e.Ended.Sub(e.Opened))
	<-changed
	st = r.State("a")
	require.Equal(t, 1, st.Live)
	require.Equal(t, clk.Now().Add(2*time.Hour-10*time.Second), st.NextExpiry)
	require.Equal(t, 1, r.State("b").Live, "another app's window is untouched")

	_, err = r.Close("a.1")
	require.True(t, errors.Is(err, ErrUnknownLease), "a second close: %v", err)
	_, err = r.Close("a.2")
	require.NoError(t, err)
	require.Equal(t, 0, r.State("a").Live)
}

func TestOpenIsIdempotentPerLease(t *testing.T) {
	clk := newFakeClock()
	r := NewRegistry(clk.Now)
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(time.Minute)))
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(2*time.Minute))) // a retried reserve
	st := r.State("a")
	require.Equal(t, 1, st.Live)
	require.Equal(t, uint64(1), st.Seq)
	require.Equal(t, clk.Now().Add(2*time.Minute), st.NextExpiry)
	require.ErrorContains(t, r.Open("", "x", clk.Now()), "app")
}

func TestToldCoversANewWindowWhileKEDAIsActive(t *testing.T) {
	clk := newFakeClock()
	r := NewRegistry(clk.Now)
	require.NoError(t, r.Open("a", "a.1", clk.Now().Add(time.Hour)))
	_, told, known := r.toldOf("a.1")
	require.True(t, known)
	require.False(t, told)
	r.Told("a", r.State("a").Seq)
	_, told, _ = r.toldOf("a.1")
	require.True(t, told)
	// KEDA already scales "a" up: a second window needs no new answer.
	require.NoError(t, r.Open("a", "a.2", clk.Now().Add(time.Hour)))
	_, told, _ = r.toldOf("a.2")
	require.True(t, told)
	// Once every window closed, a new one must be told again.
	_, _ = r.Close("a.1")
	_, _ = r.Close("a.2")
	require.NoError(t, r.Open("a", "a.3", clk.Now().Add(time.Hour)))
	_, told, _ = r.toldOf("a.3")
	require.False(t, told)
}

func TestRegistryIsSafeForConcurrentUse(t *testing.T) {
	r := NewRegistry(nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease := string(rune('a' + i))
			for range 200 {
				_ = r.Open("a", lease, time.Now().Add(time.Hour))
				_ = r.Extend(lease, time.Now().Add(time.Hour))
				r.Told("a", r.State("a").Seq)
				_, _ = r.Close(lease)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 0, r.State("a").Live)
}
