package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/trace"
)

func init() { addCommand(newHistoryCmd) }

func newHistoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Load, generate and summarise the request history in ClickHouse",
		Long: `The history is per-application request counts per bin, with each
application's size and access pattern: what the models train on and the
prediction loops start from. Load real traces, generate synthetic ones, and
check what is stored.`,
	}
	cmd.AddCommand(newHistoryLoadCmd(g), newHistorySynthCmd(g), newHistoryStatsCmd(g))
	return cmd
}

// startFlag is --start: RFC 3339, Unix seconds, or "recent" (the trace is
// shifted to end at the current bin, so live loops find it as their past).
type startFlag struct {
	raw    string
	at     time.Time
	recent bool
}

func (s *startFlag) parse() error {
	v := strings.TrimSpace(s.raw)
	switch {
	case v == "":
		return nil
	case v == "recent":
		s.recent = true
		return nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		s.at = t.UTC()
		return nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		s.at = time.Unix(n, 0).UTC()
		return nil
	}
	return usageErr("--start %q: expected RFC 3339 (2019-07-15T00:00:00Z), Unix seconds or \"recent\"", s.raw)
}

// shiftRecent moves a trace so its last bin ends at the current bin boundary.
func shiftRecent(tr *trace.Trace, now time.Time) {
	end := now.UTC().Truncate(tr.Bin)
	tr.Start = end.Add(-time.Duration(tr.Bins) * tr.Bin)
}

func checkBin(bin time.Duration) error {
	if bin < time.Second || bin%time.Second != 0 {
		return usageErr("--bin %v: use whole seconds, 1s or more (e.g. 1m, 10s)", bin)
	}
	return nil
}

func newHistoryLoadCmd(g *globals) *cobra.Command {
	var (
		format, file, memory, durations string
		start                           startFlag
		bin                             time.Duration
		asJSON, dryRun                  bool
	)
	cmd := &cobra.Command{
		Use:   "load --format azure2019|events --file PATH [--memory PATH] [--durations PATH] [--start TIME] [--bin DUR] [--dry-run]",
		Short: "Load a trace file into the history",
		Long: `Read a trace file, validate all of it, and store its activity and
application profiles. A bad file is refused with its file, line and column,
and nothing of it is stored. Loading the same content again changes nothing
(the load is identified by a hash of what it stores).

Formats:
  azure2019  Azure Functions 2019 invocations per function per minute, either
             header style (HashOwner,HashApp,HashFunction,Trigger,1..1440 or
             HashFunction,HashOwner,HashApp,minute_1..minute_1440); --memory
             (HashApp, AverageAllocatedMb) and --durations (HashFunction,
             Average ms) add each application's size and work. Application
             ID: HashFunction. Each trace minute becomes one --bin.
  events     CSV timestamp,app_id[,memory_mb,read_ratio,duration_ms] with a
             header; timestamps RFC 3339 or Unix seconds, any order.`,
		Example: `  starter history load --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --durations testdata/azure2019-sample/1350_run.csv
  starter history load --format azure2019 --file testdata/azure2019-sample/1350_inv.csv --bin 1s --start recent
  starter history load --format events --file requests.csv --bin 1m --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format == "" {
				return usageErr("--format is required: %s", strings.Join(trace.Formats, " or "))
			}
			if !slices.Contains(trace.Formats, format) {
				return usageErr("--format %q: expected %s", format, strings.Join(trace.Formats, " or "))
			}
			if file == "" {
				return usageErr("--file is required: the trace file to load")
			}
			if format != trace.FormatAzure2019 && (memory != "" || durations != "") {
				return usageErr("--memory and --durations apply to --format azure2019 only (events carry them per row)")
			}
			if err := start.parse(); err != nil {
				return err
			}
			if start.recent && format == trace.FormatEvents {
				return usageErr("--start recent applies to azure2019 (events carry their own timestamps)")
			}
			if bin == 0 {
				bin = time.Minute
			}
			if err := checkBin(bin); err != nil {
				return err
			}
			tr, err := trace.Read(format, file, trace.ReadOptions{MemoryPath: memory, DurationsPath: durations, Start: start.at, Bin: bin})
			if err != nil {
				return err
			}
			if start.recent {
				shiftRecent(tr, time.Now())
			}
			if dryRun {
				return describeTrace(cmd.OutOrStdout(), tr, file, asJSON)
			}
			return storeTrace(cmd.Context(), cmd.OutOrStdout(), g, tr, store.LoadOptions{Format: format, Source: file}, asJSON)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&format, "format", "", "trace format: azure2019 or events (required)")
	fs.StringVar(&file, "file", "", "trace file (required)")
	fs.StringVar(&memory, "memory", "", "azure2019: memory file, per HashApp")
	fs.StringVar(&durations, "durations", "", "azure2019: durations file, per HashFunction")
	fs.StringVar(&start.raw, "start", "", `start of the first bin: RFC 3339, Unix seconds, or "recent" to end the trace now (default: azure2019 2019-07-15T00:00:00Z, events the first event)`)
	fs.DurationVar(&bin, "bin", time.Minute, "bin width (azure2019: the width each trace minute maps onto)")
	fs.BoolVar(&asJSON, "json", false, "print the load result as JSON")
	fs.BoolVar(&dryRun, "dry-run", false, "validate the file and print what it holds, without storing anything")
	return cmd
}

// describeTrace reports what a validated file holds (--dry-run).
func describeTrace(w io.Writer, tr *trace.Trace, source string, asJSON bool) error {
	last := tr.BinStart(max(0, tr.Bins-1))
	if asJSON {
		return emitJSON(w, struct {
			Source     string    `json:"source"`
			Apps       int       `json:"apps"`
			Bins       int       `json:"bins"`
			BinSeconds float64   `json:"bin_seconds"`
			Requests   uint64    `json:"requests"`
			First      time.Time `json:"first"`
			Last       time.Time `json:"last"`
		}{source, len(tr.Apps), tr.Bins, tr.Bin.Seconds(), tr.Total(), tr.Start, last})
	}
	fmt.Fprintf(w, "%s: valid; %s requests of %s apps over %s bins of %v, %s – %s (nothing stored: --dry-run)\n",
		source, thousands(tr.Total()), thousands(uint64(len(tr.Apps))), thousands(uint64(tr.Bins)), tr.Bin,
		tr.Start.Format(time.RFC3339), last.Format(time.RFC3339))
	return nil
}

func newHistorySynthCmd(g *globals) *cobra.Command {
	var (
		opt    trace.SynthOptions
		start  startFlag
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "synth --apps N --days D [--bin DUR] [--seed S] [--start TIME|recent]",
		Short: "Generate a deterministic synthetic workload and load it",
		Long: `Generate per-application activity with the shapes real fleets show:
fixed-period timers, business-hours (diurnal) apps, bursty sessions, rare
apps and a few heavy hitters, each with its own size, read ratio and work.
The same options and seed give the same workload; the kind of each app is
the suffix of its ID (app-00007-heavy).`,
		Example: `  starter history synth --apps 500 --days 7
  starter history synth --apps 36 --days 1 --bin 1s --start recent --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opt.Apps < 1 || opt.Apps > 1_000_000 {
				return usageErr("--apps %d: must be between 1 and 1,000,000", opt.Apps)
			}
			if opt.Days < 1 || opt.Days > 3660 {
				return usageErr("--days %d: must be between 1 and 3660", opt.Days)
			}
			if err := checkBin(opt.Bin); err != nil {
				return err
			}
			if cells := int64(opt.Apps) * int64(opt.Days) * int64(24*time.Hour/opt.Bin); cells > trace.MaxCells {
				return usageErr("--apps %d × --days %d at --bin %v is %d cells, more than %d: use fewer apps or days, or a wider bin", opt.Apps, opt.Days, opt.Bin, cells, trace.MaxCells)
			}
			if err := start.parse(); err != nil {
				return err
			}
			opt.Start = start.at
			tr := trace.Synth(opt)
			if start.recent {
				shiftRecent(tr, time.Now())
			}
			src := fmt.Sprintf("synth apps=%d days=%d bin=%v seed=%d", opt.Apps, opt.Days, opt.Bin, opt.Seed)
			return storeTrace(cmd.Context(), cmd.OutOrStdout(), g, tr, store.LoadOptions{Format: "synth", Source: src}, asJSON)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&opt.Apps, "apps", 100, "number of applications")
	fs.IntVar(&opt.Days, "days", 1, "days of workload")
	fs.DurationVar(&opt.Bin, "bin", time.Minute, "bin width")
	fs.Int64Var(&opt.Seed, "seed", 1, "workload seed")
	fs.StringVar(&start.raw, "start", "", `start of the first bin: RFC 3339, Unix seconds, or "recent" to end the workload now (default 2024-01-01T00:00:00Z, a Monday)`)
	fs.BoolVar(&asJSON, "json", false, "print the load result as JSON")
	return cmd
}

// storeTrace loads a trace, showing progress on a terminal, and reports.
func storeTrace(ctx context.Context, out io.Writer, g *globals, tr *trace.Trace, opt store.LoadOptions, asJSON bool) error {
	st, err := store.Open(ctx, g.ClickHouse)
	if err != nil {
		return err
	}
	defer st.Close()
	var bar *progressbar.ProgressBar
	if term.IsTerminal(int(os.Stderr.Fd())) && !asJSON {
		opt.Progress = func(p store.LoadProgress) {
			if bar == nil {
				bar = progressbar.NewOptions64(p.TotalRows,
					progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("loading"),
					progressbar.OptionShowCount(),
					progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("rows"),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
			bar.Set64(p.Rows)
		}
	}
	res, err := st.LoadTrace(ctx, tr, opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("load of %s interrupted: nothing of it is visible; run the same command again", opt.Source)
		}
		return fmt.Errorf("load %s: %w", opt.Source, err)
	}
	if asJSON {
		return emitJSON(out, struct {
			store.LoadResult
			Format   string  `json:"format"`
			Source   string  `json:"source"`
			Seconds  float64 `json:"seconds"`
			Database string  `json:"database"`
		}{res, opt.Format, opt.Source, res.Elapsed.Seconds(), st.Database()})
	}
	printLoad(out, res, opt.Source)
	return nil
}

func printLoad(w io.Writer, res store.LoadResult, source string) {
	switch {
	case res.InProgress:
		fmt.Fprintf(w, "%s: the same content is being loaded right now (load %s): nothing written\n", source, res.LoadID)
	case res.Duplicate:
		fmt.Fprintf(w, "%s: already loaded (load %s): nothing changed\n", source, res.LoadID)
	default:
		rate := float64(res.Rows) / max(res.Elapsed.Seconds(), 1e-9)
		fmt.Fprintf(w, "%s: loaded %s requests of %s apps over %s bins, %s – %s (load %s)\n%s rows in %.2f s (%s rows/s)\n",
			source, thousands(res.Requests), thousands(uint64(res.Apps)), thousands(uint64(res.Bins)),
			res.First.Format(time.RFC3339), res.Last.Format(time.RFC3339), res.LoadID,
			thousands(uint64(res.Rows)), res.Elapsed.Seconds(), thousands(uint64(rate)))
	}
}

func newHistoryStatsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats [--json]",
		Short: "Summarise the stored history: applications, bins, requests, time range, loads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			st, err := store.Open(ctx, g.ClickHouse)
			if err != nil {
				return err
			}
			defer st.Close()
			stats, err := st.Stats(ctx)
			if err != nil {
				return err
			}
			loads, err := st.Loads(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if loads == nil {
					loads = []store.Load{}
				}
				return emitJSON(out, struct {
					Database string `json:"database"`
					store.Stats
					LoadList []store.Load `json:"load_list"`
				}{st.Database(), stats, loads})
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "database\t%s (ClickHouse %s at %s)\n", st.Database(), st.Server().Version, g.ClickHouse.Addr)
			fmt.Fprintf(w, "applications\t%s\n", thousands(stats.Apps))
			fmt.Fprintf(w, "bins\t%s\n", thousands(stats.Bins))
			fmt.Fprintf(w, "requests\t%s\n", thousands(stats.Requests))
			if stats.Requests > 0 {
				fmt.Fprintf(w, "time range\t%s – %s (start of the last bin)\n", stats.First.Format(time.RFC3339), stats.Last.Format(time.RFC3339))
			} else {
				fmt.Fprintf(w, "time range\t(empty: try `starter history load` or `starter history synth`)\n")
			}
			fmt.Fprintf(w, "trace loads\t%s\n", thousands(stats.Loads))
			fmt.Fprintf(w, "live requests\t%s\n", thousands(stats.LiveRequests))
			w.Flush()
			if len(loads) > 0 {
				fmt.Fprintln(out)
				w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "LOAD\tFORMAT\tAPPS\tBINS\tBIN\tREQUESTS\tFIRST BIN\tSOURCE")
				for _, l := range loads {
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%v\t%s\t%s\t%s\n", l.ID, l.Format, l.Apps, l.Bins, l.Bin, thousands(l.Requests), l.First.Format(time.RFC3339), l.Source)
				}
				w.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures as JSON")
	return cmd
}

// thousands formats n with comma separators.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
