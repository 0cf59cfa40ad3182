package resident

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/forewarm/forewarm/activities"
)

// DefaultMaxStale is how old a last-known-good host list may be and still
// be used while the host directory (ClickHouse) is unreachable.
const DefaultMaxStale = 5 * time.Minute

// LastKnownHosts is a activities.HostDirectory in front of another (the store): it
// asks its source at most every Fresh, so a burst of preparations is one
// query, and when the source fails it answers with the last list it read,
// for up to MaxStale after that read, so preparations and cold serves go
// on through a ClickHouse outage. Past MaxStale it fails, saying how old
// the list is. No lock is held while the source is asked: one caller
// refreshes, the others get the list in hand, or wait for that read when
// they have none or an empty one.
type LastKnownHosts struct {
	Source   activities.HostDirectory
	Fresh    time.Duration // reuse a list this young without asking (0: always ask)
	MaxStale time.Duration // serve a list this old when the source fails (0: DefaultMaxStale)
	// Timeout bounds one ask of the source (0: 5 s), so a directory that
	// hangs rather than refuses still falls back to the list in hand.
	Timeout time.Duration
	Log     *slog.Logger
	// Observe, when set, hears of every answer: the list's age and
	// whether the source had failed (a stale answer).
	Observe func(age time.Duration, stale bool)
	Now     func() time.Time // the clock (nil: time.Now)

	mu         sync.Mutex
	hosts      []activities.HostInfo
	at         time.Time     // when hosts was read
	refreshing chan struct{} // closed when the refresh in flight ends (nil: none)
	failing    bool          // the last refresh failed (logged once per outage)
}

// LiveHosts answers the fresh list, a last-known-good one during an outage
// of the source, or an error naming the outage and the list's age.
func (c *LastKnownHosts) LiveHosts(ctx context.Context) ([]activities.HostInfo, error) {
	for {
		c.mu.Lock()
		now := c.now()
		// An empty list is not reused: a host that registers next must
		// not wait for it to age.
		if len(c.hosts) > 0 && now.Sub(c.at) < c.Fresh {
			hs, age := slices.Clone(c.hosts), now.Sub(c.at)
			c.mu.Unlock()
			c.observe(age, false)
			return hs, nil
		}
		if wait := c.refreshing; wait != nil {
			if len(c.hosts) > 0 && now.Sub(c.at) <= c.maxStale() {
				// Someone is asking the source: the list in hand will do
				// (an empty one would not: wait for the answer, which may
				// name hosts that registered since).
				hs, age := slices.Clone(c.hosts), now.Sub(c.at)
				c.mu.Unlock()
				c.observe(age, c.failing)
				return hs, nil
			}
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.refreshing = done
		c.mu.Unlock()
		return c.refresh(ctx, done)
	}
}

// refresh asks the source, outside the lock, and records the answer.
func (c *LastKnownHosts) refresh(ctx context.Context, done chan struct{}) ([]activities.HostInfo, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	hs, err := c.Source.LiveHosts(rctx)
	cancel()
	c.mu.Lock()
	c.refreshing = nil
	close(done)
	now, age, maxStale := c.now(), c.now().Sub(c.at), c.maxStale()
	wasFailing, known := c.failing, c.hosts != nil
	c.failing = err != nil
	if err == nil {
		c.hosts, c.at = slices.Clone(hs), now
	}
	kept := slices.Clone(c.hosts)
	c.mu.Unlock()

	switch {
	case err == nil:
		if wasFailing && known {
			c.log().Info("host directory reachable again; host list fresh", "was_stale_for", age.Round(time.Second).String())
		}
		c.observe(0, false)
		return hs, nil
	case !known:
		return nil, fmt.Errorf("host directory unreachable and no host list read before: %w", err)
	case age > maxStale:
		c.observe(age, true)
		return nil, fmt.Errorf("host directory unreachable and the last known host list is %v old, beyond the %v it may be used for: %w",
			age.Round(time.Second), maxStale, err)
	}
	if !wasFailing {
		c.log().Warn("host directory unreachable; using the last known host list", "age", age.Round(time.Millisecond).String(),
			"max_stale", maxStale.String(), "hosts", len(kept), "err", err)
	}
	c.observe(age, true)
	return kept, nil
}

func (c *LastKnownHosts) observe(age time.Duration, stale bool) {
	if c.Observe != nil {
		c.Observe(age, stale)
	}
}

func (c *LastKnownHosts) maxStale() time.Duration {
	if c.MaxStale > 0 {
		return c.MaxStale
	}
	return DefaultMaxStale
}

func (c *LastKnownHosts) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *LastKnownHosts) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}
