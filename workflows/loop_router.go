package workflows

import (
	"fmt"
	"hash/fnv"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/activities"
)

// maxSleep is this loop's bound on its sleep: Policy.MaxSleepBins less up
// to a quarter of it, by the application, so that loops started together
// (a fleet rolled out at once) do not all wake in the same bin when the
// bound comes round.
func (l *loop) maxSleep() int {
	n := l.Policy.maxSleep()
	h := fnv.New32a()
	h.Write([]byte(l.App))
	return n - int(h.Sum32()%uint32(n/4+1))
}

// untilReason is the Web UI's reason for a next wake the policy did not
// ask for.
func untilReason(until string, bins int) string {
	switch until {
	case activities.UntilHold:
		return fmt.Sprintf("extend the lease: it is planned %d bins ahead", bins)
	case activities.UntilBound:
		return fmt.Sprintf("the bound on the sleep (%d bins): a new model reaches the loop by then", bins)
	}
	return "end of the forecast"
}

// onWake moves the next decision to the bin the signal names, unless that
// bin is decided already (a late or repeated signal).
func (l *loop) onWake(ctx workflow.Context, sig WakeSignal) {
	now := workflow.Now(ctx)
	at := sig.Bin.Truncate(l.Bin)
	if sig.Bin.IsZero() {
		at = now.Truncate(l.Bin).Add(l.Bin)
	}
	if at.Before(l.NextTick) {
		return
	}
	if target := at.Add(l.grace()); target.Before(l.NextWake) {
		reason := sig.Reason
		if reason == "" {
			reason = "a request arrived"
		}
		l.NextWake, l.WakeReason = target, "woken: "+reason
		l.Stats.Woken++
		l.setDetails(ctx)
	}
}

// read takes a router-mode loop's counts of the bins since its last read
// (ending with the bin before binStart) into its own history.
func (l *loop) read(binStart time.Time, counts activities.Counts) {
	switch k := len(counts); {
	case k > len(l.Recent):
		l.Recent = append(l.Recent[:0:0], counts[max(0, k-l.Window):]...)
	default:
		copy(l.Recent[len(l.Recent)-k:], counts)
	}
	for _, c := range counts {
		l.Stats.Requests += c
	}
	l.ReadThrough = binStart
}
