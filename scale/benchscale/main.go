// Command benchscale is `make bench-scale`: N prediction loops on one
// worker against a Temporal dev server of its own (a fresh database,
// stopped at the end), deciding live bins on a trace clock, with the
// Azure sample's applications cycled to N and their requests reported
// router-style (one batch per bin into ClickHouse; the worker's arrival
// watch wakes the loops an arrival can change). It prints what it does on
// stderr and one line of JSON last on stdout, and exits non-zero when the
// p99 decision lag reaches a bin.
//
//	go run ./scale/benchscale --apps 50000
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/models"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/scale"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/worker/resident"
	"github.com/forewarm/forewarm/workflows"
	"github.com/forewarm/forewarm/workflows/wfclient"
)

type settings struct {
	ClickHouse     config.ClickHouse
	Apps           int
	Mode           string // event or ticking
	LiveBin        time.Duration
	Window         int // bins measured
	Settle         int // bins after the last start before measuring
	HistoryBins    int
	Trace          string
	From           int // trace bin the first copies start at
	Threshold      float64
	Port           int
	MetricsListen  string
	TemporalBin    string
	WorkerBin      string
	StarterBin     string
	StateDir       string
	Sample         int
	Seed           int64
	SteadyState    bool
	CompareTicking bool
	Dry            bool
	Agents         int
	AgentBin       string
	Starters       int
	ClickHousePID  int
	Keep           bool
	WorkerArgs     []string
	StickyTimeout  time.Duration
	TrainArgs      []string
	ModelDB        string
	Pragmas        []string
	ServerConfig   []string
}

func parseFlags(args []string) (settings, error) {
	var s settings
	var env config.EnvDefaults // a SCALE_* value that does not parse is named, not ignored
	fs := pflag.NewFlagSet("benchscale", pflag.ContinueOnError)
	s.ClickHouse.Flags(fs)
	fs.IntVar(&s.Apps, "apps", env.Int("SCALE_APPS", 50000), "applications, one loop each ($SCALE_APPS)")
	fs.StringVar(&s.Mode, "mode", config.Env("SCALE_MODE", "event"), "event (sleep until the policy could act) or ticking (decide every bin) ($SCALE_MODE)")
	fs.DurationVar(&s.LiveBin, "live-bin", env.Duration("SCALE_LIVE_BIN", time.Minute), "live bin width; each stands for a one-minute trace bin ($SCALE_LIVE_BIN)")
	fs.IntVar(&s.Window, "window", env.Int("SCALE_WINDOW", 6), "bins measured ($SCALE_WINDOW)")
	fs.IntVar(&s.Settle, "settle", env.Int("SCALE_SETTLE", 2), "bins after the last loop started before measuring ($SCALE_SETTLE)")
	fs.IntVar(&s.HistoryBins, "history-bins", env.Int("SCALE_HISTORY_BINS", 1440), "bins of history reported before the start: the loops' window ($SCALE_HISTORY_BINS)")
	fs.StringVar(&s.Trace, "trace", config.Env("SCALE_TRACE", "testdata/azure2019-sample"), "folder of the Azure Functions 2019 sample ($SCALE_TRACE)")
	fs.IntVar(&s.From, "from", 960, "trace bin (minute) the first copies start at: after the model's training range")
	fs.Float64Var(&s.Threshold, "threshold", workflows.DefaultPolicy().Threshold, "the loops' threshold")
	fs.IntVar(&s.Port, "temporal-port", env.Int("SCALE_TEMPORAL_PORT", 7290), "port of the benchmark's own Temporal dev server ($SCALE_TEMPORAL_PORT)")
	fs.StringVar(&s.MetricsListen, "metrics-listen", config.Env("FOREWARM_METRICS_LISTEN", "127.0.0.1:9464"), "the worker's /metrics address ($FOREWARM_METRICS_LISTEN)")
	fs.StringVar(&s.TemporalBin, "temporal-bin", config.Env("TEMPORAL_BIN", "temporal"), "Temporal CLI ($TEMPORAL_BIN)")
	fs.StringVar(&s.WorkerBin, "worker-bin", "bin/worker", "worker binary")
	fs.StringVar(&s.StarterBin, "starter-bin", "bin/starter", "starter binary (trains the model)")
	fs.StringVar(&s.StateDir, "state", config.Env("FOREWARM_STATE", ".state"), "folder for the dev server's database and the logs ($FOREWARM_STATE)")
	fs.IntVar(&s.Sample, "sample", env.Int("SCALE_SAMPLE", 500), "loops queried for their decisions and whose histories are measured: all of them up to this many, else a random sample ($SCALE_SAMPLE)")
	fs.Int64Var(&s.Seed, "seed", 1, "seed of the sample and of the first sleeps' draws")
	fs.BoolVar(&s.SteadyState, "steady-state", env.Bool("SCALE_STEADY_STATE", true), "give each event-driven loop a first sleep bound drawn in [1, its bound], so the window sees bound wakes at a long-running fleet's rate ($SCALE_STEADY_STATE)")
	fs.BoolVar(&s.CompareTicking, "compare-ticking", env.Bool("SCALE_COMPARE_TICKING", false), "after the event-driven fleet, run the same fleet ticking (same N, bin, settle and window) and report both ($SCALE_COMPARE_TICKING)")
	fs.IntVar(&s.Starters, "starters", 32, "loop starts in flight")
	fs.IntVar(&s.ClickHousePID, "clickhouse-pid", env.Int("SCALE_CLICKHOUSE_PID", 0), "ClickHouse server's process, to measure its CPU ($SCALE_CLICKHOUSE_PID)")
	fs.BoolVar(&s.Keep, "keep", false, "keep the benchmark's ClickHouse database")
	fs.DurationVar(&s.StickyTimeout, "sticky-timeout", env.Duration("SCALE_STICKY_TIMEOUT", time.Minute), "the worker's --sticky-timeout: a bin's burst of wakes at 50,000 loops takes longer than the SDK's 5 s to drain, and with 5 s the tasks that wait longer move off the worker that caches their loop and replay its history ($SCALE_STICKY_TIMEOUT)")
	fs.BoolVar(&s.Dry, "dry", env.Bool("SCALE_DRY", true), "dry-run loops (decide and record); --dry=false: loops prepare, extend and release leases on host agents the benchmark starts ($SCALE_DRY)")
	fs.IntVar(&s.Agents, "agents", env.Int("SCALE_AGENTS", 2), "host agents started with --dry=false (memory reservations of a thousandth of their size, room for every application) ($SCALE_AGENTS)")
	fs.StringVar(&s.AgentBin, "agent-bin", "bin/hostagent", "host agent binary (--dry=false)")
	fs.StringSliceVar(&s.WorkerArgs, "worker-arg", nil, "extra worker flag (repeatable), e.g. --worker-arg=--workflow-tasks=400")
	fs.StringVar(&s.ModelDB, "model-db", config.Env("SCALE_MODEL_DB", "forewarm_scale_model"), "ClickHouse database that keeps the benchmark's trained model between runs (trained there on the first run; empty: train every run) ($SCALE_MODEL_DB)")
	fs.StringSliceVar(&s.Pragmas, "sqlite-pragma", strings.Fields(config.Env("SCALE_SQLITE_PRAGMAS", "journal_mode=wal synchronous=normal cache_size=-262144 mmap_size=1073741824 temp_store=memory")),
		"the dev server's SQLite pragmas (repeatable): the stack's (WAL, synchronous normal) and a page cache and memory map large enough for 50,000 loops' histories ($SCALE_SQLITE_PRAGMAS, space-separated)")
	// Tried at 50,000 loops: reading the timer queue every 5 s in batches
	// of 1,000 (history.timerProcessorMaxPollInterval="5s"
	// history.timerTaskBatchSize=1000) did not cut the lag (docs/scale.md).
	fs.StringSliceVar(&s.ServerConfig, "server-config", strings.Fields(config.Env("SCALE_SERVER_CONFIG", "")),
		"the dev server's dynamic configuration, KEY=JSON value (repeatable) ($SCALE_SERVER_CONFIG, space-separated)")
	fs.StringSliceVar(&s.TrainArgs, "train-arg", nil, "extra `starter model train` flag (repeatable), e.g. --train-arg=--epochs=1 for a quick smoke run")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if env.Err != nil {
		return s, env.Err
	}
	switch {
	case s.Apps < 1:
		return s, fmt.Errorf("--apps %d: need at least one", s.Apps)
	case s.Mode != "event" && s.Mode != "ticking":
		return s, fmt.Errorf("--mode %q: event or ticking", s.Mode)
	case s.LiveBin < 2*time.Second || s.LiveBin%time.Second != 0:
		return s, fmt.Errorf("--live-bin %v: whole seconds, at least 2", s.LiveBin)
	case s.Window < 1 || s.Settle < 0:
		return s, fmt.Errorf("--window %d, --settle %d: at least 1 and 0", s.Window, s.Settle)
	case !s.Dry && s.Agents < 1:
		return s, fmt.Errorf("--dry=false needs host agents: --agents %d", s.Agents)
	case s.Sample < 1:
		return s, fmt.Errorf("--sample %d: at least 1", s.Sample)
	case s.CompareTicking && s.Mode != "event":
		return s, fmt.Errorf("--compare-ticking compares an event-driven fleet with a ticking one: --mode %q", s.Mode)
	case s.HistoryBins < 1 || s.HistoryBins > 1440:
		return s, fmt.Errorf("--history-bins %d: in [1, 1440]", s.HistoryBins)
	}
	return s, nil
}

func main() {
	s, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchscale: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, s, log)
	if err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
	b, err := json.Marshal(res)
	if err != nil {
		log.Error("benchmark result", "err", err)
		os.Exit(1)
	}
	fmt.Println(string(b))
	failed := false
	for _, r := range []*scale.Result{&res, res.Ticking} {
		if r == nil {
			continue
		}
		if !(r.P99DecisionLagBins < 1) {
			log.Error("p99 decision lag reached a bin", "mode", r.Mode, "p99_bins", r.P99DecisionLagBins)
			failed = true
		}
		if len(r.LoopsBehind) > 0 || len(r.LoopsUnanswered) > 0 {
			log.Error("sampled loops not deciding", "mode", r.Mode, "behind", r.LoopsBehind, "unanswered", r.LoopsUnanswered)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// bench is one run's services and clean-up.
type bench struct {
	s       settings
	log     *slog.Logger
	cleanup []func()
	rss0    int64  // the worker's VmRSS once ready, before any loop
	root    string // the host agents' root secret (--dry=false)
	st      *store.Store
}

func (b *bench) defer_(f func()) { b.cleanup = append(b.cleanup, f) }

func (b *bench) close() {
	for i := len(b.cleanup) - 1; i >= 0; i-- {
		b.cleanup[i]()
	}
}

func run(ctx context.Context, s settings, log *slog.Logger) (scale.Result, error) {
	began := time.Now()
	b := &bench{s: s, log: log}
	defer b.close()
	var res scale.Result

	tr, err := trace.ReadAzure2019(filepath.Join(s.Trace, "1350_inv.csv"), trace.AzureOptions{MemoryPath: filepath.Join(s.Trace, "1350_mem.csv")})
	if err != nil {
		return res, err
	}
	fleet, err := scale.NewFleet(tr, s.Apps, s.From)
	if err != nil {
		return res, err
	}

	// A database of its own, migrated, with a champion model.
	s.ClickHouse.Database = fmt.Sprintf("forewarm_scale_%d", time.Now().Unix())
	b.s = s
	if _, err := store.Migrate(ctx, s.ClickHouse); err != nil {
		return res, fmt.Errorf("migrate %s: %w", s.ClickHouse.Database, err)
	}
	st, err := store.Open(ctx, s.ClickHouse)
	if err != nil {
		return res, err
	}
	b.defer_(func() {
		if !s.Keep {
			dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := st.Conn().Exec(dctx, "DROP DATABASE IF EXISTS `"+s.ClickHouse.Database+"`"); err != nil {
				log.Warn("drop the benchmark database", "db", s.ClickHouse.Database, "err", err)
			}
		}
		st.Close()
	})
	if err := b.model(ctx, st, tr); err != nil {
		return res, err
	}

	// History up to the start, then a router reporting every bin as it ends.
	liveStart := time.Now().Truncate(s.LiveBin)
	router := &scale.Router{Fleet: fleet, Start: liveStart, Bin: s.LiveBin, Record: st.RecordArrivals, Grace: resident.Grace(s.LiveBin)}
	t0 := time.Now()
	rows, err := router.History(ctx, s.HistoryBins)
	if err != nil {
		return res, err
	}
	log.Info("history reported", "bins", s.HistoryBins, "rows", rows, "took", time.Since(t0).Round(time.Millisecond))
	rctx, stopRouter := context.WithCancel(ctx)
	routerErr := make(chan error, 1)
	go func() { routerErr <- router.Run(rctx) }()
	b.defer_(stopRouter)

	// A Temporal dev server of its own, then the worker.
	serverPID, err := b.devServer(ctx)
	if err != nil {
		return res, err
	}
	c, err := client.Dial(client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", s.Port), Logger: quiet{}, DataConverter: payload.Converter()})
	if err != nil {
		return res, err
	}
	b.defer_(c.Close)
	if !s.Dry {
		if err := b.agents(ctx); err != nil {
			return res, err
		}
	}
	workerPID, err := b.worker(ctx)
	if err != nil {
		return res, err
	}
	b.rss0 = scale.ProcessRSS(workerPID)
	b.st = st

	res, err = b.fleetRun(ctx, c, fleet, router, liveStart, s.Mode, workerPID, serverPID, routerErr)
	if err != nil {
		return res, err
	}
	if s.CompareTicking {
		// The same fleet deciding every bin, on the same worker, server and
		// router: the event-driven loops end first.
		if err := stopLoops(ctx, c, fleet, s.Starters); err != nil {
			return res, err
		}
		log.Info("event-driven loops stopped; the ticking fleet next")
		tick, err := b.fleetRun(ctx, c, fleet, router, liveStart, "ticking", workerPID, serverPID, routerErr)
		if err != nil {
			return res, fmt.Errorf("ticking fleet: %w", err)
		}
		res.Ticking = &tick
		if res.HistoryEventsPerAppHour > 0 {
			res.TickingHistoryRatio = round(tick.HistoryEventsPerAppHour / res.HistoryEventsPerAppHour)
		}
		if res.WindowHistoryEventsPerAppHour > 0 {
			res.TickingWindowHistoryRatio = round(tick.WindowHistoryEventsPerAppHour / res.WindowHistoryEventsPerAppHour)
		}
	}
	res.TotalSeconds = time.Since(began).Seconds()
	return res, nil
}

// fleetRun starts the fleet's loops in mode (event or ticking), waits for
// every first decision, settles, and measures a window.
func (b *bench) fleetRun(ctx context.Context, c client.Client, fleet *scale.Fleet, router *scale.Router, liveStart time.Time,
	mode string, workerPID, serverPID int, routerErr <-chan error) (scale.Result, error) {
	s, log := b.s, b.log
	var res scale.Result
	metricsURL := "http://" + s.MetricsListen + "/metrics"
	m0, err := scale.Scrape(ctx, metricsURL)
	if err != nil {
		return res, err
	}
	pol := workflows.DefaultPolicy()
	pol.Threshold, pol.DryRun, pol.Ticking = s.Threshold, s.Dry, mode == "ticking"
	rng := rand.New(rand.NewPCG(uint64(s.Seed), 1))
	var first []int
	if s.SteadyState && mode == "event" {
		first = scale.FirstSleeps(len(fleet.Apps), func(k int) int { return workflows.SleepBound(pol, fleet.Apps[k].ID) }, rng)
	}
	t0 := time.Now()
	if err := startLoops(ctx, c, fleet, liveStart, s, pol, first); err != nil {
		return res, err
	}
	startTook := time.Since(t0)
	res.StartsPerSecond = float64(s.Apps) / startTook.Seconds()
	log.Info("loops started", "mode", mode, "apps", s.Apps, "took", startTook.Round(time.Millisecond), "per_second", math.Round(res.StartsPerSecond))

	// Let every loop make its first decision (a burst as they start), then
	// settle a few bins, then measure a window.
	t0 = time.Now()
	for {
		m, err := scale.Scrape(ctx, metricsURL)
		if err != nil {
			return res, err
		}
		if m.Wakes-m0.Wakes >= float64(s.Apps) {
			break
		}
		if time.Since(t0) > 20*time.Minute {
			return res, fmt.Errorf("after 20 minutes only %.0f of %d loops made their first decision", m.Wakes-m0.Wakes, s.Apps)
		}
		if err := sleepUntil(ctx, time.Now().Add(5*time.Second), routerErr); err != nil {
			return res, err
		}
	}
	log.Info("every loop made its first decision", "after_start", time.Since(t0).Round(time.Second))
	settle := time.Now().Truncate(s.LiveBin).Add(time.Duration(s.Settle+1) * s.LiveBin).Add(resident.Grace(s.LiveBin) / 2)
	if err := sleepUntil(ctx, settle, routerErr); err != nil {
		return res, err
	}
	apps := make([]string, len(fleet.Apps))
	for k, a := range fleet.Apps {
		apps[k] = a.ID
	}
	sample := scale.Sample(apps, s.Sample, rng)
	a, err := snap(ctx, c, metricsURL, sample, workerPID, serverPID, s.ClickHousePID, router, log)
	if err != nil {
		return res, err
	}
	log.Info("measuring", "bins", s.Window, "live_bin", s.LiveBin, "loops_sampled", len(a.loops))
	if err := sleepUntil(ctx, a.at.Add(time.Duration(s.Window)*s.LiveBin), routerErr); err != nil {
		return res, err
	}
	z, err := snap(ctx, c, metricsURL, sample, workerPID, serverPID, s.ClickHousePID, router, log)
	if err != nil {
		return res, err
	}
	rss := scale.ProcessRSS(workerPID)
	if !s.Dry {
		// The worker writes preparation events in batches: let the
		// window's last ones land before counting them.
		if err := sleepUntil(ctx, time.Now().Add(5*time.Second), routerErr); err != nil {
			return res, err
		}
		evs, err := b.st.PreparationEvents(ctx, a.at, z.at)
		if err != nil {
			return res, err
		}
		res.PreparationEvents = map[string]int{}
		for _, e := range evs {
			res.PreparationEvents[e.Event]++
		}
		res.PreparationsPerSecond = float64(res.PreparationEvents[records.EventValidated]) / z.at.Sub(a.at).Seconds()
	}
	res.Dry = s.Dry

	secs := z.at.Sub(a.at).Seconds()
	lag := z.m.Lag.Sub(a.m.Lag)
	hist := measureHistory(ctx, c, a.hist, z.hist)
	appHours := float64(hist.loops) * secs / s.LiveBin.Seconds() / 60 // one live bin stands for a trace minute
	res.Apps, res.BinSeconds, res.Mode = s.Apps, 60, mode
	res.LiveBinSeconds, res.WindowBins = s.LiveBin.Seconds(), s.Window

	// Decisions counted from the sampled loops' own state.
	dc := scale.CountDecisions(a.loops, z.loops, s.LiveBin, resident.Grace(s.LiveBin))
	res.LoopsSampled, res.LoopsAdvanced = dc.Sampled, dc.Advanced
	res.DecisionsDue, res.DecisionsCounted = dc.Due, dc.Counted
	res.DecisionsPendingStart, res.DecisionsPendingEnd, res.DecisionsUnaccounted = dc.PendingStart, dc.PendingEnd, dc.Unaccounted()
	res.LoopsNotAdvanced, res.LoopsBehind, res.LoopsUnanswered = len(dc.NotAdvanced), dc.Behind, dc.Unanswered
	res.BoundWakes = dc.BoundWakes
	res.SteadyState = first != nil
	if len(dc.NotAdvanced) > 0 {
		log.Info("sampled loops that settled no decision in the window (asleep on their plan unless also behind)",
			"mode", mode, "count", len(dc.NotAdvanced), "loops", strings.Join(dc.NotAdvanced, " "))
	}
	if dc.Sampled > 0 {
		res.DecisionsPerSecond = float64(dc.Counted) / secs * float64(s.Apps) / float64(dc.Sampled)
	}
	// The worker's lag histogram: a bin is decided in time when the wake
	// that settles it is less than a bin late.
	res.OnTimeShare = lag.Below(s.LiveBin.Seconds())
	res.SettledPerSecond = (z.m.Decisions - a.m.Decisions) / secs
	res.WakesPerSecond = (z.m.Wakes - a.m.Wakes) / secs
	res.WakesPerAppHour = (z.m.Wakes - a.m.Wakes) / (float64(s.Apps) * secs / s.LiveBin.Seconds() / 60)
	res.P99DecisionLagSeconds = lag.Quantile(0.99)
	res.P50DecisionLagSeconds = lag.Quantile(0.5)
	res.CapLag(lag)
	res.P99DecisionLagBins = res.P99DecisionLagSeconds / s.LiveBin.Seconds()
	if appHours > 0 {
		res.WindowHistoryEventsPerAppHour = float64(hist.events) / appHours
	}
	res.HistorySample = hist.loops
	if hist.sameRun > 0 {
		hours := float64(hist.sameRun) * secs / s.LiveBin.Seconds() / 60
		res.HistoryEventsByType = map[string]float64{}
		for t, n := range hist.byType {
			res.HistoryEventsByType[t] = round(float64(n) / hours)
		}
	}
	whole := wholeHistories(ctx, c, sample)
	res.HistoryEventsPerAppHour = scale.PerAppHour(whole.events, whole.age, s.LiveBin, time.Minute)
	res.HistoryWholeLoops = whole.loops
	res.WorkerCPUCores = (z.worker - a.worker).Seconds() / secs
	res.ServerCPUCores = (z.server - a.server).Seconds() / secs
	res.ClickHouseCPUCores = (z.clickhouse - a.clickhouse).Seconds() / secs
	res.BenchCPUCores = (z.self - a.self).Seconds() / secs
	res.OtherCPUCores = (z.machine-a.machine).Seconds()/secs - res.WorkerCPUCores - res.ServerCPUCores - res.ClickHouseCPUCores - res.BenchCPUCores
	res.WorkerStackMB = z.m.StackBytes / (1 << 20)
	res.WatchWakesPerSecond = (z.m.WatchWakes - a.m.WatchWakes) / secs
	res.RouterRowsPerSecond = float64(z.router.Rows-a.router.Rows) / secs
	res.RouterLateBins = z.router.Late
	res.WorkerPeakRSSMB = z.m.RSSBytes / (1 << 20)
	if rss > 0 {
		res.WorkerRSSMBPer1000Loops = float64(rss) / (1 << 20) / float64(s.Apps) * 1000
		res.WorkerRSSMBBeforeLoops = float64(b.rss0) / (1 << 20)
		res.WorkerLoopsRSSMBPer1000 = float64(rss-b.rss0) / (1 << 20) / float64(s.Apps) * 1000
	}
	if lag.Total() == 0 {
		return res, errors.New("no decision was measured: did the loops run? (see the worker's log)")
	}
	log.Info("measured", "mode", mode, "decisions_counted", dc.Counted, "decisions_due", dc.Due, "loops_sampled", dc.Sampled,
		"loops_advanced", dc.Advanced, "loops_behind", len(dc.Behind), "bound_wakes", dc.BoundWakes,
		"decisions_per_s", round(res.DecisionsPerSecond), "wakes_per_s", round(res.WakesPerSecond),
		"p50_lag_s", round(res.P50DecisionLagSeconds), "p99_lag_s", round(res.P99DecisionLagSeconds),
		"history_events_per_app_hour", round(res.HistoryEventsPerAppHour), "worker_cores", round(res.WorkerCPUCores),
		"server_cores", round(res.ServerCPUCores), "clickhouse_cores", round(res.ClickHouseCPUCores), "other_cores", round(res.OtherCPUCores))
	return res, nil
}

func round(x float64) float64 { return math.Round(x*1000) / 1000 }

// model makes a demand champion trained on the sample's first hours the
// benchmark database's champion: copied from the model database, trained
// there first when it has none.
func (b *bench) model(ctx context.Context, st *store.Store, tr *trace.Trace) error {
	s := b.s
	train := append([]string{"model", "train", "--format", "azure2019", "--file", filepath.Join(s.Trace, "1350_inv.csv"),
		"--memory", filepath.Join(s.Trace, "1350_mem.csv"), "--train-until", tr.BinStart(s.From).Format(time.RFC3339),
		"--status", "champion"}, s.TrainArgs...)
	if s.ModelDB == "" {
		b.log.Info("training the demand model on the sample's first hours", "db", s.ClickHouse.Database)
		return b.command(ctx, "train", s.StarterBin, s.ClickHouse.Database, train...)
	}
	mcfg := s.ClickHouse
	mcfg.Database = s.ModelDB
	if _, err := store.Migrate(ctx, mcfg); err != nil {
		return fmt.Errorf("model database %s: %w", s.ModelDB, err)
	}
	ms, err := store.Open(ctx, mcfg)
	if err != nil {
		return err
	}
	defer ms.Close()
	champ, err := ms.Champion(ctx, models.KindDemand)
	if errors.Is(err, store.ErrNoModel) {
		b.log.Info("training the demand model on the sample's first hours (once: kept for later runs)", "db", s.ModelDB)
		if err := b.command(ctx, "train", s.StarterBin, s.ModelDB, train...); err != nil {
			return err
		}
		champ, err = ms.Champion(ctx, models.KindDemand)
	}
	if err != nil {
		return err
	}
	b.log.Info("demand model", "version", champ.Version, "from", s.ModelDB)
	champ.Status = store.StatusChampion
	return st.PublishModel(ctx, champ)
}

// command runs one of the project's binaries against database db, its
// output on stderr.
func (b *bench) command(ctx context.Context, what, bin, db string, args ...string) error {
	b.log.Info("running", "what", what, "args", args)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "CLICKHOUSE_DATABASE="+db, "CLICKHOUSE_ADDR="+b.s.ClickHouse.Addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s (%s): %w", what, bin, err)
	}
	return nil
}

// background starts a long-running process in its own process group,
// logging to a file, killed (with its children) at clean-up.
func (b *bench) background(name, bin string, env []string, args ...string) (*exec.Cmd, error) {
	logs := filepath.Join(b.s.StateDir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(logs, "bench-scale-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.defer_(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		f.Close()
	})
	b.log.Info("started", "process", name, "pid", cmd.Process.Pid, "log", f.Name())
	return cmd, nil
}

// devServer starts a Temporal dev server on a fresh database (removed at
// clean-up), set up as deploy/local/up.sh sets up the stack's.
func (b *bench) devServer(ctx context.Context) (int, error) {
	dir, err := os.MkdirTemp(b.s.StateDir, "bench-scale-temporal-")
	if err != nil {
		return 0, err
	}
	b.defer_(func() { os.RemoveAll(dir) })
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(b.s.Port), "--headless",
		"--db-filename", filepath.Join(dir, "temporal.db"), "--log-level", "warn",
		"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
		"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"}
	for _, p := range b.s.Pragmas {
		args = append(args, "--sqlite-pragma", p)
	}
	for _, v := range b.s.ServerConfig {
		args = append(args, "--dynamic-config-value", v)
	}
	for _, a := range []string{"ForewarmApp=Keyword", "ForewarmLoopState=Keyword", "ForewarmThreshold=Double", "ForewarmHost=Keyword", "ForewarmModelVersion=Keyword"} {
		args = append(args, "--search-attribute", a)
	}
	cmd, err := b.background("temporal", b.s.TemporalBin, nil, args...)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := client.Dial(client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", b.s.Port), Logger: quiet{}, DataConverter: payload.Converter()})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			c.Close()
			if err == nil {
				return cmd.Process.Pid, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("the Temporal dev server on port %d did not answer: %v (see its log)", b.s.Port, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// agents starts s.Agents host agents registering in the benchmark's
// database, each with room for every application's lease (reservations
// allocate a thousandth of their size: the loops' work is measured, not
// the machine's memory), and waits until they answer.
func (b *bench) agents(ctx context.Context) error {
	secret := make([]byte, 16)
	for i := range secret {
		secret[i] = byte(rand.IntN(256))
	}
	b.root = fmt.Sprintf("%x", secret)
	for i := range b.s.Agents {
		id := fmt.Sprintf("bench-host-%d", i)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr := ln.Addr().String()
		ln.Close()
		dir := filepath.Join(b.s.StateDir, "bench-scale-agents", id)
		_ = os.RemoveAll(dir)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		// Room for every application's lease, within what an agent accepts
		// (api.MaxSizeMB, api.MaxCPUMilli: 1 TiB, 1,024 cores); a fleet that
		// holds more at once needs more agents (--agents).
		mb := strconv.Itoa(min(api.MaxSizeMB, max(100000, b.s.Apps*2000)))
		if _, err := b.background(id, b.s.AgentBin, []string{"HOSTAGENT_TOKEN=" + api.DeriveToken([]byte(b.root), id)},
			"--host-id", id, "--listen", addr, "--advertise-url", "http://"+addr, "--memory-mb", mb, "--disk-mb", mb,
			"--cpu-milli", strconv.Itoa(min(api.MaxCPUMilli, max(100000, b.s.Apps*4000))), "--alloc-scale", "0.001", "--sleep-work",
			"--default-ttl", "1h", "--data-dir", dir, "--report-every", "2s", "--log-level", "warn",
			"--clickhouse-addr", b.s.ClickHouse.Addr, "--clickhouse-database", b.s.ClickHouse.Database); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("host agent %s on %s did not get ready: %v (see its log)", id, addr, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	// Registered at their first report.
	return sleepUntil(ctx, time.Now().Add(3*time.Second), nil)
}

// worker starts the worker for the prediction queue with the arrival
// mirror at the live bin, and waits until it is ready (its mirror loaded).
func (b *bench) worker(ctx context.Context) (int, error) {
	env := []string{
		"TEMPORAL_ADDRESS=" + fmt.Sprintf("127.0.0.1:%d", b.s.Port),
		"CLICKHOUSE_ADDR=" + b.s.ClickHouse.Addr, "CLICKHOUSE_DATABASE=" + b.s.ClickHouse.Database,
		// Dry: no host agents, a root secret only to satisfy the worker's check.
		"FOREWARM_AGENT_ROOT_SECRET=" + cmp.Or(b.root, "benchmark-no-agents"),
	}
	args := append([]string{"--queues", "prediction", "--arrivals-bin", b.s.LiveBin.String(), "--arrivals-span", "1440",
		"--workflow-cache", strconv.Itoa(b.s.Apps + 1000), "--sticky-timeout", b.s.StickyTimeout.String(),
		"--metrics-listen", b.s.MetricsListen, "--log-level", "warn"}, b.s.WorkerArgs...)
	cmd, err := b.background("worker", b.s.WorkerBin, env, args...)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		resp, err := http.Get("http://" + b.s.MetricsListen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd.Process.Pid, nil
			}
		}
		if cmd.ProcessState != nil || syscall.Kill(cmd.Process.Pid, 0) != nil {
			return 0, errors.New("the worker exited (see its log)")
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("the worker was not ready within 10 minutes: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startLoops starts one router-mode loop per application, s.Starters at a
// time, each on a trace clock from its own offset.
// first, when set, is each loop's LoopInput.FirstSleepBins.
func startLoops(ctx context.Context, c client.Client, f *scale.Fleet, liveStart time.Time, s settings, pol workflows.Policy, first []int) error {
	state := workflows.LoopStateDryRun
	if !pol.DryRun {
		state = workflows.LoopStateRunning
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.Starters)
	for range s.Starters {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(f.Apps) || ctx.Err() != nil {
					return
				}
				a := f.Apps[k]
				in := workflows.LoopInput{App: a.ID, Bin: s.LiveBin, Window: 1440, Policy: pol, Seeded: true, Router: true,
					Profile: wire.AppProfile{App: a.ID, MemoryMB: a.MemoryMB, DiskMB: a.MemoryMB / 4, ReadRatio: trace.DefaultReadRatio},
					Clock:   &workflows.TraceClock{RealStart: liveStart, TraceStart: f.TraceStart(k), TraceBin: time.Minute}}
				if first != nil {
					in.FirstSleepBins = first[k]
				}
				// A start that timed out on a saturated server may have
				// started the loop: a retry finds it (USE_EXISTING). The
				// first attempt fails on a loop left from another fleet.
				var err error
				for attempt := 1; ; attempt++ {
					conflict := enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL
					if attempt > 1 {
						conflict = enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING
					}
					_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
						ID: workflows.LoopWorkflowID(a.ID), TaskQueue: workflows.PredictionTaskQueue,
						WorkflowIDConflictPolicy: conflict,
						TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrApp.ValueSet(a.ID),
							workflows.AttrLoopState.ValueSet(state), workflows.AttrThreshold.ValueSet(pol.Threshold)),
					}, workflows.LoopWorkflowName, in)
					if err == nil || attempt == 5 || ctx.Err() != nil || !timedOut(err) {
						break
					}
					slog.Warn("loop start timed out; trying again", "app", a.ID, "attempt", attempt)
					time.Sleep(time.Duration(attempt) * time.Second)
				}
				if err != nil {
					errs <- fmt.Errorf("start loop %s: %w", a.ID, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs)
}

// timedOut says whether err is a call's deadline passing: as the SDK
// reports the server's, or as the context reports its own.
func timedOut(err error) bool {
	var de *serviceerror.DeadlineExceeded
	return errors.As(err, &de) || errors.Is(err, context.DeadlineExceeded)
}

// stopLoops terminates the fleet's loops and waits until none runs.
func stopLoops(ctx context.Context, c client.Client, f *scale.Fleet, starters int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range starters {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(f.Apps) || ctx.Err() != nil {
					return
				}
				if err := c.TerminateWorkflow(ctx, workflows.LoopWorkflowID(f.Apps[k].ID), "", "benchmark: the ticking fleet next"); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d loops could not be terminated", n)
	}
	return ctx.Err()
}

type histLen struct {
	run    string
	events int64
}

type snapshot struct {
	at                                        time.Time
	m                                         scale.WorkerMetrics
	worker, server, clickhouse, self, machine time.Duration
	hist                                      map[string]histLen
	loops                                     map[string]scale.LoopCount
	router                                    scale.RouterStats
}

func snap(ctx context.Context, c client.Client, url string, sample []string, workerPID, serverPID, chPID int, r *scale.Router, log *slog.Logger) (snapshot, error) {
	s := snapshot{at: time.Now()}
	s.worker, s.server, s.clickhouse = scale.ProcessCPU(workerPID), scale.ProcessCPU(serverPID), scale.ProcessCPU(chPID)
	s.self, s.machine = scale.ProcessCPU(os.Getpid()), scale.MachineCPU()
	s.router = r.Stats()
	var err error
	if s.m, err = scale.Scrape(ctx, url); err != nil {
		return s, err
	}
	ids := make([]string, len(sample))
	for i, app := range sample {
		ids[i] = workflows.LoopWorkflowID(app)
	}
	s.hist = describe(ctx, c, ids)
	s.loops = queryLoops(ctx, c, sample, log)
	return s, nil
}

// describe reads the history length of each loop's current run.
func describe(ctx context.Context, c client.Client, ids []string) map[string]histLen {
	return fanOut(ids, func(id string) (string, histLen, bool) {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		d, err := c.DescribeWorkflowExecution(dctx, id, "")
		if err != nil {
			return "", histLen{}, false
		}
		return id, histLen{run: d.WorkflowExecutionInfo.Execution.GetRunId(), events: d.WorkflowExecutionInfo.GetHistoryLength()}, true
	})
}

// queryLoops reads each sampled loop's counts through its status query
// (keyed by workflow ID); a loop that does not answer is left out.
func queryLoops(ctx context.Context, c client.Client, apps []string, log *slog.Logger) map[string]scale.LoopCount {
	return fanOut(apps, func(app string) (string, scale.LoopCount, bool) {
		var st workflows.LoopStatus
		var err error
		for range 3 { // a query can time out behind a burst of wakes
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			st, err = wfclient.QueryLoop(qctx, c, app)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			log.Warn("a sampled loop did not answer its status query", "app", app, "err", err)
			return "", scale.LoopCount{}, false
		}
		lc := scale.LoopCount{At: time.Now(), Wakes: st.Stats.Wakes, BinEnd: st.BinEnd, NextWake: st.NextWake,
			BoundWake: scale.IsBoundReason(st.WakeReason)}
		for _, n := range st.Stats.Decisions {
			lc.Decisions += n
		}
		return workflows.LoopWorkflowID(app), lc, true
	})
}

// fanOut runs f for every item, 8 at a time (the dev server answers a
// few calls at once), and gathers what it returns under its keys.
func fanOut[V any](items []string, f func(string) (key string, v V, ok bool)) map[string]V {
	out := map[string]V{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if k, v, ok := f(it); ok {
				mu.Lock()
				out[k] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// whole is the sampled loops' whole histories: every run's events and the
// loops' ages (from their first run's start).
type whole struct {
	events int64
	age    time.Duration
	loops  int
}

func wholeHistories(ctx context.Context, c client.Client, apps []string) whole {
	var w whole
	now := time.Now()
	for _, app := range apps {
		events, started, err := loopHistory(ctx, c, workflows.LoopWorkflowID(app))
		if err != nil {
			continue
		}
		w.events += events
		w.age += now.Sub(started)
		w.loops++
	}
	return w
}

// loopHistory counts the events of a loop's runs, from the latest back
// through each continue-as-new, and returns its first run's start.
func loopHistory(ctx context.Context, c client.Client, id string) (int64, time.Time, error) {
	var events int64
	run := ""
	for range 10000 {
		hctx, cancel := context.WithTimeout(ctx, time.Minute)
		d, err := c.DescribeWorkflowExecution(hctx, id, run)
		if err != nil {
			cancel()
			return 0, time.Time{}, err
		}
		info := d.WorkflowExecutionInfo
		events += info.GetHistoryLength()
		it := c.GetWorkflowHistory(hctx, id, info.Execution.GetRunId(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		if !it.HasNext() {
			cancel()
			return 0, time.Time{}, fmt.Errorf("%s: empty history", id)
		}
		e, err := it.Next()
		cancel()
		if err != nil {
			return 0, time.Time{}, err
		}
		prev := e.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if prev == "" {
			return events, info.GetStartTime().AsTime(), nil
		}
		run = prev
	}
	return 0, time.Time{}, fmt.Errorf("%s: too many runs", id)
}

// historyDelta is what the sampled loops added to their histories between
// the snapshots.
type historyDelta struct {
	events int64 // across a continue-as-new: the rest of the old run and the new run
	loops  int   // loops measured
	// byType counts the events by type over the sameRun loops that did not
	// continue as new (whose histories were read whole).
	byType  map[string]int64
	sameRun int
}

func measureHistory(ctx context.Context, c client.Client, a, z map[string]histLen) historyDelta {
	d := historyDelta{byType: map[string]int64{}}
	for id, h0 := range a {
		h1, ok := z[id]
		if !ok {
			continue
		}
		if h1.run != h0.run {
			desc, err := c.DescribeWorkflowExecution(ctx, id, h0.run)
			if err != nil {
				continue
			}
			d.events += desc.WorkflowExecutionInfo.GetHistoryLength() - h0.events + h1.events
			d.loops++
			continue
		}
		d.events += h1.events - h0.events
		d.loops++
		if added, err := eventsAdded(ctx, c, id, h0, h1); err == nil {
			d.sameRun++
			for t, n := range added {
				d.byType[t] += n
			}
		}
	}
	return d
}

// eventsAdded counts by type the events of one run after h0 up to h1.
func eventsAdded(ctx context.Context, c client.Client, id string, h0, h1 histLen) (map[string]int64, error) {
	out := map[string]int64{}
	it := c.GetWorkflowHistory(ctx, id, h0.run, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err // a history not read whole is left out, not counted in part
		}
		if e.GetEventId() > h0.events && e.GetEventId() <= h1.events {
			out[e.GetEventType().String()]++
		}
	}
	return out, nil
}

// sleepUntil waits, failing early if the router stops.
func sleepUntil(ctx context.Context, t time.Time, routerErr <-chan error) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-routerErr:
		return fmt.Errorf("router: %w", err)
	case <-timer.C:
		return nil
	}
}

// quiet drops the SDK client's logs.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
