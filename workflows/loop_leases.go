package workflows

// Carrying a decision out on the hosts: leases kept, extended, released
// and expired.

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/store/records"
)

// apply carries a decision out on the hosts. Leases live until the end of
// the hold the policy planned, plus leaseGrace: if the loop is lost the
// hosts free them soon after.
func (l *loop) apply(ctx workflow.Context, binStart time.Time, res wire.ForecastResult) {
	until := binStart.Add(time.Duration(max(1, res.HoldBins))*l.Bin + l.leaseGrace())
	switch res.Action {
	case policy.Prepare, policy.Keep:
		if len(l.Leases) == 0 {
			// Held by an instance that is gone (a request's instance the
			// host could not keep, a failed preparation): prepare one.
			l.prepare(ctx, binStart, until)
			return
		}
		for i := range l.Leases {
			if l.Leases[i].Expires.Before(until) {
				l.extend(ctx, l.Leases[i], until)
			}
		}
	case policy.Release:
		l.releaseAll(ctx, fmt.Sprintf("P=%.3g below the keep threshold %.3g", res.Path[0], l.thresholds().Keep))
	}
}

// leaseGrace is how long a lease outlives the hold the policy planned: a
// bin, and at least 5 s, so a loop that decides late (a busy worker, a
// worker restart) extends its instance before the host lets it go.
func (l *loop) leaseGrace() time.Duration {
	return max(l.Bin, 5*time.Second)
}

// extend moves a lease's expiry on its host, in place (no new reservation,
// no shadow request), in the background.
func (l *loop) extend(ctx workflow.Context, ls wire.Lease, until time.Time) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{wire.ErrBadInput, wire.ErrHostRejected}},
		Summary:             "extend " + ls.LeaseID,
	})
	fut := workflow.ExecuteActivity(actx, ActivityExtend, wire.ExtendInput{
		LeaseID: ls.LeaseID, App: l.App, Host: ls.Host, HostURL: ls.HostURL, TTL: until.Sub(workflow.Now(ctx)),
	})
	l.jobs++
	l.Stats.Extends++
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer func() { l.jobs-- }()
		var res wire.ExtendResult
		err := fut.Get(gctx, &res)
		i := slices.IndexFunc(l.Leases, func(x wire.Lease) bool { return x.LeaseID == ls.LeaseID })
		switch {
		case err == nil && res.Extended:
			if i >= 0 {
				l.Leases[i].Expires = until
				if !res.Expires.IsZero() && res.Expires.Before(until) {
					l.Leases[i].Expires = res.Expires
				}
			}
		case err == nil && res.Gone:
			l.Stats.ExtendsFailed++
			if i >= 0 {
				l.Leases = slices.Delete(l.Leases, i, i+1)
			}
			l.LastError = fmt.Sprintf("lease %s is gone from %s; the next decision prepares again if it still holds", ls.LeaseID, ls.Host)
			if l.kick != nil {
				l.kick()
			}
		case err != nil:
			// The host did not answer through the retries: count the lease
			// lost (its TTL frees it there) and decide again next bin.
			l.Stats.ExtendsFailed++
			if i >= 0 {
				l.Leases = slices.Delete(l.Leases, i, i+1)
			}
			l.LastError = fmt.Sprintf("extend %s on %s failed, lease given up: %v", ls.LeaseID, ls.Host, err)
			l.log.Warn("extend failed; giving the lease up", "lease", ls.LeaseID, "error", err)
			if l.kick != nil {
				l.kick()
			}
		default:
			l.Stats.ExtendsFailed++
			l.LastError = fmt.Sprintf("extend %s on %s refused: %s; it keeps its expiry", ls.LeaseID, ls.Host, res.Reason)
			l.log.Warn("extend refused; the lease keeps its expiry", "lease", ls.LeaseID, "reason", res.Reason)
		}
	})
}

// releaseAll lets every lease go and cancels a preparation in flight (it
// releases what it reserved).
func (l *loop) releaseAll(ctx workflow.Context, reason string) {
	l.prepWanted = false
	l.AheadAt = time.Time{}
	if l.cancelPre != nil {
		l.cancelPre()
	}
	now := workflow.Now(ctx)
	for _, ls := range l.Leases {
		l.Stats.Released++
		l.release(ctx, ls, records.EventReleased, reason, now.Sub(ls.Reserved).Seconds())
	}
	l.Leases = nil
}

// expire drops leases past their expiry: their hosts have freed them.
func (l *loop) expire(ctx workflow.Context, now time.Time) {
	l.Leases = slices.DeleteFunc(l.Leases, func(ls wire.Lease) bool {
		if ls.Expires.After(now) {
			return false
		}
		held := ls.Expires.Sub(ls.Reserved).Seconds()
		l.Stats.Expired++
		l.Stats.WastedMBSeconds += ls.MemoryMB * held
		// The host has freed it; the release records the event and is a
		// no-op there.
		l.release(ctx, ls, records.EventExpired, "lease TTL passed", held)
		return true
	})
}

// release gives a lease back in the background; the loop does not wait.
func (l *loop) release(ctx workflow.Context, ls wire.Lease, event, reason string, held float64) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{wire.ErrHostRejected}},
		Summary:             event + " " + ls.LeaseID,
	})
	fut := workflow.ExecuteActivity(actx, ActivityRelease, wire.ReleaseInput{
		LeaseID: ls.LeaseID, App: l.App, Host: ls.Host, HostURL: ls.HostURL, Event: event, Reason: reason,
		MemoryMB: ls.MemoryMB, DiskMB: ls.DiskMB, CPUMilli: ls.CPUMilli, HeldSeconds: held,
	})
	l.jobs++
	workflow.Go(ctx, func(gctx workflow.Context) {
		defer func() { l.jobs-- }()
		if err := fut.Get(gctx, nil); err != nil {
			// The host's own TTL frees the resources anyway; say so.
			l.log.Warn("release failed; the host's TTL will free it", "lease", ls.LeaseID, "error", err)
		}
	})
}
