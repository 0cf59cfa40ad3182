package agent

import (
	"context"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// Reporter is where the agent announces itself and its metrics so the
// engine can discover it without a restart. hostagent wires the ClickHouse
// store in; tests use a fake.
type Reporter interface {
	// Register records (or refreshes) the host: ID, URL, capacity, speed,
	// labels and the time it was last seen.
	Register(ctx context.Context, info api.Info, seen time.Time) error
	// Report records one metrics snapshot.
	Report(ctx context.Context, m api.HostMetrics) error
}

// Report runs until ctx ends: it registers the host, then every interval
// sends a metrics snapshot (which keeps the host "seen" for discovery) and
// registers again at least once a minute (so a changed URL or capacity, or
// a registry that lost its rows, is corrected). Failures are logged and
// retried at the next tick; they never stop the agent, which keeps serving
// the leases it has.
func (a *Agent) Report(ctx context.Context, r Reporter, every time.Duration) {
	if every <= 0 {
		every = 5 * time.Second
	}
	reregister := max(time.Minute, every)
	t := time.NewTicker(every)
	defer t.Stop()
	var registered time.Time
	failing := false
	for {
		err := a.reportOnce(ctx, r, every, &registered, reregister)
		switch {
		case err != nil && !failing:
			a.log.Warn("cannot report to the host registry; retrying every interval", "err", err, "every", every)
			failing = true
		case err == nil && failing:
			a.log.Info("reporting to the host registry again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) reportOnce(ctx context.Context, r Reporter, timeout time.Duration, registered *time.Time, reregister time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if now := time.Now(); now.Sub(*registered) >= reregister {
		if err := r.Register(ctx, a.Info(), now.UTC()); err != nil {
			return err
		}
		*registered = now
		a.log.Info("registered in the host registry", "url", a.cfg.URL)
	}
	if err := r.Report(ctx, a.Metrics()); err != nil {
		*registered = time.Time{} // the registry may have been reset: register again
		return err
	}
	return nil
}
