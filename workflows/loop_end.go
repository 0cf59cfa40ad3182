package workflows

// How a run ends: it continues as new, or it stops and lets go of
// everything it holds.

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/forewarm/forewarm/store/records"
)

// drainTimeout bounds how long a loop due to continue as new waits for the
// work in flight (a preparation, releases, extensions) before it cancels
// the preparation: a busy application must not keep it from continuing.
func (l *loop) drainTimeout() time.Duration {
	return max(2*l.Bin, 2*time.Second)
}

// continueAsNew stops starting new work, waits a bounded time for what is
// in flight, takes the signals already delivered, and continues as new
// carrying the loop's state.
func (l *loop) continueAsNew(ctx workflow.Context, receive func(workflow.Selector), kick workflow.ReceiveChannel) (LoopResult, error) {
	l.draining = true
	idle := func() bool { return l.preparing == "" && l.jobs == 0 && workflow.AllHandlersFinished(ctx) }
	if ok, _ := workflow.AwaitWithTimeout(ctx, l.drainTimeout(), idle); !ok && l.cancelPre != nil {
		// The cancelled preparation releases what it reserved.
		l.cancelPre()
		l.log.Info("continue-as-new: cancelled the preparation in flight", "preparation", l.preparing)
	}
	if err := workflow.Await(ctx, idle); err != nil {
		return l.shutdown(ctx)
	}
	// Signals already delivered to this run must not be lost.
	for {
		s := workflow.NewSelector(ctx)
		receive(s)
		s.AddReceive(kick, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		if !s.HasPending() {
			break
		}
		s.Select(ctx)
	}
	if l.stop != nil {
		return l.shutdown(ctx)
	}
	l.Runs++
	l.log.Info("continuing as new", "wakes", l.Stats.Wakes, "run", l.Runs)
	return LoopResult{}, workflow.NewContinueAsNewError(ctx, LoopWorkflowName, l.LoopInput)
}

// shutdown cancels the preparation in flight (it releases what it holds),
// waits for it, releases the live leases (including any the preparation
// handed back just before the cancel) and waits for the releases.
func (l *loop) shutdown(ctx workflow.Context) (LoopResult, error) {
	reason := "cancelled"
	if l.stop != nil {
		reason = "stopped: " + l.stop.Reason
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if l.cancelPre != nil {
		l.cancelPre()
	}
	if err := workflow.Await(dctx, func() bool { return l.preparing == "" }); err != nil {
		l.log.Warn("waiting for the preparation", "error", err)
	}
	for _, ls := range l.Leases {
		l.release(dctx, ls, records.EventReleased, "loop "+reason, workflow.Now(dctx).Sub(ls.Reserved).Seconds())
	}
	l.Leases = nil
	if err := workflow.Await(dctx, func() bool { return l.jobs == 0 && workflow.AllHandlersFinished(dctx) }); err != nil {
		l.log.Warn("waiting for releases", "error", err)
	}
	l.LastDecision = LoopStateStopped
	l.upsertAttrs(dctx)
	l.setDetails(dctx)
	res := LoopResult{App: l.App, Stats: l.Stats, Reason: reason}
	if l.stop == nil {
		return res, ctx.Err()
	}
	return res, nil
}
