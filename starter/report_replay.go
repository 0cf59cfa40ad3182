package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/forewarm/forewarm/internal/stats"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/models/demand"
	"github.com/forewarm/forewarm/policy"
	"github.com/forewarm/forewarm/report"
	"github.com/forewarm/forewarm/sim"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

// replayReport is the JSON of `starter report --replay`.
type replayReport struct {
	Window struct {
		TraceFrom time.Time `json:"trace_from"`
		TraceTo   time.Time `json:"trace_to"`
		LiveFrom  time.Time `json:"live_from"`
		LiveTo    time.Time `json:"live_to"`
		Bins      int       `json:"bins"`
		Apps      int       `json:"apps"`
	} `json:"window"`
	Live      report.Comparable `json:"live"`
	Simulated report.Comparable `json:"simulated"`
	// SimulatedAllCold is the simulation under the strict rule (every
	// request of a bin with no instance cold): the live rate falls between.
	SimulatedAllCold report.Comparable `json:"simulated_all_in_bin_cold"`
	// Apps are each application's figures, live and simulated.
	Apps       []appComparison `json:"apps"`
	Policy     policy.Config   `json:"policy"`
	PolicyFrom string          `json:"policy_from"`
	Model      string          `json:"model"`
	Plot       string          `json:"plot,omitempty"`
	// LatencyMS is the real latency of requests served through the
	// gateway, by warm and cold (cold: the request waited for an instance
	// to start, its own or one under way), from the gateway's records.
	LatencyMS map[string]latencySummary `json:"latency_ms,omitempty"`
}

// latencySummary is a latency distribution in milliseconds.
type latencySummary struct {
	Count  int     `json:"count"`
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
}

func runReplayReport(ctx context.Context, w io.Writer, g *globals, file, plotFile, plotApp string, asJSON bool) error {
	var sum replaySummary
	raw, err := os.ReadFile(file)
	if err != nil {
		return usageErr("--replay: %v", err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		return usageErr("--replay %s: not a replay summary: %v", file, err)
	}
	if sum.Bins <= 0 || sum.TraceBinSeconds <= 0 || sum.LiveBinSeconds <= 0 || sum.StartedAt.IsZero() || len(sum.Apps) == 0 {
		return usageErr("--replay %s: the summary names no window (bins %d, trace bin %gs, live bin %gs, started %v, %d apps)",
			file, sum.Bins, sum.TraceBinSeconds, sum.LiveBinSeconds, sum.StartedAt, len(sum.Apps))
	}
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	grid := report.Grid{TraceStart: sum.TraceFrom, TraceBin: sec(sum.TraceBinSeconds), LiveStart: sum.StartedAt,
		LiveBin: sec(sum.LiveBinSeconds), Bins: sum.Bins}
	liveTo := grid.LiveTime(grid.Bins)

	st, err := store.Open(ctx, g.ClickHouse)
	if err != nil {
		return err
	}
	defer st.Close()
	served, latency, err := servedInWindow(ctx, st, sum.Gateway != "", grid.LiveStart, liveTo)
	if err != nil {
		return err
	}
	events, err := st.PreparationEvents(ctx, grid.LiveStart.Add(-time.Hour), liveTo.Add(time.Hour))
	if err != nil {
		return err
	}
	// Leases of this run: begun from a bin before its warm-up on (a
	// preparation made ahead of the first bin); older ones belong to
	// earlier runs. One held from the warm-up into the window is counted
	// for the part inside it.
	var held []report.Held
	for _, h := range heldLeases(events, time.Now().UTC()) {
		if !h.From.Before(grid.LiveTime(-1 - sum.WarmupBins)) {
			held = append(held, h)
		}
	}
	var out replayReport
	out.Window.TraceFrom, out.Window.TraceTo = grid.TraceStart, grid.TraceStart.Add(time.Duration(grid.Bins)*grid.TraceBin)
	out.Window.LiveFrom, out.Window.LiveTo, out.Window.Bins, out.Window.Apps = grid.LiveStart, liveTo, grid.Bins, len(sum.Apps)
	live, series := report.Live(grid, sum.Apps, served, held, int(sum.Dropped))
	out.Live, out.LatencyMS = live, latency

	// The loops' policy, from the first loop that answers.
	out.Policy, out.PolicyFrom = policy.Default(), "the default (no loop answered)"
	if c, err := g.Temporal.Dial(nil); err == nil {
		defer c.Close()
		for _, a := range sum.Apps {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.QueryWorkflow(qctx, workflows.LoopWorkflowID(a), "", workflows.QueryState, workflows.StateQuery{})
			cancel()
			var stt workflows.LoopStatus
			if err == nil && v.Get(&stt) == nil && stt.Policy.ReferenceMB > 0 {
				out.Policy, out.PolicyFrom = stt.Policy.Config(), "the loop of "+a
				break
			}
		}
	}

	simulated, allCold, model, simApps, err := simulateWindow(ctx, g, st, grid, sum, out.Policy)
	if err != nil {
		return fmt.Errorf("simulate the replayed window: %w", err)
	}
	for _, a := range series.Apps {
		out.Apps = append(out.Apps, appComparison{App: a.App, Live: a, Simulated: simApps[a.App]})
	}
	out.Simulated, out.SimulatedAllCold, out.Model = simulated, allCold, model
	if ref := simulated.WastePct; ref != nil && simulated.WastedMBs > 0 {
		// Live waste against the same reference: the simulated keep-alive's.
		refMBs := simulated.WastedMBs / (*ref / 100)
		pct := 100 * live.WastedMBs / refMBs
		out.Live.WastePct = &pct
	}

	if plotFile != "" {
		app := plotApp
		preds, err := st.Predictions(ctx, grid.LiveStart.Add(-time.Minute), liveTo.Add(time.Minute))
		if err != nil {
			return err
		}
		if app == "" {
			app = mostLeases(sum.Apps, held)
		}
		view := report.AppView{App: app}
		for _, p := range preds {
			if p.App == app {
				// Predictions are dated on the model's (trace) clock.
				k := int(p.Bin.Sub(grid.TraceStart) / grid.TraceBin)
				view.Decisions = append(view.Decisions, report.Decision{Bin: k, P: p.Probability, Threshold: p.Threshold})
			}
		}
		for _, h := range held {
			if h.App == app {
				view.Held = append(view.Held, h)
			}
		}
		f, err := os.Create(plotFile)
		if err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		title := fmt.Sprintf("Forewarm live replay: %d apps, trace %s – %s", len(sum.Apps), out.Window.TraceFrom.Format("15:04"), out.Window.TraceTo.Format("15:04"))
		if err := report.WritePlot(f, grid, series, view, title); err != nil {
			f.Close()
			return fmt.Errorf("--plot: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		out.Plot = plotFile
	}

	if asJSON {
		return emitJSON(w, out)
	}
	fmt.Fprintf(w, "Forewarm live replay against the simulator: %d applications, trace %s to %s (%d bins of %v), live %s to %s\n",
		len(sum.Apps), out.Window.TraceFrom.Format(time.RFC3339), out.Window.TraceTo.Format(time.RFC3339), grid.Bins, grid.TraceBin,
		grid.LiveStart.Format(time.TimeOnly), liveTo.Format(time.TimeOnly))
	fmt.Fprintf(w, "policy %s: threshold %g for %g MB, prepare %gs; model %s\n\n", out.PolicyFrom, out.Policy.Threshold, out.Policy.ReferenceMB, out.Policy.PrepareSeconds, out.Model)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	pct := func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }
	wp := func(v *float64) string {
		if v == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.0f%%", *v)
	}
	fmt.Fprintln(tw, "\tlive\tsimulated\tsimulated, every request of a cold bin cold")
	fmt.Fprintf(tw, "requests\t%d (%d dropped)\t%d\t%d\n", live.Requests, live.Dropped, simulated.Requests, allCold.Requests)
	fmt.Fprintf(tw, "warm share\t%s\t%s\t%s\n", pct(live.WarmShare), pct(simulated.WarmShare), pct(allCold.WarmShare))
	fmt.Fprintf(tw, "cold-start rate, p75 of apps\t%s\t%s\t%s\n", pct(live.ColdP75), pct(simulated.ColdP75), pct(allCold.ColdP75))
	fmt.Fprintf(tw, "cold-start rate, overall\t%s\t%s\t%s\n", pct(live.ColdOverall), pct(simulated.ColdOverall), pct(allCold.ColdOverall))
	fmt.Fprintf(tw, "wasted memory-time (trace clock)\t%.0f MB·s (%s)\t%.0f MB·s (%s)\t\n", live.WastedMBs, wp(out.Live.WastePct), simulated.WastedMBs, wp(simulated.WastePct))
	tw.Flush()
	fmt.Fprintln(w, "\n(waste in % of the simulated 10-minute keep-alive on the same apps and window)")
	if len(out.LatencyMS) > 0 {
		fmt.Fprintln(w, "\nreal latency through the gateway, ms (requests, median, p95):")
		for _, k := range []string{"warm", "cold"} {
			l := out.LatencyMS[k]
			fmt.Fprintf(w, "  %-5s %6d  %8.1f  %8.1f\n", k, l.Count, l.Median, l.P95)
		}
	}
	fmt.Fprintln(w, "\nper application: requests, cold live / simulated, wasted MB·s live / simulated")
	for _, a := range out.Apps {
		fmt.Fprintf(w, "  %-20.20s %5d  %4d / %-4d  %12.0f / %-12.0f\n", a.App, a.Live.Requests, a.Live.Cold, a.Simulated.Cold, a.Live.WastedMBs, a.Simulated.WastedMBs)
	}
	if out.Plot != "" {
		fmt.Fprintf(w, "plot: %s\n", out.Plot)
	}
	return nil
}

// appComparison is one application live and in the simulator.
type appComparison struct {
	App       string            `json:"app"`
	Live      report.AppFigures `json:"live"`
	Simulated report.AppFigures `json:"simulated"`
}

// heldLeases folds preparation events into the intervals each lease was
// held: from its reservation (or the instance kept after a cold request)
// to its release, expiry or failure; still live leases end now.
func heldLeases(events []store.PreparationEvent, now time.Time) []report.Held {
	type life struct {
		h            report.Held
		begun, ended bool
	}
	byID := map[string]*life{}
	var order []string
	for _, e := range events {
		l := byID[e.PreparationID]
		if l == nil {
			l = &life{h: report.Held{ID: e.PreparationID, App: e.App}}
			byID[e.PreparationID] = l
			order = append(order, e.PreparationID)
		}
		if e.MemoryMB > 0 {
			l.h.MemoryMB = e.MemoryMB
		}
		switch e.Event {
		case records.EventReserved, records.EventKept:
			if !l.begun {
				l.h.From, l.begun = e.Time, true
			}
		case records.EventReleased, records.EventExpired, records.EventFailed, records.EventClaimed:
			if !l.ended {
				l.h.To, l.ended = e.Time, true
				if !l.begun && e.HeldSeconds > 0 {
					l.h.From, l.begun = e.Time.Add(-time.Duration(e.HeldSeconds*float64(time.Second))), true
				}
			}
		}
	}
	var out []report.Held
	for _, id := range order {
		l := byID[id]
		if !l.begun {
			continue
		}
		if !l.ended {
			l.h.To = now
		}
		out = append(out, l.h)
	}
	return out
}

// simulateWindow runs the simulator on the stored history of the replayed
// applications over the replayed window, with the champion demand model and
// the given policy: the figures the live run should have come close to.
func simulateWindow(ctx context.Context, g *globals, st *store.Store, grid report.Grid, sum replaySummary, cfg policy.Config) (simFirst, simAll report.Comparable, model string, apps map[string]report.AppFigures, err error) {
	champ, err := st.Champion(ctx, models.KindDemand)
	if errors.Is(err, store.ErrNoModel) {
		return simFirst, simAll, "", nil, errors.New("no champion demand model to simulate with (`starter train --wait`)")
	}
	if err != nil {
		return simFirst, simAll, "", nil, err
	}
	if err := models.InitORT(g.ONNX.Lib); err != nil {
		return simFirst, simAll, "", nil, err
	}
	d, err := demand.Load(champ.ONNX, champ.Meta, true)
	if err != nil {
		return simFirst, simAll, "", nil, err
	}
	if d.Spec().Bin() != grid.TraceBin {
		return simFirst, simAll, "", nil, fmt.Errorf("the champion %s works on %v bins, the replayed trace on %v", d.Version(), d.Spec().Bin(), grid.TraceBin)
	}
	history := d.Spec().HistoryBins()
	from := grid.TraceStart.Add(-time.Duration(history) * grid.TraceBin)
	to := grid.TraceStart.Add(time.Duration(grid.Bins) * grid.TraceBin)
	full, err := st.Trace(ctx, from, to, grid.TraceBin)
	if err != nil {
		return simFirst, simAll, "", nil, fmt.Errorf("read the stored history: %w", err)
	}
	tr := &trace.Trace{Start: full.Start, Bin: full.Bin, Bins: full.Bins}
	for _, a := range full.Apps {
		if slices.Contains(sum.Apps, a.ID) {
			if sum.MaxPerBin > 0 {
				for i, c := range a.Counts {
					a.Counts[i] = min(c, uint32(sum.MaxPerBin))
				}
			}
			tr.Apps = append(tr.Apps, a)
		}
	}
	if len(tr.Apps) == 0 {
		return simFirst, simAll, "", nil, fmt.Errorf("none of the %d replayed applications has stored history in %s – %s", len(sum.Apps), from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	r := sim.Range{From: history, To: history + grid.Bins}
	opt := sim.Options{Range: r, PrepareSeconds: cfg.PrepareSeconds}
	ref, err := sim.Run(tr, sim.NewKeepAlive(sim.ReferenceKeepAlive), opt)
	if err != nil {
		return simFirst, simAll, "", nil, err
	}
	res, err := sim.Run(tr, sim.NewOurs(sim.NewForecastCache(&sim.DemandForecaster{Model: d, Workers: 2}), cfg), opt)
	if err != nil {
		return simFirst, simAll, "", nil, err
	}
	refWaste := sim.Summarize(ref, sim.ColdFirst).WastedMBSec
	comparable := func(rule sim.ColdRule) report.Comparable {
		s := sim.Summarize(res, rule)
		s.Normalize(refWaste)
		c := report.Comparable{Requests: int(s.Requests), WarmShare: 1 - s.ColdOverall, ColdP75: s.ColdP75, ColdOverall: s.ColdOverall, WastedMBs: s.WastedMBSec}
		if refWaste > 0 {
			v := s.WastePct
			c.WastePct = &v
		}
		return c
	}
	apps = map[string]report.AppFigures{}
	for _, a := range res.Apps {
		apps[a.ID] = report.AppFigures{App: a.ID, Requests: int(a.Requests), Cold: int(a.ColdFirst), WastedMBs: a.WastedMBSec}
	}
	return comparable(sim.ColdFirst), comparable(sim.ColdAll), d.Version(), apps, nil
}

// mostLeases is the application that held the most leases in turn: the
// one whose picture shows the policy at work.
func mostLeases(apps []string, held []report.Held) string {
	n := map[string]int{}
	for _, h := range held {
		n[h.App]++
	}
	best := apps[0]
	for _, a := range apps {
		if n[a] > n[best] {
			best = a
		}
	}
	return best
}

// servedInWindow reads the requests served live in [from, to): from the
// gateway's records when the replay went through it (with their real
// latency, warm against cold), else from the serve-request workflows'.
func servedInWindow(ctx context.Context, st *store.Store, viaGateway bool, from, to time.Time) ([]report.Served, map[string]latencySummary, error) {
	if !viaGateway {
		reqs, err := st.Requests(ctx, from, to)
		if err != nil {
			return nil, nil, err
		}
		served := make([]report.Served, 0, len(reqs))
		for _, r := range reqs {
			served = append(served, report.Served{App: r.App, At: r.Time, Warm: r.Warm})
		}
		return served, nil, nil
	}
	reqs, err := st.GatewayRequests(ctx, from, to)
	if err != nil {
		return nil, nil, err
	}
	served := make([]report.Served, 0, len(reqs))
	lat := map[string][]float64{}
	for _, r := range reqs {
		warm := r.Outcome == records.GatewayWarm
		served = append(served, report.Served{App: r.App, At: r.Time, Warm: warm})
		switch {
		case warm:
			lat["warm"] = append(lat["warm"], r.TotalMS)
		case r.Outcome != records.GatewayFailed:
			lat["cold"] = append(lat["cold"], r.TotalMS)
		}
	}
	out := map[string]latencySummary{}
	for _, k := range []string{"warm", "cold"} {
		out[k] = latencySummary{Count: len(lat[k]), Median: stats.Percentile(lat[k], 0.5), P95: stats.Percentile(lat[k], 0.95)}
	}
	return served, out, nil
}
