package main

// Lost wakes (the gateway mode): a router-mode loop that holds nothing
// sleeps until its planned wake, and the worker's arrival watch wakes it
// early when a request arrives for its application (the application now
// holds the instance that served it: the loop must keep or release it at
// the next bin). The soak checks this from outside the worker: the
// arrivals come from the store, the wakes from each loop's own history.
//
// A loop's wakes are the Forecast local activities in its history (every
// run of it, continued as new or not): each one is a wake that closed the
// bins before it and decided the bin it began in. The wake's time is the
// loop's workflow.Now as it woke (see loopWakes.add), and the bin it
// decided is that time truncated to the bin. A forecast
// that failed (ClickHouse cut) is a wake too: the loop tries again at the
// next bin, and the first that succeeds reads every bin since.
//
// For each bin B with arrivals of the application: the plan in force is
// that of the loop's last wake that decided B or a bin before it. If that
// wake held an instance, B is not judged (whether a request changes a
// holding loop's plan depends on the model). Otherwise B is a cold
// arrival and its loop must decide B+1 or B+2: B becomes final a grace
// after it ends (the arrival watch checks it then), and the loop's next
// wake must come at most one bin later. The wake is lost when the loop's
// next wake decided a bin after B+2, or when it made none though it ran
// past the end of B+2. Bins before a loop's first wake, and bins whose
// B+2 had not ended when the loop was stopped, are not judged.
//
// A bin a killed gateway's spool wrote when the gateway started again
// reached the store after the arrival watch had checked it: it is a late
// arrival, which the worker's mirror counts in the first bin it freezes
// once the report is in the store (resident.Mirror.LateBins). Such a bin
// becomes final then: the first boundary E whose grace ends after the
// report was seen in the store, and the loop must decide E or E+1 (before
// E+2 begins), by the same rule. The soak knows those bins by watching the
// store after each gateway kill (spooledBins); every application's
// arrivals in them are judged so.

import (
	"context"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/worker/resident"
	"github.com/forewarm/forewarm/workflows"
)

// loopWakes is what one loop's history says about its wakes.
type loopWakes struct {
	App    string
	Router bool       // the loop was started in router mode
	Wakes  []loopWake // ascending
	// Signals are the bins named by the wake signals the loop received
	// (the arrival watch's), ascending: for the report of a lost wake.
	Signals []time.Time
	// End is when the loop was told to stop (zero: it was not).
	End time.Time
}

// loopWake is one wake of a loop.
type loopWake struct {
	At    time.Time // start of its workflow task: it decided the bin At.Truncate(bin)
	Holds bool      // its decision holds an instance (false when the forecast failed)
}

// lostWake is a cold arrival whose loop slept through it.
type lostWake struct {
	App    string
	Bin    time.Time // start of the arrival's bin
	Heard  time.Time // when a restarted gateway's spool had written the bin (zero: on time)
	Next   time.Time // the loop's next wake (zero: none before it stopped)
	Signal bool      // a wake signal named one of the two bins after the arrival's final
}

func (w lostWake) String() string {
	next := "no wake before the loop stopped"
	if !w.Next.IsZero() {
		next = "next wake " + w.Next.UTC().Format("15:04:05.000")
	}
	sig := "no wake signal for it"
	if w.Signal {
		sig = "a wake signal came"
	}
	late := ""
	if !w.Heard.IsZero() {
		late = ", written late by a restarted gateway (in the store at " + w.Heard.UTC().Format("15:04:05.000") + ")"
	}
	return fmt.Sprintf("%s: arrival in the bin of %s%s, %s, %s", w.App, w.Bin.UTC().Format("15:04:05"), late, next, sig)
}

// judgeWakes returns the cold arrivals among busy (the starts of the bins
// in which lw's application saw requests, in any order), how many of them
// were late (spooled: the bins a restarted gateway wrote, and when they
// were seen in the store) and the lost wakes among them, under the rule
// above.
func judgeWakes(lw loopWakes, busy []time.Time, spooled map[time.Time]time.Time, bin time.Duration) (cold, late int, lost []lostWake, err error) {
	if bin <= 0 {
		return 0, 0, nil, fmt.Errorf("bin width %v: must be positive", bin)
	}
	if !slices.IsSortedFunc(lw.Wakes, func(a, b loopWake) int { return a.At.Compare(b.At) }) {
		return 0, 0, nil, fmt.Errorf("loop %s: wakes out of order", lw.App)
	}
	bins := slices.Clone(busy)
	slices.SortFunc(bins, time.Time.Compare)
	for _, b := range slices.Compact(bins) {
		if !b.Equal(b.Truncate(bin)) {
			return 0, 0, nil, fmt.Errorf("loop %s: arrival bin %v is not a boundary of %v bins", lw.App, b.UTC(), bin)
		}
		// The plan in force: the last wake that decided b or a bin before.
		k, _ := slices.BinarySearchFunc(lw.Wakes, b.Add(bin), func(w loopWake, t time.Time) int { return w.At.Compare(t) })
		if k == 0 || lw.Wakes[k-1].Holds {
			continue
		}
		final := b.Add(bin) // the boundary whose grace makes b final
		heard, spool := spooled[b]
		if spool {
			// Final at the first boundary whose grace ends once the report
			// is in the store.
			t := heard.Add(-resident.Grace(bin))
			e := t.Truncate(bin)
			if e.Before(t) {
				e = e.Add(bin)
			}
			final = later(final, e)
		}
		due := final.Add(2 * bin) // the loop decides final's bin or the next: before the one after begins
		next := k < len(lw.Wakes)
		if !lw.End.IsZero() && lw.End.Before(due) || !next && lw.End.IsZero() {
			continue // stopped (or still running when read) before the wake was due
		}
		cold++
		if spool {
			late++
		}
		if next && lw.Wakes[k].At.Before(due) {
			continue
		}
		w := lostWake{App: lw.App, Bin: b}
		if spool {
			w.Heard = heard
		}
		if next {
			w.Next = lw.Wakes[k].At
		}
		for _, s := range lw.Signals {
			w.Signal = w.Signal || !s.Before(final) && s.Before(due)
		}
		lost = append(lost, w)
	}
	return cold, late, lost, nil
}

// readLoopWakes reads the wakes of app's loop from its history, every run
// of it (the latest first, back through the runs it continued).
func readLoopWakes(ctx context.Context, tc client.Client, app string) (loopWakes, error) {
	lw := loopWakes{App: app}
	id := workflows.LoopWorkflowID(app)
	var runs [][]*historypb.HistoryEvent
	for run := ""; ; {
		var events []*historypb.HistoryEvent
		it := tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				return lw, fmt.Errorf("history of %s: %w", id, err)
			}
			events = append(events, e)
		}
		if len(events) == 0 {
			return lw, fmt.Errorf("history of %s (run %q) is empty", id, run)
		}
		runs = append(runs, events)
		run = events[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if run == "" {
			break
		}
	}
	slices.Reverse(runs)
	dc := payload.Converter()
	var first workflows.LoopInput
	if err := dc.FromPayloads(runs[0][0].GetWorkflowExecutionStartedEventAttributes().GetInput(), &first); err != nil {
		return lw, fmt.Errorf("%s: start input: %w", id, err)
	}
	lw.Router = first.Router
	for _, events := range runs {
		if err := lw.add(events); err != nil {
			return lw, fmt.Errorf("%s: %w", id, err)
		}
	}
	slices.SortFunc(lw.Signals, time.Time.Compare)
	return lw, nil
}

// add reads the wakes, wake signals and stop of one run's history.
//
// A wake's time is the loop's workflow.Now as it woke: the start of its
// workflow task, or, when the task ran more than one wake, the time at
// which the previous wake's forecast ended (the SDK moves workflow.Now to
// the end of each local activity, recorded in its marker as ReplayTime). A
// long task does so when forecasts fail slowly (ClickHouse cut): the loop
// retries at the next bin on a timer of zero, in the same task, and the
// task's markers are all recorded when it completes. A forecast still
// running when the SDK completed a long task (at 80% of its timeout) is
// dated at the next task's start: later than it began, never earlier, so
// the count errs towards lost wakes.
func (lw *loopWakes) add(events []*historypb.HistoryEvent) error {
	dc := payload.Converter()
	var now time.Time
	for _, e := range events {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			now = later(now, e.GetEventTime().AsTime())
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			m := e.GetMarkerRecordedEventAttributes()
			if m.GetMarkerName() != "LocalActivity" {
				continue
			}
			var data struct {
				ActivityType string
				ReplayTime   time.Time
			}
			if err := dc.FromPayloads(m.GetDetails()["data"], &data); err != nil {
				return fmt.Errorf("local activity marker at event %d: %w", e.GetEventId(), err)
			}
			if data.ActivityType == workflows.ActivityForecast {
				w := loopWake{At: now}
				if m.GetFailure() == nil {
					var res wire.ForecastResult
					if err := dc.FromPayloads(m.GetDetails()["result"], &res); err != nil {
						return fmt.Errorf("forecast result at event %d: %w", e.GetEventId(), err)
					}
					w.Holds = res.Action.Holds()
				}
				lw.Wakes = append(lw.Wakes, w)
			}
			now = later(now, data.ReplayTime)
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			s := e.GetWorkflowExecutionSignaledEventAttributes()
			switch s.GetSignalName() {
			case workflows.SignalWake:
				var sig workflows.WakeSignal
				if dc.FromPayloads(s.GetInput(), &sig) == nil && !sig.Bin.IsZero() {
					lw.Signals = append(lw.Signals, sig.Bin)
				}
			case workflows.SignalStop:
				if lw.End.IsZero() {
					lw.End = e.GetEventTime().AsTime()
				}
			}
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// busyBinsOf lists the starts of the bins in which app saw requests.
func busyBinsOf(b store.BusyBins) []time.Time {
	out := make([]time.Time, 0, len(b.Starts))
	for k, s := range b.Starts {
		if b.Counts[k] > 0 {
			out = append(out, time.Unix(s, 0).UTC())
		}
	}
	return out
}

// lostWakes judges the wakes of every loop (read once the loops stopped)
// against the arrivals in busy, the bins in spooled written late by a
// restarted gateway: it returns the cold arrivals, how many of them were
// late, and the wakes lost, each logged.
func lostWakes(ctx context.Context, tc client.Client, loops []string, busy map[string]store.BusyBins, spooled map[time.Time]time.Time) (int, int, []lostWake, error) {
	cold, late := 0, 0
	var lost []lostWake
	for _, app := range loops {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		lw, err := readLoopWakes(rctx, tc, app)
		cancel()
		if err != nil {
			return cold, late, lost, err
		}
		if !lw.Router {
			return cold, late, lost, fmt.Errorf("loop of %s: not started in router mode: its wakes cannot be judged by the arrivals", app)
		}
		c, n, l, err := judgeWakes(lw, busyBinsOf(busy[app]), spooled, bin)
		if err != nil {
			return cold, late, lost, err
		}
		for _, w := range l {
			logf("wake lost: %s", w)
		}
		cold, late = cold+c, late+n
		lost = append(lost, l...)
	}
	logf("cold arrivals (a loop holding nothing): %d (%d of them written late by a restarted gateway), of which %d slept through by their loop", cold, late, len(lost))
	return cold, late, lost, nil
}
