package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/forewarm/forewarm/replay"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

func init() { addCommand(replayCmd) }

type replayFlags struct {
	format, file, memory, durations string
	from                            string
	duration                        time.Duration
	speed                           float64
	apps                            int
	appList                         []string
	maxPerBin                       int
	memScale, diskRatio             float64
	maxWork                         time.Duration
	inFlight                        int
	json, listApps                  bool
	startAt                         string
	summary                         string
	maxRate                         float64
	gateway, gatewayPath            string
	gatewayBody                     string
	writeSpecs                      string
	specTemplates                   []string
	warmupBins                      int
}

func replayCmd(g *globals) *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Drive live requests from a trace through the serve-request workflow",
		Long: `Replay walks a trace bin by bin at --speed times real speed and starts one
serve-request workflow per request (a prepared lease is claimed when the
application's loop holds one, otherwise the request is served cold). A
progress line shows the time in the trace, requests sent and the warm share
so far. Ctrl-C stops cleanly: requests in flight finish, none are started.

--from is a trace bin index (minute for azure2019) or an RFC 3339 time.`,
		Example: `  starter replay --format azure2019 --file testdata/azure2019-sample/1350_inv.csv \
      --memory testdata/azure2019-sample/1350_mem.csv --from 960 --duration 3m --speed 60 --apps 36`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReplay(cmd.Context(), g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "azure2019", "trace format: azure2019 or events")
	fl.StringVar(&f.file, "file", "", "trace file (required)")
	fl.StringVar(&f.memory, "memory", "", "azure2019 memory file (per-app MB)")
	fl.StringVar(&f.durations, "durations", "", "azure2019 durations file (per-function ms)")
	fl.StringVar(&f.from, "from", "0", "first bin: an index or an RFC 3339 time")
	fl.DurationVar(&f.duration, "duration", 0, "wall-clock length of the replay (0: to the end of the trace)")
	fl.Float64Var(&f.speed, "speed", 60, "trace time per wall time (60: a one-minute bin per second)")
	fl.IntVar(&f.apps, "apps", 0, "replay this many applications of varied shapes (0: all, or --app)")
	fl.StringSliceVar(&f.appList, "app", nil, "replay exactly these applications (repeatable)")
	fl.IntVar(&f.maxPerBin, "max-per-bin", 0, "cap on one application's requests per bin (0: none); what it drops is counted in the summary and the report")
	fl.Float64Var(&f.memScale, "memory-scale", 1, "scale the trace's memory sizes (to fit small hosts; a demo scales the hosts' real allocation instead: hostagent --alloc-scale)")
	fl.Float64Var(&f.diskRatio, "disk-ratio", 0.25, "storage per request as a share of its memory (loops prepare a quarter)")
	fl.DurationVar(&f.maxWork, "max-work", 200*time.Millisecond, "cap on one request's work (its trace duration, divided by --speed like the trace's time)")
	fl.IntVar(&f.inFlight, "in-flight", 64, "requests served at once")
	fl.BoolVar(&f.json, "json", false, "print the summary as JSON")
	fl.StringVar(&f.startAt, "start-at", "", "RFC 3339 wall time to begin at (e.g. the loops' --clock-start)")
	fl.BoolVar(&f.listApps, "list-apps", false, "print the applications that would be replayed, one a line, and exit")
	fl.StringVar(&f.summary, "summary", "", "also write the summary as JSON to this file (`starter report --replay` reads it to compare the run with the simulator)")
	fl.Float64Var(&f.maxRate, "max-rate", 0, "with --apps: choose applications whose requests in the window average at most this many per second of wall time in all (0: no limit)")
	fl.StringVar(&f.gateway, "gateway", "", "send every request as a real HTTP request through this gateway (e.g. http://127.0.0.1:8080) instead of a serve-request workflow: POST <gateway>/<app><--gateway-path>")
	fl.StringVar(&f.gatewayPath, "gateway-path", "/predict", "with --gateway: the applications' path every request is sent to")
	fl.StringVar(&f.gatewayBody, "gateway-body", `{"x":[0.5,-1,2]}`, "with --gateway: the JSON body of every request")
	fl.IntVar(&f.warmupBins, "warmup-bins", 0, "replay this many trace bins before --from first, outside the window the summary reports (instances prepared and loops settled before it begins, as on a platform that was already running)")
	fl.StringVar(&f.writeSpecs, "write-specs", "", "write an application spec for each replayed application into this folder (from --spec-template, each with the trace's memory size) and exit: the host agents' --spec-dir for a replay --gateway")
	fl.StringSliceVar(&f.specTemplates, "spec-template", nil, "with --write-specs: spec files whose program each application runs, chosen by a hash of the application (repeatable)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// replaySummary is what replay prints at the end, and writes with
// --summary for `starter report --replay`.
type replaySummary struct {
	TraceFrom   time.Time `json:"trace_from"`
	TraceTo     time.Time `json:"trace_to"`
	Apps        []string  `json:"apps"`
	Sent        int64     `json:"sent"`
	Failed      int64     `json:"failed"`
	Dropped     int64     `json:"dropped"` // by --max-per-bin
	Warm        int64     `json:"warm"`
	WarmShare   float64   `json:"warm_share"`
	Interrupted bool      `json:"interrupted"`
	WallSeconds float64   `json:"wall_seconds"`
	FirstError  string    `json:"first_error,omitempty"`
	// The window on both clocks: trace bin FromBin (of TraceBinSeconds)
	// began at StartedAt, and each live bin lasted LiveBinSeconds.
	Format          string    `json:"format"`
	File            string    `json:"file"`
	FromBin         int       `json:"from_bin"`
	Bins            int       `json:"bins"`
	TraceBinSeconds float64   `json:"trace_bin_seconds"`
	StartedAt       time.Time `json:"started_at"`
	LiveBinSeconds  float64   `json:"live_bin_seconds"`
	MaxPerBin       int       `json:"max_per_bin"`
	// Gateway is the gateway every request went through (empty: each
	// through its own serve-request workflow).
	Gateway string `json:"gateway,omitempty"`
	// WarmupBins were replayed before the window (their requests are in
	// Sent and Warm, not in the window the report reads).
	WarmupBins int `json:"warmup_bins,omitempty"`
}

func runReplay(ctx context.Context, g *globals, f replayFlags) error {
	if f.speed <= 0 {
		return usageErr("--speed must be positive, got %g", f.speed)
	}
	if f.apps < 0 || f.maxPerBin < 0 || f.inFlight < 1 || f.memScale <= 0 || f.diskRatio < 0 {
		return usageErr("--apps and --max-per-bin must not be negative, --in-flight and --memory-scale must be positive")
	}
	if f.apps > 0 && len(f.appList) > 0 {
		return usageErr("give --apps or --app, not both")
	}
	tr, err := trace.Read(f.format, f.file, trace.ReadOptions{MemoryPath: f.memory, DurationsPath: f.durations})
	if err != nil {
		return err
	}
	from, err := parseBin(tr, f.from)
	if err != nil {
		return usageErr("--from: %v", err)
	}
	var startAt time.Time
	if f.startAt != "" {
		if startAt, err = time.Parse(time.RFC3339, f.startAt); err != nil {
			return usageErr("--start-at %q: want an RFC 3339 time", f.startAt)
		}
	}
	bins := 0
	if f.duration > 0 {
		bins = max(1, int(float64(f.duration)*f.speed/float64(tr.Bin)))
	}
	apps := f.appList
	if f.apps > 0 {
		to := tr.Bins
		if bins > 0 {
			to = min(tr.Bins, from+bins)
		}
		budget := math.Inf(1)
		if f.maxRate > 0 {
			budget = f.maxRate * float64(to-from) * tr.Bin.Seconds() / f.speed
		}
		apps = replay.SelectVariedWithin(tr, f.apps, from, from, to, 30, budget)
		if len(apps) == 0 {
			return fmt.Errorf("no application has requests in the chosen range; try another --from or --duration")
		}
	}
	if f.writeSpecs != "" {
		return writeAppSpecs(tr, apps, f)
	}
	if f.listApps {
		if apps == nil {
			for _, a := range tr.Apps {
				apps = append(apps, a.ID)
			}
		}
		for _, a := range apps {
			fmt.Println(a)
		}
		return nil
	}

	counts := &replayCounts{}
	var send replay.Sender
	if f.gateway != "" {
		if send, err = gatewaySender(f, counts); err != nil {
			return err
		}
	} else {
		c, err := g.Temporal.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		send = workflowSender(c, f, counts)
	}
	return finishReplay(ctx, tr, f, from, bins, apps, startAt, send, counts)
}

// replayCounts are the warm requests and the first failure so far.
type replayCounts struct {
	mu       sync.Mutex
	warm     int64
	firstErr string
}

func (c *replayCounts) warmed() {
	c.mu.Lock()
	c.warm++
	c.mu.Unlock()
}

// fail remembers the first failure and returns err.
func (c *replayCounts) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstErr == "" {
		c.firstErr = err.Error()
	}
	return err
}

func (c *replayCounts) get() (int64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.warm, c.firstErr
}

// workflowSender serves each request through its own serve-request
// workflow.
func workflowSender(c client.Client, f replayFlags, counts *replayCounts) replay.Sender {
	return func(ctx context.Context, r replay.Request) error {
		in := workflows.RequestInput{
			RequestID: uuid.NewString(),
			ArrivedAt: time.Now().UTC(),
			App:       r.App,
			MemoryMB:  max(1, r.MemoryMB*f.memScale),
			ReadRatio: r.ReadRatio,
			// The trace's time runs --speed times faster here: so do its
			// requests, or a minute's requests would pile up on each other.
			WorkMS: min(r.DurationMS/f.speed, float64(f.maxWork.Milliseconds())),
		}
		in.DiskMB = in.MemoryMB * f.diskRatio
		// Requests already started finish even after Ctrl-C.
		run, err := c.ExecuteWorkflow(context.WithoutCancel(ctx), client.StartWorkflowOptions{
			ID:        workflows.RequestWorkflowID(r.App, in.RequestID),
			TaskQueue: workflows.PredictionTaskQueue,
		}, workflows.RequestWorkflowName, in)
		var res workflows.RequestResult
		if err == nil {
			err = run.Get(context.WithoutCancel(ctx), &res)
		}
		if err != nil {
			return counts.fail(err)
		}
		if res.Warm {
			counts.warmed()
		}
		return nil
	}
}

// finishReplay runs the replay with send and prints its summary.
func finishReplay(ctx context.Context, tr *trace.Trace, f replayFlags, from, bins int, apps []string, startAt time.Time,
	send replay.Sender, counts *replayCounts) error {

	tty := term.IsTerminal(int(os.Stderr.Fd()))
	lastLine := time.Time{}
	progress := func(p replay.Progress) {
		w, _ := counts.get()
		done := p.Sent + p.Failed
		line := fmt.Sprintf("trace %s  bin %d/%d  sent %d  failed %d  warm %s",
			p.TraceTime.Format("2006-01-02 15:04"), p.BinsDone, p.BinsTotal, done, p.Failed, share(w, done))
		switch {
		case tty:
			fmt.Fprintf(os.Stderr, "\r%-90s", line)
		case time.Since(lastLine) >= 10*time.Second || p.BinsDone == p.BinsTotal:
			fmt.Fprintln(os.Stderr, line)
			lastLine = time.Now()
		}
	}
	w := f.warmupBins
	if w < 0 || w > from {
		return usageErr("--warmup-bins %d: must be within 0..%d (the bins before --from)", w, from)
	}
	runBins := bins
	if bins > 0 {
		runBins += w
	}
	sum, err := replay.Run(ctx, tr, replay.Options{
		From: from - w, Bins: runBins, Speed: f.speed, Apps: apps, MaxPerBin: f.maxPerBin,
		InFlight: f.inFlight, OnProgress: progress, StartAt: startAt,
	}, send)
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	warm, firstErr := counts.get()
	out := replaySummary{
		TraceFrom: tr.BinStart(from), TraceTo: sum.TraceTime, Apps: apps,
		Sent: sum.Sent, Failed: sum.Failed, Dropped: sum.Skipped, Warm: warm,
		Interrupted: sum.Interrupted, WallSeconds: sum.Wall.Seconds(), FirstError: firstErr,
		Format: f.format, File: f.file, FromBin: from, Bins: max(0, sum.BinsDone-w), TraceBinSeconds: tr.Bin.Seconds(),
		StartedAt: sum.Began.Add(time.Duration(w) * sum.BinWall).UTC(), LiveBinSeconds: sum.BinWall.Seconds(), MaxPerBin: f.maxPerBin,
		Gateway: f.gateway, WarmupBins: w,
	}
	if sum.Sent > 0 {
		out.WarmShare = float64(warm) / float64(sum.Sent)
	}
	if out.Apps == nil {
		for _, a := range tr.Apps {
			out.Apps = append(out.Apps, a.ID)
		}
	}
	if f.summary != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err == nil {
			err = os.WriteFile(f.summary, append(b, '\n'), 0o644)
		}
		if err != nil {
			return fmt.Errorf("--summary %s: %w", f.summary, err)
		}
	}
	if f.json {
		return emitJSON(os.Stdout, out)
	}
	state := "finished"
	if sum.Interrupted {
		state = "interrupted"
	}
	fmt.Printf("replay %s: %d requests from %d applications in %.0fs, %s warm, %d failed, %d dropped by --max-per-bin\n",
		state, sum.Sent, len(out.Apps), sum.Wall.Seconds(), share(warm, sum.Sent), sum.Failed, sum.Skipped)
	if firstErr != "" {
		fmt.Printf("first failure: %s\n", firstErr)
	}
	if sum.Sent == 0 && sum.Failed > 0 {
		return fmt.Errorf("every request failed; is the worker running? (make demo starts one, or run bin/worker)")
	}
	return nil
}

func share(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// parseBin reads a bin index or an RFC 3339 time inside the trace.
func parseBin(tr *trace.Trace, s string) (int, error) {
	if strings.ContainsAny(s, "T:-") && len(s) > 8 {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return 0, fmt.Errorf("%q is neither a bin index nor an RFC 3339 time", s)
		}
		b := int(t.Sub(tr.Start) / tr.Bin)
		if t.Before(tr.Start) || b >= tr.Bins {
			return 0, fmt.Errorf("%s is outside the trace (%s to %s)", s, tr.Start.Format(time.RFC3339), tr.BinStart(tr.Bins).Format(time.RFC3339))
		}
		return b, nil
	}
	var b int
	if _, err := fmt.Sscanf(s, "%d", &b); err != nil || fmt.Sprint(b) != s {
		return 0, fmt.Errorf("%q is neither a bin index nor an RFC 3339 time", s)
	}
	if b < 0 || b >= tr.Bins {
		return 0, fmt.Errorf("bin %d is outside the trace's %d bins", b, tr.Bins)
	}
	return b, nil
}
