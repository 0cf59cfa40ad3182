package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/report"
	"github.com/forewarm/forewarm/store"
)

func init() { addCommand(reportCmd) }

func reportCmd(g *globals) *cobra.Command {
	var (
		since, until string
		asJSON       bool
		replayFile   string
		plotFile     string
		plotApp      string
		bin          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Figures of a live run, read from ClickHouse: warm share, cold starts, waste, latency",
		Long: `Report reads the requests and preparation events ClickHouse recorded in a time
range and prints what an operator judges preparation by: the warm share, the
75th-percentile application cold-start rate, reserved and wasted memory-time
(a lease's memory in a --bin in which its application served no request),
latency warm against cold, the champion demand model and its metrics, and
what the same requests would have cost with no preparation (every request
cold, at the cold latencies measured in the run).

With --replay (the summary a replay wrote with --summary) the report judges
exactly the replayed window, bin by bin on the trace's grid, and runs the
simulator on the stored history of the same applications and window with the
champion model and the loops' policy: live and simulated figures side by
side (in JSON "live" and "simulated", same keys). --plot draws the window:
requests warm and cold, memory held used and idle, and one application's
probability against its threshold with its leases.`,
		Example: `  starter report --since 2026-11-27T10:00:00Z
  starter report --since 15m --json
  starter report --replay .state/replay.json --plot .state/replay.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			from, err := parseSince(since, now)
			if err != nil {
				return usageErr("--since: %v", err)
			}
			to := now
			if until != "" {
				if to, err = parseSince(until, now); err != nil {
					return usageErr("--until: %v", err)
				}
			}
			if !from.Before(to) {
				return usageErr("--since %s is not before --until %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
			}
			if replayFile != "" {
				return runReplayReport(cmd.Context(), cmd.OutOrStdout(), g, replayFile, plotFile, plotApp, asJSON)
			}
			if plotFile != "" {
				return usageErr("--plot draws a replayed window: give --replay")
			}
			if bin <= 0 {
				return usageErr("--bin %v: must be positive", bin)
			}
			return runReport(cmd.Context(), cmd.OutOrStdout(), g, from, to, bin, asJSON)
		},
	}
	cmd.Flags().StringVar(&since, "since", "1h", "start of the range: an RFC 3339 time or a duration back from now")
	cmd.Flags().StringVar(&until, "until", "", "end of the range (default now)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures as JSON")
	cmd.Flags().DurationVar(&bin, "bin", time.Minute, "the bin waste is judged on: a lease's memory in a bin in which its application served no request is wasted (the loops' bin)")
	cmd.Flags().StringVar(&replayFile, "replay", "", "judge the window of this replay summary (`starter replay --summary`) against the simulator")
	cmd.Flags().StringVar(&plotFile, "plot", "", "with --replay: draw the window into this PNG file")
	cmd.Flags().StringVar(&plotApp, "plot-app", "", "with --plot: the application whose probability and leases are drawn (default: the one with most decisions)")
	return cmd
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %s is negative", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 15m", s)
	}
	return t, nil
}

type reportOutput struct {
	From    time.Time          `json:"from"`
	To      time.Time          `json:"to"`
	Figures report.Figures     `json:"figures"`
	Model   *store.ModelRecord `json:"model,omitempty"`
}

func runReport(ctx context.Context, w io.Writer, g *globals, from, to time.Time, bin time.Duration, asJSON bool) error {
	st, err := store.Open(ctx, g.ClickHouse)
	if err != nil {
		return err
	}
	defer st.Close()
	reqs, err := st.Requests(ctx, from, to)
	if err != nil {
		return err
	}
	// A lease reserved inside the range may end after it: read events a
	// little past the end so its outcome is known.
	events, err := st.PreparationEvents(ctx, from, to.Add(time.Hour))
	if err != nil {
		return err
	}
	out := reportOutput{From: from, To: to, Figures: report.Compute(reportRequests(reqs), heldLeases(events, to), report.Window{From: from, To: to, Bin: bin})}
	if m, err := st.Champion(ctx, models.KindDemand); err == nil {
		out.Model = &m
	} else if !errors.Is(err, store.ErrNoModel) {
		return err
	}
	if asJSON {
		return emitJSON(w, out)
	}
	fmt.Fprintf(w, "Forewarm live run, %s to %s\n\n", from.Format(time.RFC3339), to.Format(time.RFC3339))
	out.Figures.Print(w, to.Sub(from))
	if out.Model != nil {
		fmt.Fprintf(w, "\ndemand model %s (published %s)\n", out.Model.Version, out.Model.Created.Format(time.RFC3339))
		for _, k := range slices.Sorted(maps.Keys(out.Model.Metrics)) {
			fmt.Fprintf(w, "  %-28s %.4f\n", k, out.Model.Metrics[k])
		}
	} else {
		fmt.Fprintln(w, "\nno demand model published yet: loops record predictions only once one is (`starter train --wait`)")
	}
	if out.Figures.Requests == 0 {
		fmt.Fprintln(w, "\nno requests were recorded in this range: was a replay running? (`starter replay --help`)")
	}
	return nil
}

func reportRequests(rs []store.Request) []report.Request {
	out := make([]report.Request, 0, len(rs))
	for _, r := range rs {
		out = append(out, report.Request{App: r.App, At: r.Time, Warm: r.Warm, LatencyMS: r.LatencyMS})
	}
	return out
}
