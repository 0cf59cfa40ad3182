package workflows

// What requests tell the loop: arrivals counted, claims answered,
// observations folded in.

import (
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/store/records"
)

// count records n requests that arrived at `at` (zero: now) and their
// size: in the open bin, or in the closed bin they arrived in when their
// report came late.
func (l *loop) count(ctx workflow.Context, n, sizeMB float64, at time.Time) {
	if l.BinEnd.IsZero() {
		// A request before the loop's first bin is open (it is still
		// reading its history): that bin opens now.
		l.BinEnd = workflow.Now(ctx).Truncate(l.Bin).Add(l.Bin)
	}
	l.advance(workflow.Now(ctx))
	open := l.BinEnd.Add(-l.Bin)
	switch back := int((open.Sub(at) + l.Bin - 1) / l.Bin); {
	case l.Router:
		// The router records the requests: the loop reads them at its wake.
	case !at.IsZero() && at.Before(open) && back <= len(l.Recent):
		l.Recent[len(l.Recent)-back] += n
	default:
		l.Pending += n
	}
	if !l.Router {
		l.Stats.Requests += n
	}
	if sizeMB > 0 {
		l.Sizes = append(l.Sizes, sizeMB)
		if over := len(l.Sizes) - maxSizes; over > 0 {
			l.Sizes = append(l.Sizes[:0:0], l.Sizes[over:]...)
		}
	}
	l.wakeEarly = true
}

// claim hands the best live lease to a request; the lease stays: it is
// a warm instance that serves every request of the application until the
// policy lets it go. Without one, the request goes cold and the host is
// asked to keep its instance as a lease until the next decision.
func (l *loop) claim(ctx workflow.Context, in ClaimUpdate) (ClaimUpdateResult, error) {
	now := workflow.Now(ctx)
	if in.CountArrival {
		l.count(ctx, 1, in.SizeMB, in.ArrivedAt)
		if l.kick != nil { // nil in the run's first task, before run starts: wakeEarly is read there
			l.kick()
		}
	}
	res := ClaimUpdateResult{Adjustments: maps.Clone(l.Adjustments), Stays: true}
	best := l.bestLease(now, in.SizeMB)
	if best < 0 && l.preparing != "" && !l.draining {
		// Its instance is being prepared: a cold start of its own would
		// take about as long as the rest of the preparation, so the request
		// joins it, waiting at most a typical preparation.
		l.Stats.ClaimsWaited++
		if _, err := workflow.AwaitWithTimeout(ctx, l.claimWait(), func() bool { return l.preparing == "" }); err != nil {
			return res, err
		}
		now2 := workflow.Now(ctx)
		res.WaitedMS = float64(now2.Sub(now)) / float64(time.Millisecond)
		now = now2
		if best = l.bestLease(now, in.SizeMB); best >= 0 {
			l.Stats.ClaimsWaitedWarm++
		}
	}
	if best >= 0 {
		l.Stats.Claims++
		if in.CountArrival {
			l.Stats.WarmRequests++
		}
		res.Found, res.Lease = true, l.Leases[best]
		return res, nil
	}
	l.Stats.Misses++
	// One instance per application: keep this request's only when nothing
	// is held, prepared or already kept in this bin.
	if !l.draining && len(l.Leases) == 0 && l.preparing == "" && !l.keptIn.Equal(l.BinEnd) {
		l.keptIn = l.BinEnd
		size := max(l.leaseSizeMB(), in.SizeMB)
		disk := 0.0
		if l.Profile.MemoryMB > 0 {
			disk = l.Profile.DiskMB * size / l.Profile.MemoryMB
		}
		res.Keep = &wire.KeepPlan{
			LeaseID:  keptLeaseID(l.App, in.RequestID),
			TTL:      l.BinEnd.Sub(now) + l.leaseGrace(),
			MemoryMB: size, DiskMB: disk, CPUMilli: l.leaseCPUMilli(),
		}
	}
	return res, nil
}

// bestLease is the live lease with the best score that holds a request of
// sizeMB (0: unknown), or -1.
func (l *loop) bestLease(now time.Time, sizeMB float64) int {
	best := -1
	for i, ls := range l.Leases {
		if ls.Expires.After(now) && (sizeMB <= ls.MemoryMB || sizeMB == 0) && (best < 0 || ls.Score > l.Leases[best].Score) {
			best = i
		}
	}
	return best
}

// claimWait bounds how long a claim waits for the preparation in flight:
// a typical preparation's time (the lead time before one was measured),
// at most half a bin.
func (l *loop) claimWait() time.Duration {
	d := l.lead()
	if l.Stats.PreparationMS > 0 {
		d = time.Duration(l.Stats.PreparationMS * float64(time.Millisecond))
	}
	return min(d, l.Bin/2)
}

// keptLeaseID names the lease a cold request's instance becomes:
// <app>.kept.<request>, with only the characters hosts accept.
func keptLeaseID(app, requestID string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '-'
		}, s)
	}
	return clean(app) + ".kept." + clean(requestID)
}

// maxAdjustedHosts bounds the adjustments a loop keeps: one per host it
// has served on, not one per name a signal can carry.
const maxAdjustedHosts = 256

// observe folds in a request's outcome.
func (l *loop) observe(ctx workflow.Context, sig ObservationSignal) {
	n := sig.Count
	if n <= 0 {
		n = 1
	}
	if !sig.Claimed {
		l.count(ctx, n, sig.SizeMB, sig.At)
		if sig.Warm {
			l.Stats.WarmRequests++
		}
	}
	if sig.Adjustment != nil && sig.Host != "" {
		if _, known := l.Adjustments[sig.Host]; known || len(l.Adjustments) < maxAdjustedHosts {
			l.Adjustments[sig.Host] = *sig.Adjustment
		}
	}
	for _, id := range sig.Gone {
		l.Leases = slices.DeleteFunc(l.Leases, func(ls wire.Lease) bool { return ls.LeaseID == id })
	}
	if k := sig.Kept; k != nil && k.LeaseID != "" && !slices.ContainsFunc(l.Leases, func(ls wire.Lease) bool { return ls.LeaseID == k.LeaseID }) {
		l.Stats.Kept++
		if len(l.Leases) > 0 {
			// The application already holds an instance: one is enough.
			l.release(ctx, *k, records.EventReleased, "a second instance of the application", workflow.Now(ctx).Sub(k.Reserved).Seconds())
		} else {
			l.Leases = append(l.Leases, *k)
		}
	}
	l.upsertAttrs(ctx)
	l.setDetails(ctx)
}
