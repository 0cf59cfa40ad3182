package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/policy"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/jsonx"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
	"github.com/forewarm/forewarm/workflows/wfclient"
)

func init() { addCommand(newLoopCmd) }

func newLoopCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loop",
		Short: "Start, inspect and steer the per-application prediction loops",
		Long: `Each application has one long-running prediction loop, workflow ID
predict/<app>, on the prediction task queue. It asks the champion demand
model for the chance of a request in the coming bins and lets the policy
decide, bin by bin, whether to prepare a warm instance on the best hosts,
keep (extend) it, or release it; between decisions it sleeps until the
policy could act, or until a request arrives.

  starter loop start --app A --bin 1s --threshold 0.4
  starter loop start --all --bin 1m
  starter loop status --app A
  starter loop threshold --app A 0.3
  starter loop pause --app A; starter loop resume --app A
  starter loop stop --app A

The same threshold signal from the Temporal CLI:
  temporal workflow signal --workflow-id predict/A --name threshold --input '{"Threshold":0.3}'`,
	}
	cmd.AddCommand(newLoopStartCmd(g), newLoopStatusCmd(g), newLoopThresholdCmd(g), newLoopPolicyCmd(g),
		newLoopPauseCmd(g, true), newLoopPauseCmd(g, false), newLoopStopCmd(g))
	return cmd
}

// policyFlags are the policy flags shared by start and policy.
type policyFlags struct {
	threshold, referenceMB, prepareSeconds, sizePercentile float64
	maxShadowMS, sampleMB                                  float64
	lookahead, topN, maxSleep                              int
	dryRun, paused, ticking                                bool
	objective                                              string
	refRequests                                            float64
	keepAlive, fallback, trustGaps                         int
}

func (p *policyFlags) register(fs *pflag.FlagSet) {
	d := workflows.DefaultPolicy()
	fs.Float64Var(&p.threshold, "threshold", d.Threshold, "hold an application of --reference-mb through a bin when P(request in it) >= this; larger ones need proportionally more")
	fs.Float64Var(&p.referenceMB, "reference-mb", d.ReferenceMB, "memory of the application --threshold speaks for, MB")
	fs.Float64Var(&p.prepareSeconds, "prepare-seconds", d.PrepareSeconds, "memory-time a fresh preparation costs, seconds of the app's memory (raises the bar to prepare over the bar to keep)")
	fs.IntVar(&p.lookahead, "lookahead", d.LookaheadBins, "bins the loop forecasts ahead: the longest it sleeps and a lease is planned")
	fs.Float64Var(&p.sizePercentile, "size-percentile", d.SizePercentile, "leases are this percentile of the app's request sizes")
	fs.StringVar(&p.objective, "objective", string(d.Objective), "what a cold start is worth: per_application (every application's cold-start rate counts equally, as in the p75) or per_request (start only)")
	fs.Float64Var(&p.refRequests, "reference-requests-per-day", d.ReferenceRequestsPerDay, "per_application: the request rate of the application --threshold speaks for (start only)")
	fs.IntVar(&p.keepAlive, "keep-alive-bins", d.KeepAliveBins, "bins every application stays held after a bin with requests, whatever the forecast (start only)")
	fs.IntVar(&p.fallback, "fallback-bins", d.FallbackBins, "keep-alive, in bins, of an application whose forecast is not trusted yet (start only)")
	fs.IntVar(&p.trustGaps, "trust-gaps", d.TrustGaps, "idle stretches between requests an application's last day must hold before its forecast is used (start only)")
	fs.IntVar(&p.topN, "top-n", d.TopN, "hosts to prepare per preparation")
	fs.BoolVar(&p.dryRun, "dry-run", false, "predict and record, prepare nothing")
	fs.BoolVar(&p.paused, "paused", false, "start paused (activity counted, no predictions)")
	fs.BoolVar(&p.ticking, "ticking", false, "decide at every bin instead of sleeping until the policy could act (same decisions, more work)")
	fs.IntVar(&p.maxSleep, "max-sleep-bins", d.MaxSleepBins, "the longest the loop sleeps between decisions, in bins: a new champion model reaches it within that many")
	fs.Float64Var(&p.maxShadowMS, "max-shadow-ms", d.MaxShadowMS, "a slower shadow request fails the host")
	fs.Float64Var(&p.sampleMB, "shadow-sample-mb", d.SampleMB, "work of the shadow request, MB")
}

// startOnlyFlags are policy flags a running loop's set-policy update does
// not carry.
var startOnlyFlags = []string{"objective", "reference-requests-per-day", "keep-alive-bins", "fallback-bins", "trust-gaps"}

// change is the PolicyChange of the flags the user set.
func (p *policyFlags) change(fs *pflag.FlagSet) workflows.PolicyChange {
	var c workflows.PolicyChange
	set := func(flag string, dst any, v any) {
		if !fs.Changed(flag) {
			return
		}
		switch d := dst.(type) {
		case **float64:
			*d = v.(*float64)
		case **int:
			*d = v.(*int)
		case **bool:
			*d = v.(*bool)
		}
	}
	set("threshold", &c.Threshold, &p.threshold)
	set("reference-mb", &c.ReferenceMB, &p.referenceMB)
	set("prepare-seconds", &c.PrepareSeconds, &p.prepareSeconds)
	set("lookahead", &c.LookaheadBins, &p.lookahead)
	set("size-percentile", &c.SizePercentile, &p.sizePercentile)
	set("top-n", &c.TopN, &p.topN)
	set("dry-run", &c.DryRun, &p.dryRun)
	set("paused", &c.Paused, &p.paused)
	set("ticking", &c.Ticking, &p.ticking)
	set("max-sleep-bins", &c.MaxSleepBins, &p.maxSleep)
	set("max-shadow-ms", &c.MaxShadowMS, &p.maxShadowMS)
	set("shadow-sample-mb", &c.SampleMB, &p.sampleMB)
	return c
}

func (p *policyFlags) policy() workflows.Policy {
	return workflows.Policy{Threshold: p.threshold, ReferenceMB: p.referenceMB, PrepareSeconds: p.prepareSeconds,
		LookaheadBins: p.lookahead, SizePercentile: p.sizePercentile, TopN: p.topN,
		Paused: p.paused, DryRun: p.dryRun, Ticking: p.ticking, MaxShadowMS: p.maxShadowMS, SampleMB: p.sampleMB,
		MaxSleepBins: p.maxSleep, Objective: policy.Objective(p.objective), ReferenceRequestsPerDay: p.refRequests,
		KeepAliveBins: p.keepAlive, FallbackBins: p.fallback, TrustGaps: p.trustGaps}
}

// fitBin lowers the defaults of --max-sleep-bins and --lookahead, where
// they were not given, to what a host agent keeps a lease for at bins of
// the given width (wire.MaxLeaseBins): a held instance's lease is
// planned as far as the loop may sleep, and the default sleep of 60 bins
// is 62 h of leases at one-hour bins, refused by every host. A value
// given is kept, for ValidateFor to refuse. It returns what it lowered.
func (p *policyFlags) fitBin(fs *pflag.FlagSet, pol workflows.Policy, bin time.Duration) (workflows.Policy, []string) {
	fits := wire.MaxLeaseBins(bin)
	if fits < 1 {
		return pol, nil
	}
	var notes []string
	if !fs.Changed("max-sleep-bins") && pol.MaxSleepBins > fits {
		notes = append(notes, fmt.Sprintf("--bin %v: --max-sleep-bins is %d, not %d: a lease planned further ahead would outlive the %v a host agent accepts", bin, fits, pol.MaxSleepBins, api.MaxTTL))
		pol.MaxSleepBins = fits
	}
	if !fs.Changed("lookahead") && pol.LookaheadBins > fits {
		notes = append(notes, fmt.Sprintf("--bin %v: --lookahead is %d, not %d: a lease planned further ahead would outlive the %v a host agent accepts", bin, fits, pol.LookaheadBins, api.MaxTTL))
		pol.LookaheadBins = fits
	}
	return pol, notes
}

// leaseFlagHint names the flags of the settings a lease-length refusal
// asks to lower.
func leaseFlagHint(err error) string {
	if msg := err.Error(); strings.Contains(msg, "lower LookaheadBins") || strings.Contains(msg, "lower MaxSleepBins") {
		return " (--lookahead sets LookaheadBins, --max-sleep-bins MaxSleepBins)"
	}
	return ""
}

// checkThresholdFlag refuses a NaN or out-of-range threshold before sending.
func checkThresholdFlag(flag string, v float64) error {
	if err := workflows.ValidateThreshold(v); err != nil {
		return usageErr("%s: %v; give a probability in (0, 1]", flag, err)
	}
	return nil
}

func newLoopStartCmd(g *globals) *cobra.Command {
	var (
		pf         policyFlags
		apps       []string
		all        bool
		bin        time.Duration
		window     int
		taskQueue  string
		asJSON     bool
		seedEnd    string
		seedBin    time.Duration
		memScale   float64
		clockStart string
		router     bool
	)
	cmd := &cobra.Command{
		Use:   "start (--app A [--app B ...] | --all) [policy flags]",
		Short: "Start prediction loops (one workflow per application, predict/<app>)",
		Long: `Start one prediction loop per application. With --all every application
the store knows is started, seeded with its recent activity from ONE bulk
ClickHouse query. A loop already running is left as it is and reported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all == (len(apps) > 0) {
				return usageErr("give either --app (repeatable) or --all")
			}
			if bin <= 0 || bin%time.Second != 0 {
				return usageErr("--bin %v: must be a positive whole number of seconds (1s in demos, 1m in production)", bin)
			}
			if window < 1 || window > 1440 {
				return usageErr("--window %d: must be in [1, 1440]", window)
			}
			if err := checkThresholdFlag("--threshold", pf.threshold); err != nil {
				return err
			}
			pol, notes := pf.fitBin(cmd.Flags(), pf.policy(), bin)
			if err := pol.ValidateFor(bin); err != nil {
				return usageErr("policy flags: %v%s", err, leaseFlagHint(err))
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), n)
			}
			for _, a := range apps {
				if a == "" || strings.ContainsAny(a, "/ ") {
					return usageErr("--app %q: an application ID must be non-empty without '/' or spaces", a)
				}
			}
			ctx := cmd.Context()
			if memScale <= 0 || memScale > 1 {
				return usageErr("--memory-scale %v: must be in (0, 1]", memScale)
			}
			seed := wfclient.Seed{Apps: apps, All: all, Bin: bin, Window: window, Policy: pol, MemoryScale: memScale}
			if seedEnd != "" {
				t, err := time.Parse(time.RFC3339, seedEnd)
				if err != nil {
					return usageErr("--seed-end %q: want an RFC 3339 time such as 2019-07-15T16:00:00Z", seedEnd)
				}
				seed.End, seed.SeedBin = t, seedBin
				seed.ClockStart = time.Now().UTC().Truncate(bin).Add(bin)
				if clockStart != "" {
					if seed.ClockStart, err = time.Parse(time.RFC3339, clockStart); err != nil {
						return usageErr("--clock-start %q: want an RFC 3339 time", clockStart)
					}
					// A router's arrivals are counted in bins from the Unix
					// epoch: a loop's bins must be the same ones.
					if router && !seed.ClockStart.Equal(seed.ClockStart.Truncate(bin)) {
						return usageErr("--clock-start %s: with --router it must begin a %v bin (a multiple of %v since the Unix epoch), e.g. %s",
							clockStart, bin, bin, seed.ClockStart.Truncate(bin).Add(bin).UTC().Format(time.RFC3339))
					}
				}
				if seedBin < 0 || seedBin%time.Second != 0 {
					return usageErr("--seed-bin %v: must be a positive whole number of seconds", seedBin)
				}
			}
			var src wfclient.SeedSource
			if seed.Stored() {
				st, err := store.Open(ctx, g.ClickHouse)
				if err != nil {
					return fmt.Errorf("--all and --seed-end read the applications from ClickHouse: %w", err)
				}
				defer st.Close()
				src = st
			}
			inputs, err := wfclient.LoopInputs(ctx, src, seed, time.Now())
			if err != nil {
				flag := "--all"
				if !all {
					flag = "--seed-end"
				}
				return fmt.Errorf("%s: %w", flag, err)
			}
			for i := range inputs {
				inputs[i].Router = router
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			type started struct {
				App        string `json:"app"`
				WorkflowID string `json:"workflow_id"`
				RunID      string `json:"run_id,omitempty"`
				Status     string `json:"status"`
			}
			var out []started
			for _, in := range inputs {
				id := workflows.LoopWorkflowID(in.App)
				run, err := wfclient.StartLoop(ctx, c, taskQueue, in)
				var already *serviceerror.WorkflowExecutionAlreadyStarted
				switch {
				case errors.As(err, &already):
					out = append(out, started{App: in.App, WorkflowID: id, Status: "already running"})
				case err != nil:
					return fmt.Errorf("start loop %s: %w", id, err)
				default:
					out = append(out, started{App: in.App, WorkflowID: id, RunID: run.GetRunID(), Status: "started"})
				}
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), out)
			}
			for _, s := range out {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", s.WorkflowID, s.Status)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	pf.register(fs)
	fs.StringSliceVar(&apps, "app", nil, "application ID (repeatable, or comma-separated)")
	fs.BoolVar(&all, "all", false, "every application in the store")
	fs.DurationVar(&bin, "bin", time.Minute, "bin width: the loop decides per bin")
	fs.IntVar(&window, "window", 1440, "bins of recent activity the loop keeps: the demand model reads an application's idle times over a day of one-minute bins")
	fs.StringVar(&taskQueue, "task-queue", workflows.PredictionTaskQueue, "prediction task queue")
	fs.StringVar(&seedEnd, "seed-end", "", "seed the loops' recent activity from stored history ending at this RFC 3339 time (default: --all seeds up to now; --app loops seed themselves)")
	fs.Float64Var(&memScale, "memory-scale", 1, "scale the stored memory sizes the loops prepare, in (0, 1], with --all or --seed-end (keep in step with the memory scale of starter replay)")
	fs.StringVar(&clockStart, "clock-start", "", "with --seed-end at another --seed-bin: the RFC 3339 time the first live bin begins (default: the next bin); start a replay at the same time")
	fs.DurationVar(&seedBin, "seed-bin", 0, "bin width of the stored history read by --seed-end (default: --bin), e.g. 1m for a trace replayed at 1s bins")
	fs.BoolVar(&asJSON, "json", false, "print the started loops as JSON")
	fs.BoolVar(&router, "router", false, "the platform's router records the applications' requests in the store (per bin, in batches): the loops read them there and are woken only when a request can change a decision; needs workers started with --arrivals-bin equal to --bin")
	return cmd
}

func appFlag(fs *pflag.FlagSet, app *string) {
	fs.StringVar(app, "app", "", "application ID (required)")
}

func requireApp(app string) error {
	if app == "" {
		return usageErr("--app is required")
	}
	return nil
}

// loopCallErr turns "no such workflow" into what to do next.
func loopCallErr(app string, err error) error {
	var nf *serviceerror.NotFound
	if errors.Is(err, wfclient.ErrNoLoop) || errors.As(err, &nf) {
		return fmt.Errorf("no prediction loop runs for %s (workflow %s): start it with `starter loop start --app %s`", app, workflows.LoopWorkflowID(app), app)
	}
	return err
}

func queryLoop(ctx context.Context, c client.Client, app string) (workflows.LoopStatus, error) {
	st, err := wfclient.QueryLoop(ctx, c, app)
	if err != nil {
		return st, loopCallErr(app, err)
	}
	return st, nil
}

func newLoopStatusCmd(g *globals) *cobra.Command {
	var app string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --app A [--json]",
		Short: "Show a loop's whole state (the `state` query)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(app); err != nil {
				return err
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := queryLoop(cmd.Context(), c, app)
			if err != nil {
				return err
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	appFlag(cmd.Flags(), &app)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the state as JSON")
	return cmd
}

func printStatus(w io.Writer, st workflows.LoopStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := st.Policy
	fmt.Fprintf(tw, "loop\t%s (%s)\n", workflows.LoopWorkflowID(st.App), st.State)
	fmt.Fprintf(tw, "policy\tthreshold %.3g for %.0f MB (this app: keep at P ≥ %.3g, prepare at P ≥ %.3g; leases of %.0f MB), top-%d, lookahead %d × %v, max sleep %d bins, dry-run %v, ticking %v\n",
		p.Threshold, p.ReferenceMB, st.Thresholds.Keep, st.Thresholds.Prepare, st.LeaseSizeMB, p.TopN, p.LookaheadBins, st.Bin, p.MaxSleepBins, p.DryRun, p.Ticking)
	fmt.Fprintf(tw, "last prediction\tP = %.4f → %s (model %s)\n", st.LastProbability, st.LastDecision, orNone(st.ModelVersion))
	if !st.NextWake.IsZero() {
		fmt.Fprintf(tw, "next decision\t%s: %s (holding: %v)\n", st.NextWake.UTC().Format(time.TimeOnly), st.WakeReason, st.Holding)
	}
	fmt.Fprintf(tw, "recent activity\t%s (open bin: %g)\n", tail(st.Recent, 12), st.Pending)
	if st.Router {
		fmt.Fprintf(tw, "arrivals\trecorded by the router, read at each wake; woken early %d times\n", st.Stats.Woken)
	}
	fmt.Fprintf(tw, "leases\t%d live", len(st.Leases))
	if st.Preparing != "" {
		fmt.Fprintf(tw, ", preparing %s", st.Preparing)
	}
	fmt.Fprintln(tw)
	for _, l := range st.Leases {
		fmt.Fprintf(tw, "  %s\ton %s until %s, score %.3f, shadow %.1f ms\n", l.LeaseID, l.Host, l.Expires.UTC().Format(time.TimeOnly), l.Score, l.ShadowMS)
	}
	if len(st.Adjustments) > 0 {
		fmt.Fprintf(tw, "adjustments\t%v\n", st.Adjustments)
	}
	s := st.Stats
	fmt.Fprintf(tw, "counters\t%d wakes, %d predictions (%d failed), %d preparations (%d failed), %d extensions, %d releases, %d kept after a cold request, %d claims, %d cold, %d expired, %.0f MB·s wasted\n",
		s.Wakes, s.Predictions, s.PredictErrors, s.Preparations, s.PreparationsFailed, s.Extends, s.Released, s.Kept, s.Claims, s.Misses, s.Expired, s.WastedMBSeconds)
	fmt.Fprintf(tw, "decisions\tidle %d, prepare %d, keep %d, release %d (bins)\n", s.Decisions[0], s.Decisions[1], s.Decisions[2], s.Decisions[3])
	if s.Refusals > 0 {
		fmt.Fprintf(tw, "refused\t%d malformed signals or updates\n", s.Refusals)
	}
	fmt.Fprintf(tw, "requests\t%g observed, %d warm\n", s.Requests, s.WarmRequests)
	if st.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", st.LastError)
	}
	tw.Flush()
}

func tail(xs []float64, n int) string {
	if len(xs) > n {
		xs = xs[len(xs)-n:]
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func newLoopThresholdCmd(g *globals) *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:   "threshold --app A VALUE",
		Short: "Set a loop's threshold (the `threshold` signal)",
		Long: `Send the threshold signal. VALUE must be a probability in [0, 1]; the CLI
refuses anything else before sending (the loop would ignore it and log why).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireApp(app); err != nil {
				return err
			}
			v, err := strconv.ParseFloat(args[0], 64)
			if err != nil {
				return usageErr("VALUE %q is not a number; give a probability in (0, 1]", args[0])
			}
			if err := checkThresholdFlag("VALUE", v); err != nil {
				return err
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.SignalWorkflow(cmd.Context(), workflows.LoopWorkflowID(app), "", workflows.SignalThreshold, workflows.ThresholdSignal{Threshold: v}); err != nil {
				return loopCallErr(app, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: threshold signal %g sent\n", workflows.LoopWorkflowID(app), v)
			return nil
		},
	}
	appFlag(cmd.Flags(), &app)
	return cmd
}

// updatePolicy sends the set-policy Update and returns its answer.
func updatePolicy(ctx context.Context, g *globals, app string, change workflows.PolicyChange) (workflows.PolicyUpdateResult, error) {
	c, err := g.Temporal.Dial(nil)
	if err != nil {
		return workflows.PolicyUpdateResult{}, err
	}
	defer c.Close()
	res, err := wfclient.UpdatePolicy(ctx, c, app, change)
	if err != nil {
		return res, loopCallErr(app, err)
	}
	return res, nil
}

func newLoopPolicyCmd(g *globals) *cobra.Command {
	var app string
	var pf policyFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "policy --app A [policy flags]",
		Short: "Change a loop's policy (the `set-policy` Update: validated, answered)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(app); err != nil {
				return err
			}
			for _, f := range startOnlyFlags {
				if cmd.Flags().Changed(f) {
					return usageErr("--%s is set when a loop starts (starter loop start); the set-policy update does not change it", f)
				}
			}
			ch := pf.change(cmd.Flags())
			if ch == (workflows.PolicyChange{}) {
				return usageErr("no policy flag given; see `starter loop policy --help`")
			}
			if ch.Threshold != nil {
				if err := checkThresholdFlag("--threshold", *ch.Threshold); err != nil {
					return err
				}
			}
			res, err := updatePolicy(cmd.Context(), g, app, ch)
			if err != nil {
				return err
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: policy %+v\n", workflows.LoopWorkflowID(app), res.Current)
			return nil
		},
	}
	pf.register(cmd.Flags())
	appFlag(cmd.Flags(), &app)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the previous and current policy as JSON")
	return cmd
}

func newLoopPauseCmd(g *globals, pause bool) *cobra.Command {
	var app string
	use, short := "resume", "Resume a paused loop"
	if pause {
		use, short = "pause", "Pause a loop: it keeps counting activity, predicts and prepares nothing"
	}
	cmd := &cobra.Command{
		Use:   use + " --app A",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(app); err != nil {
				return err
			}
			if _, err := updatePolicy(cmd.Context(), g, app, workflows.PolicyChange{Paused: &pause}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %sd\n", workflows.LoopWorkflowID(app), use)
			return nil
		},
	}
	appFlag(cmd.Flags(), &app)
	return cmd
}

func newLoopStopCmd(g *globals) *cobra.Command {
	var app, reason string
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "stop --app A [--wait]",
		Short: "Stop a loop: cancel its preparation, release its leases, complete",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(app); err != nil {
				return err
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			id := workflows.LoopWorkflowID(app)
			if err := c.SignalWorkflow(cmd.Context(), id, "", workflows.SignalStop, workflows.StopSignal{Reason: reason}); err != nil {
				return loopCallErr(app, err)
			}
			if !wait {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: stop signal sent\n", id)
				return nil
			}
			var res workflows.LoopResult
			if err := c.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), &res); err != nil {
				return fmt.Errorf("wait for %s: %w", id, err)
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s after %d wakes, %d preparations, %d claims, %d expired\n", id, res.Reason, res.Stats.Wakes, res.Stats.Preparations, res.Stats.Claims, res.Stats.Expired)
			return nil
		},
	}
	appFlag(cmd.Flags(), &app)
	cmd.Flags().StringVar(&reason, "reason", "operator request", "why (recorded in the result)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the loop has released its leases and completed")
	cmd.Flags().BoolVar(&asJSON, "json", false, "with --wait, print the result as JSON")
	return cmd
}

// emitJSON prints v as indented JSON in the one style of everything an
// operator reads (package jsonx: snake_case keys, durations as "1m0s").
// Every --json goes through it.
func emitJSON(w io.Writer, v any) error {
	b, err := jsonx.Encode(v)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}
