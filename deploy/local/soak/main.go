// Command soak runs Forewarm on the real stack while breaking it, and
// checks that nothing was lost: `make soak` (deploy/local/soak.sh) builds
// it and runs it against the local stack.
//
// A worker process, two host agent processes and a ClickHouse proxy (so
// ClickHouse can be cut off without being stopped) serve prediction loops
// for a few applications (and two without a loop, served cold) while a
// synthetic trace is replayed live. Then every loop is stopped. The last
// line printed is one JSON object, and the exit status is non-zero unless
// every check of the mode passed.
//
// --traffic gateway (the default, what `make soak` runs; gateway.go): the
// agents run each application as a real process of samples/trivial, the
// loops read the gateway's arrivals (router mode), and every request is
// real HTTP through a gateway process. At seeded random times the gateway
// is SIGKILLed (twice) and restarted on its spool, one host agent is
// SIGKILLed and restarted, one instance process is SIGKILLed (its agent
// must end the lease as failed) and ClickHouse is cut for 15 s. Checks:
// every request answered is counted exactly once in the arrivals (a
// request whose connection a gateway kill cut may or may not be:
// answered <= counted <= answered + cut), the spool is empty after the
// gateway's graceful stop, no instance process, cgroup or instance folder
// is left once everything stopped, no lease is left, no workflow of the
// run was terminated or timed out, every loop says (its state query) it
// ran in router mode, and no loop holding nothing slept through an
// arrival (wakes_lost; wakes.go and --help define it), those a killed
// gateway's spool wrote late included (late_arrival_bins, at least one:
// each gateway kill comes just after a request of an otherwise idle
// application with a loop):
//
//	{"traffic":"gateway","requests_sent":N,"gateway_kills":2,"instance_kills":1,"requests_answered":A,"requests_cut":C,"requests_counted":A..A+C,"processes_left":0,"cgroups_left":0,"leases_left":0,"loops_terminated":0,"router_loops":L,"cold_arrival_bins":B,"wakes_lost":0,"late_arrival_bins":1..,...}
//
// --traffic workflows: each request goes through its own serve-request
// workflow; the worker is SIGKILLed (twice), one host agent once, and
// ClickHouse is cut for 20 s. Checks: every request sent was recorded
// exactly once (by request ID), no lease is left on any agent once the
// longest lease's TTL has passed, and no workflow of the run was
// terminated or timed out by the server:
//
//	{"traffic":"workflows","requests_sent":N,"requests_recorded":N,"leases_left":0,"loops_terminated":0,"kills":K,...}
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/agent/api"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/faults"
	"github.com/forewarm/forewarm/replay"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
	"github.com/forewarm/forewarm/trace"
	"github.com/forewarm/forewarm/workflows"
)

const usage = `soak: runs Forewarm on the local stack while breaking it, and prints one
JSON line last; non-zero exit unless every check of the mode passed
(deploy/README.md, "The fault soak"). In the gateway mode besides:

  router_loops       loops whose own state query, before they are stopped,
                     says they run in router mode and have woken: all of them.
  cold_arrival_bins  bins B with arrivals (stored in ClickHouse) of an
                     application whose loop's last wake deciding B or an
                     earlier bin held nothing (its history's Forecast local
                     activities, each dated by the loop's clock as it woke;
                     a failed forecast is a wake too).
  wakes_lost         of those, the bins whose loop's next wake decided a bin
                     after B+2 (more than one bin after B became final), or
                     that saw no wake though the loop ran past B+2: must be 0.
                     Bins before a loop's first wake and bins whose B+2 had
                     not ended when the loop stopped are not judged.
  late_arrival_bins  of the cold arrival bins, those a killed gateway's spool
                     wrote when it started again, after the workers froze
                     them (the soak watches the store after each kill; a
                     request of an otherwise idle application with a loop,
                     sent just before, makes one). Final only once in the
                     store: the loop must decide, within a bin, the first
                     bin whose grace ends after that. At least 1.
`

type settings struct {
	Temporal   config.Temporal
	ClickHouse config.ClickHouse
	Seed       uint64
	Duration   time.Duration
	Apps       int
	Rate       float64
	BinDir     string
	StateDir   string
	Keep       bool
	Traffic    string
}

func main() {
	s, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\nRun `soak --help` for the flags.\n", err)
		os.Exit(2)
	}
	res, err := run(s)
	if res == nil {
		res = &Result{}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: FAILED: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (settings, error) {
	var s settings
	fs := pflag.NewFlagSet("soak", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "%s\nFlags:\n%s", usage, fs.FlagUsages())
	}
	s.Temporal.Flags(fs)
	s.ClickHouse.Flags(fs)
	var seed string
	fs.StringVar(&seed, "seed", config.Env("SOAK_SEED", ""), "seed of the fault times and the trace (default: random, printed) ($SOAK_SEED)")
	fs.DurationVar(&s.Duration, "duration", 3*time.Minute, "length of the live replay")
	fs.IntVar(&s.Apps, "apps", 8, "applications replayed: a prediction loop for each but the last two (served cold)")
	fs.Float64Var(&s.Rate, "rate", 0, "requests per second, all applications together (default 3 with workflows, 8 through the gateway)")
	fs.StringVar(&s.Traffic, "traffic", trafficGateway, "how requests are served: gateway (real HTTP through a gateway process to real instance processes, router-mode loops; the gateway and an instance are killed too) or workflows (a serve-request workflow each)")
	fs.StringVar(&s.BinDir, "bin", "bin", "folder holding the worker and hostagent binaries")
	fs.StringVar(&s.StateDir, "state", ".state/soak", "folder for the processes' logs and the agents' data")
	fs.BoolVar(&s.Keep, "keep", false, "keep the run's ClickHouse database (dropped otherwise)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q: soak takes only flags", fs.Arg(0))
	}
	if seed == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.Seed = binary.LittleEndian.Uint64(b[:]) >> 1
	} else {
		v, err := strconv.ParseUint(seed, 10, 63)
		if err != nil {
			return s, fmt.Errorf("--seed %q: want a non-negative integer", seed)
		}
		s.Seed = v
	}
	if s.Duration < 90*time.Second || s.Duration > 8*time.Minute {
		return s, fmt.Errorf("--duration %v: must be within [1m30s, 8m] (the faults need room; the soak stays under 10 minutes)", s.Duration)
	}
	if s.Apps < 3 || s.Apps > 64 {
		return s, fmt.Errorf("--apps %d: must be within [3, 64]", s.Apps)
	}
	if s.Traffic != trafficGateway && s.Traffic != trafficWorkflows {
		return s, fmt.Errorf("--traffic %q: want gateway or workflows", s.Traffic)
	}
	if s.Rate == 0 {
		s.Rate = map[string]float64{trafficGateway: 8, trafficWorkflows: 3}[s.Traffic]
	}
	if !(s.Rate > 0 && s.Rate <= 20) {
		return s, fmt.Errorf("--rate %v: must be within (0, 20] requests per second", s.Rate)
	}
	return s, nil
}

// Result is the one JSON line the soak ends with. The gateway mode's
// fields (pointers: printed even when 0) are omitted in the workflows
// mode, requests_recorded in the gateway mode (its requests are counted
// as arrivals instead).
type Result struct {
	Traffic          string `json:"traffic"`
	RequestsSent     int    `json:"requests_sent"`
	RequestsRecorded int    `json:"requests_recorded,omitempty"` // sent requests recorded exactly once
	LeasesLeft       int    `json:"leases_left"`
	LoopsTerminated  int    `json:"loops_terminated"` // workflows of the run terminated or timed out by the server
	Kills            int    `json:"kills"`            // processes SIGKILLed, all kinds

	WorkerKills      int    `json:"worker_kills"`
	AgentKills       int    `json:"agent_kills"`
	GatewayKills     *int   `json:"gateway_kills,omitempty"`
	InstanceKills    *int   `json:"instance_kills,omitempty"`    // instance processes SIGKILLed whose lease their agent ended
	RequestsAnswered *int64 `json:"requests_answered,omitempty"` // an HTTP answer came back
	RequestsOK       *int64 `json:"requests_ok,omitempty"`       // … with status 200
	RequestsCut      *int64 `json:"requests_cut,omitempty"`      // connection broken by a gateway kill: may be counted
	RequestsRefused  *int64 `json:"requests_refused,omitempty"`  // no connection (gateway down): never counted
	RequestsCounted  *int64 `json:"requests_counted,omitempty"`  // the run's arrivals, summed over bins
	SpoolReplays     *int   `json:"spool_replays,omitempty"`     // dead gateway runs written by the next start
	SpoolFilesLeft   *int   `json:"spool_files_left,omitempty"`  // after the gateway's graceful stop
	ProcessesLeft    *int   `json:"processes_left,omitempty"`    // instance processes running after the soak
	CgroupsLeft      *int   `json:"cgroups_left,omitempty"`      // agents' cgroups and instance folders after the soak
	RouterLoops      *int   `json:"router_loops,omitempty"`      // loops whose state query said router mode, having woken
	ColdArrivalBins  *int   `json:"cold_arrival_bins,omitempty"` // bins with arrivals at a loop holding nothing (wakes.go)
	WakesLost        *int   `json:"wakes_lost,omitempty"`        // of which the loop did not wake within a bin of the bin's final
	LateArrivalBins  *int   `json:"late_arrival_bins,omitempty"` // of the cold arrival bins, those a restarted gateway's spool wrote late
}

const bin = time.Second

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
}

func run(s settings) (*Result, error) {
	began := time.Now()
	ctx := context.Background()
	logf("seed %d (rerun with --seed %d)", s.Seed, s.Seed)
	gw := s.Traffic == trafficGateway
	need := []string{"worker", "hostagent"}
	if gw {
		need = append(need, "gateway", "trivial")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(s.BinDir, b)); err != nil {
			return nil, fmt.Errorf("--bin %s: %v (go build -o %s/ ./worker ./hostagent ./gateway/cmd/gateway ./samples/trivial)", s.BinDir, err, s.BinDir)
		}
	}
	logs := filepath.Join(s.StateDir, "logs") // this run's only
	_ = os.RemoveAll(logs)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}

	// Names of the run's own (a rerun of a seed must not meet the loops of
	// an earlier one), and a database migrated like `starter migrate`.
	prefix := fmt.Sprintf("soak%d-%d", s.Seed%1_000_000, began.Unix()%100_000)
	cfg := s.ClickHouse
	cfg.Database = "forewarm_" + strings.ReplaceAll(prefix, "-", "_")
	mctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err := store.Migrate(mctx, cfg)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", cfg.Database, err)
	}
	if !s.Keep {
		defer dropDatabase(cfg)
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	st, err := store.Open(octx, cfg)
	cancel()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	tc, err := s.Temporal.Dial(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return nil, err
	}
	defer tc.Close()

	// Everything the run starts reaches ClickHouse through the proxy.
	px, err := faults.NewProxy(cfg.Addrs()[0])
	if err != nil {
		return nil, err
	}
	defer px.Close()
	var rootBytes [32]byte
	_, _ = rand.Read(rootBytes[:])
	root := hex.EncodeToString(rootBytes[:])
	predictionQ, trainingQ := prefix+"-prediction", prefix+"-training"

	procs := &processes{logs: logs}
	defer procs.stopAll()
	agents := []string{prefix + "-a", prefix + "-b"}
	agentURL := map[string]string{}
	agentDir := func(id string) string { return filepath.Join(s.StateDir, "agents", id) }
	appIDs := make([]string, s.Apps)
	for i := range appIDs {
		appIDs[i] = appID(prefix, i)
	}
	// The gateway mode's idle application with a loop: its only requests
	// come just before each gateway kill (gatewayEnv.killGateway).
	lateApp := prefix + "-late"
	// Open to the instance user (the agents make their own folders 0711).
	if err := os.MkdirAll(filepath.Join(s.StateDir, "agents"), 0o755); err != nil {
		return nil, err
	}
	var agentMode, workerMode []string
	trivial, _ := filepath.Abs(filepath.Join(s.BinDir, "trivial"))
	if gw {
		// Every application is a real process of the trivial sample.
		specs := filepath.Join(s.StateDir, "specs")
		_ = os.RemoveAll(specs)
		if err := writeSpecs(specs, trivial, append(slices.Clone(appIDs), lateApp)); err != nil {
			return nil, err
		}
		agentMode = []string{"--spec-dir", specs}
		workerMode = []string{"--arrivals-bin", bin.String()}
	}
	for _, id := range agents {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		agentURL[id] = "http://" + addr
		dir := agentDir(id)
		_ = os.RemoveAll(dir)
		procs.add(id, filepath.Join(s.BinDir, "hostagent"), append([]string{"--host-id", id, "--listen", addr, "--advertise-url", "http://" + addr,
			"--memory-mb", "4096", "--disk-mb", "4096", "--cpu-milli", "16000", "--sleep-work", "--setup-ms-per-mb", "0.5",
			"--data-dir", dir, "--report-every", "1s", "--log-level", "warn",
			"--clickhouse-addr", px.Addr(), "--clickhouse-database", cfg.Database}, agentMode...),
			[]string{"HOSTAGENT_TOKEN=" + api.DeriveToken([]byte(root), id)})
	}
	procs.add("worker", filepath.Join(s.BinDir, "worker"), append([]string{"--log-level", "warn", "--model-check", "2s"}, workerMode...),
		[]string{"CLICKHOUSE_ADDR=" + px.Addr(), "CLICKHOUSE_DATABASE=" + cfg.Database,
			"FOREWARM_PREDICTION_QUEUE=" + predictionQ, "FOREWARM_TRAINING_QUEUE=" + trainingQ,
			"FOREWARM_AGENT_ROOT_SECRET=" + root, "FOREWARM_METRICS_LISTEN=off", "FOREWARM_TRAIN_SAMPLES=2000"})
	names := append(slices.Clone(agents), "worker")
	var gwURL, spoolDir string
	if gw {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		gwURL = fmt.Sprintf("http://127.0.0.1:%d", port)
		spoolDir = filepath.Join(s.StateDir, "gateway-spool")
		_ = os.RemoveAll(spoolDir)
		args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--id", prefix + "-gw", "--bin", bin.String(),
			"--keep-ttl", gatewayKeepTTL.String(), "--notify-loops", "--spool", spoolDir, "--log-level", "info",
			"--clickhouse-addr", px.Addr(), "--clickhouse-database", cfg.Database}
		for _, id := range agents {
			args = append(args, "--agent", id+"="+agentURL[id])
		}
		procs.add("gateway", filepath.Join(s.BinDir, "gateway"), args, []string{"FOREWARM_AGENT_ROOT_SECRET=" + root})
		names = append(names, "gateway")
	}
	for _, name := range names {
		if err := procs.start(name); err != nil {
			return nil, err
		}
	}
	if err := waitFor("both agents registered", time.Minute, func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		hs, err := st.Hosts(c, time.Now().Add(-30*time.Second))
		return err == nil && len(hs) == len(agents)
	}); err != nil {
		return nil, err
	}

	// History, a model, loops.
	r := mrand.New(mrand.NewPCG(s.Seed, 1))
	shapes := newShapes(r, prefix, s.Apps, s.Rate)
	now := time.Now().UTC().Truncate(bin)
	hist := shapes.trace(r, now.Add(-600*bin), 600)
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_, err = st.LoadTrace(lctx, hist, store.LoadOptions{Format: "synth", Source: "soak"})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	if err := train(ctx, tc, st, trainingQ, prefix, int64(s.Seed)); err != nil {
		return nil, err
	}
	var loops []string
	defer func() {
		// A run that failed half-way leaves no loop running (a stopped
		// loop ignores this).
		for _, a := range loops {
			_ = tc.TerminateWorkflow(context.Background(), workflows.LoopWorkflowID(a), "", "soak cleanup")
		}
	}()
	// The last two applications have no loop: each of their requests is
	// served cold on a host ranked from the worker's host list, so every
	// fault (the ClickHouse cut above all) also meets cold serves.
	for _, a := range hist.Apps[:len(hist.Apps)-2] {
		if err := startLoop(ctx, tc, predictionQ, a.ID, gw); err != nil {
			return nil, err
		}
		loops = append(loops, a.ID)
	}
	if gw {
		if err := startLoop(ctx, tc, predictionQ, lateApp, gw); err != nil {
			return nil, err
		}
		loops = append(loops, lateApp)
	}
	if err := waitFor("every loop deciding", 2*time.Minute, func() bool {
		for _, a := range loops {
			if st, err := loopState(ctx, tc, a); err != nil || st.Stats.Wakes == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}
	logf("%d loops, %d applications without one, 2 agents, worker on %s, traffic %s; logs in %s", len(loops), len(hist.Apps)-len(loops), predictionQ, s.Traffic, logs)

	// The faults, planned from the seed over the replay.
	fs := []faults.Fault{
		{Kind: "kill-worker", Lasts: 3 * time.Second},
		{Kind: "kill-agent", Target: agents[1], Lasts: 3 * time.Second},
		{Kind: "cut-clickhouse", Lasts: 20 * time.Second},
		{Kind: "kill-worker", Lasts: 3 * time.Second},
	}
	if gw {
		// Five faults in 3 minutes, 12 s to settle each: the cut is 15 s
		// (the worker's kill is the workflows mode's).
		fs = []faults.Fault{
			{Kind: "kill-gateway", Lasts: 3 * time.Second},
			{Kind: "kill-agent", Target: agents[1], Lasts: 3 * time.Second},
			{Kind: "kill-instance"},
			{Kind: "cut-clickhouse", Lasts: 15 * time.Second},
			{Kind: "kill-gateway", Lasts: 3 * time.Second},
		}
	}
	plan, err := faults.NewPlan(s.Seed, 20*time.Second, s.Duration-15*time.Second, 12*time.Second, fs)
	if err != nil {
		return nil, err
	}
	logf("faults: %s", plan)
	if gw {
		e := gatewayEnv{s: s, st: st, tc: tc, px: px, procs: procs, agents: agents, agentURL: agentURL, agentDir: agentDir, root: root,
			apps: append(slices.Clone(appIDs), lateApp), late: lateApp, loops: loops, shapes: shapes, r: r, plan: plan, url: gwURL, spool: spoolDir, trivial: trivial,
			logs: logs, began: began, queues: []string{predictionQ, trainingQ}}
		return e.run(ctx)
	}

	// The replay, with the faults at their times.
	future := shapes.trace(r, time.Now().UTC().Truncate(bin).Add(5*time.Second), int(s.Duration/bin))
	var (
		mu      sync.Mutex
		runs    []client.WorkflowRun
		sent    = map[string]bool{}
		sendErr error
	)
	send := func(ctx context.Context, q replay.Request) error {
		id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d/%s/%d/%d", s.Seed, q.App, q.Bin, q.Seq)).String()
		in := workflows.RequestInput{RequestID: id, App: q.App, ArrivedAt: time.Now().UTC(), MemoryMB: q.MemoryMB,
			DiskMB: q.MemoryMB / 4, ReadRatio: q.ReadRatio, WorkMS: q.DurationMS}
		run, err := tc.ExecuteWorkflow(context.WithoutCancel(ctx), client.StartWorkflowOptions{
			ID: workflows.RequestWorkflowID(q.App, id), TaskQueue: predictionQ}, workflows.RequestWorkflowName, in)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if sendErr == nil {
				sendErr = fmt.Errorf("start request %s: %w", id, err)
			}
			return err
		}
		runs, sent[id] = append(runs, run), true
		return nil
	}
	startAt := future.Start
	faultsDone := make(chan killCounts)
	go func() { faultsDone <- procs.inject(plan, startAt, px, nil, nil) }()
	sum, err := replay.Run(ctx, future, replay.Options{Speed: 1, InFlight: 64, StartAt: startAt,
		OnProgress: func(p replay.Progress) {
			if p.BinsDone%30 == 0 {
				logf("replay %d/%d s: %d requests sent", p.BinsDone, p.BinsTotal, p.Sent)
			}
		}}, send)
	kills := <-faultsDone
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	res := &Result{Traffic: s.Traffic, RequestsSent: len(sent), Kills: kills.total(), WorkerKills: kills["kill-worker"], AgentKills: kills["kill-agent"]}
	logf("replay over: %d requests sent, %d failed to start; waiting for them", sum.Sent, sum.Failed)

	// Every request finishes (those held up by the faults included).
	var failed []string
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	for _, run := range runs {
		var out workflows.RequestResult
		if err := run.Get(wctx, &out); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", run.GetID(), err))
		}
	}
	cancel()

	// Stop every loop; then no lease may outlive the longest TTL.
	var loopErrs []string
	for _, a := range loops {
		if err := stopLoop(ctx, tc, a); err != nil {
			loopErrs = append(loopErrs, err.Error())
		}
	}
	ttl := longestLease(bin)
	stoppedAt := time.Now()
	res.LeasesLeft = leasesLeft(agents, agentURL, root)
	for res.LeasesLeft > 0 && time.Since(stoppedAt) < ttl {
		time.Sleep(500 * time.Millisecond)
		res.LeasesLeft = leasesLeft(agents, agentURL, root)
	}

	// Recorded exactly once, by request ID.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	rows, err := st.Requests(rctx, began.Add(-time.Hour), time.Now().Add(time.Hour))
	cancel()
	if err != nil {
		return res, fmt.Errorf("read the recorded requests: %w", err)
	}
	counts := map[string]int{}
	for _, row := range rows {
		counts[row.RequestID]++
	}
	var missing, twice []string
	for id := range sent {
		switch counts[id] {
		case 1:
			res.RequestsRecorded++
		case 0:
			missing = append(missing, id)
		default:
			twice = append(twice, fmt.Sprintf("%s ×%d", id, counts[id]))
		}
	}
	terminated, err := countTerminated(ctx, tc, predictionQ, trainingQ)
	if err != nil {
		return res, err
	}
	res.LoopsTerminated = terminated

	var problems []error
	if len(failed) > 0 {
		problems = append(problems, fmt.Errorf("%d request workflows failed, e.g. %s", len(failed), failed[0]))
	}
	if sendErr != nil {
		problems = append(problems, sendErr)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		problems = append(problems, fmt.Errorf("%d requests sent but not recorded, e.g. %s", len(missing), missing[0]))
	}
	if len(twice) > 0 {
		problems = append(problems, fmt.Errorf("%d requests recorded more than once, e.g. %s", len(twice), twice[0]))
	}
	if len(loopErrs) > 0 {
		problems = append(problems, fmt.Errorf("%d loops did not stop cleanly, e.g. %s", len(loopErrs), loopErrs[0]))
	}
	if res.LeasesLeft > 0 {
		problems = append(problems, fmt.Errorf("%d leases left on the agents %v after the loops stopped", res.LeasesLeft, ttl))
	}
	if res.LoopsTerminated > 0 {
		problems = append(problems, fmt.Errorf("%d workflows of the run terminated or timed out by the server", res.LoopsTerminated))
	}
	if res.RequestsSent == 0 {
		problems = append(problems, errors.New("no request was sent"))
	}
	if b, err := os.ReadFile(filepath.Join(logs, "worker.log")); err == nil {
		logf("worker log: %d outage(s) served from the last known host list, %d retried records that found their request already stored",
			strings.Count(string(b), "using the last known host list"), strings.Count(string(b), "already recorded by an earlier attempt"))
	}
	logf("done in %v", time.Since(began).Round(time.Second))
	return res, errors.Join(problems...)
}

// shapes are the applications of the run: each has a demand pattern and a
// rate, so that all together send about the asked rate.
type shapes struct {
	apps []appShape
}

type appShape struct {
	id               string
	memMB, durMS, rr float64
	period           int     // periodic: a request every period bins
	rate             float64 // Poisson: requests per bin
	on, off          int     // bursty: rate during on bins, none during off bins
}

func newShapes(r *mrand.Rand, prefix string, n int, rate float64) *shapes {
	s := &shapes{}
	per := rate / float64(n)
	for i := range n {
		a := appShape{id: appID(prefix, i), memMB: float64(int(16) << r.IntN(3)), durMS: 20 + float64(r.IntN(80)), rr: 0.3 + 0.6*r.Float64()}
		switch i % 3 {
		case 0:
			a.period = max(1, int(math.Round(1/per)))
		case 1:
			a.rate = per
		case 2:
			a.on, a.off = 20+r.IntN(20), 20+r.IntN(40)
			a.rate = per * float64(a.on+a.off) / float64(a.on)
		}
		s.apps = append(s.apps, a)
	}
	return s
}

// trace draws bins of the shapes from start.
func (s *shapes) trace(r *mrand.Rand, start time.Time, bins int) *trace.Trace {
	tr := &trace.Trace{Start: start, Bin: bin, Bins: bins}
	for _, a := range s.apps {
		app := trace.App{ID: a.id, MemoryMB: a.memMB, ReadRatio: a.rr, DurationMS: a.durMS, Counts: make([]uint32, bins)}
		phase := r.IntN(max(1, a.period+a.on+a.off))
		for b := range bins {
			switch {
			case a.period > 0:
				if (b+phase)%a.period == 0 {
					app.Counts[b] = 1
				}
			case a.on > 0:
				if (b+phase)%(a.on+a.off) < a.on {
					app.Counts[b] = poisson(r, a.rate)
				}
			default:
				app.Counts[b] = poisson(r, a.rate)
			}
		}
		tr.Apps = append(tr.Apps, app)
	}
	return tr
}

func poisson(r *mrand.Rand, lambda float64) uint32 {
	l, k, p := math.Exp(-lambda), uint32(0), 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func train(ctx context.Context, tc client.Client, st *store.Store, queue, prefix string, seed int64) error {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	run, err := tc.ExecuteWorkflow(tctx, client.StartWorkflowOptions{ID: "train/" + prefix, TaskQueue: queue},
		workflows.TrainingWorkflowName, workflows.TrainingInput{Bin: bin, Epochs: 1, Seed: seed})
	if err != nil {
		return err
	}
	var res workflows.TrainingResult
	if err := run.Get(tctx, &res); err != nil {
		return fmt.Errorf("training: %w", err)
	}
	if !res.Demand.Published {
		// The synthetic history need not beat a baseline; the loops still
		// need a model.
		if err := st.SetModelStatus(tctx, res.Demand.Candidate, store.StatusChampion); err != nil {
			return err
		}
	}
	logf("model %s: %s", res.Demand.Candidate, res.Demand.Reason)
	return nil
}

func startLoop(ctx context.Context, tc client.Client, queue, app string, router bool) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := tc.ExecuteWorkflow(sctx, client.StartWorkflowOptions{ID: workflows.LoopWorkflowID(app), TaskQueue: queue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrApp.ValueSet(app))},
		workflows.LoopWorkflowName, workflows.LoopInput{App: app, Bin: bin, Policy: workflows.DefaultPolicy(), Router: router})
	return err
}

func loopState(ctx context.Context, tc client.Client, app string) (workflows.LoopStatus, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st workflows.LoopStatus
	v, err := tc.QueryWorkflow(qctx, workflows.LoopWorkflowID(app), "", workflows.QueryState, workflows.StateQuery{})
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

func stopLoop(ctx context.Context, tc client.Client, app string) error {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id := workflows.LoopWorkflowID(app)
	if err := tc.SignalWorkflow(sctx, id, "", workflows.SignalStop, workflows.StopSignal{Reason: "soak over"}); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	var res workflows.LoopResult
	if err := tc.GetWorkflow(sctx, id, "").Get(sctx, &res); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if res.Reason != "stopped: soak over" {
		return fmt.Errorf("%s ended %q", id, res.Reason)
	}
	return nil
}

// leasesLeft counts the live leases on every agent (an agent that does
// not answer counts as holding one, so it cannot pass unseen).
func leasesLeft(agents []string, urls map[string]string, root string) int {
	n := 0
	for _, id := range agents {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ls, err := agentclient.New(urls[id], api.DeriveToken([]byte(root), id)).Leases(ctx)
		cancel()
		if err != nil {
			logf("agent %s: %v", id, err)
			n++
			continue
		}
		n += len(ls)
	}
	return n
}

// countTerminated counts the run's workflows (both task queues) that the
// server terminated or timed out.
func countTerminated(ctx context.Context, tc client.Client, queues ...string) (int, error) {
	n := 0
	for _, q := range queues {
		query := fmt.Sprintf("TaskQueue = '%s' AND (ExecutionStatus = 'Terminated' OR ExecutionStatus = 'TimedOut')", q)
		var token []byte
		for {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			resp, err := tc.ListWorkflow(cctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
			cancel()
			if err != nil {
				return 0, fmt.Errorf("list terminated workflows: %w", err)
			}
			for _, e := range resp.GetExecutions() {
				logf("terminated: %s (%s)", e.GetExecution().GetWorkflowId(), e.GetStatus())
			}
			n += len(resp.GetExecutions())
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
	}
	return n, nil
}

func dropDatabase(cfg config.ClickHouse) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := chconn.Dial(ctx, cfg, "default")
	if err != nil {
		logf("drop %s: %v", cfg.Database, err)
		return
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+cfg.Database+"`"); err != nil {
		logf("drop %s: %v", cfg.Database, err)
	}
}

func waitFor(what string, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", within, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// processes are the worker and agents the soak runs, by name.
type processes struct {
	logs  string
	mu    sync.Mutex
	defs  map[string]procDef
	procs map[string]*proc
}

type procDef struct {
	bin       string
	args, env []string
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is gone
}

func (p *processes) add(name, bin string, args, env []string) {
	if p.defs == nil {
		p.defs, p.procs = map[string]procDef{}, map[string]*proc{}
	}
	p.defs[name] = procDef{bin, args, env}
}

func (p *processes) start(name string) error {
	d := p.defs[name]
	f, err := os.OpenFile(filepath.Join(p.logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.bin, d.args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(pr.done) }()
	p.mu.Lock()
	p.procs[name] = pr
	p.mu.Unlock()
	return nil
}

// kill sends SIGKILL to name and waits for it to go; it says whether a
// running process was killed (not one that had already exited, or none).
func (p *processes) kill(name string) bool {
	p.mu.Lock()
	pr := p.procs[name]
	delete(p.procs, name)
	p.mu.Unlock()
	if pr == nil {
		return false
	}
	select {
	case <-pr.done:
		return false // it had exited by itself: nothing to kill
	default:
	}
	err := pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
	return err == nil
}

// stop ends name with SIGTERM, SIGKILL after within; it returns the
// process's error (a non-zero exit).
func (p *processes) stop(name string, within time.Duration) error {
	p.mu.Lock()
	pr := p.procs[name]
	delete(p.procs, name)
	p.mu.Unlock()
	if pr == nil {
		return fmt.Errorf("%s is not running", name)
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(within):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM", name, within)
	}
	if st := pr.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("%s exited: %v", name, st)
	}
	return nil
}

// stopAll ends every process: SIGTERM (agents release their leases), then
// SIGKILL after 10 s.
func (p *processes) stopAll() {
	p.mu.Lock()
	procs := p.procs
	p.procs = map[string]*proc{}
	p.mu.Unlock()
	for _, pr := range procs {
		_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for _, pr := range procs {
		select {
		case <-pr.done:
		case <-deadline:
			_ = pr.cmd.Process.Kill()
			<-pr.done
		}
	}
}

func appID(prefix string, i int) string { return fmt.Sprintf("%s-app%02d", prefix, i) }

// killCounts are the SIGKILLs sent, by fault kind.
type killCounts map[string]int

func (k killCounts) total() int {
	n := 0
	for _, v := range k {
		n += v
	}
	return n
}

// inject carries the plan out from start on; it returns the SIGKILLs sent.
// killInstance carries out kill-instance (nil: none planned): it says
// whether an instance was killed and its lease ended by its agent.
// killGateway, when set, carries out the SIGKILL of kill-gateway with
// kill, which says whether the gateway was running.
func (p *processes) inject(plan faults.Plan, start time.Time, px *faults.Proxy, killInstance func() bool, killGateway func(kill func() bool) bool) killCounts {
	kills := killCounts{}
	for _, e := range plan {
		time.Sleep(time.Until(start.Add(e.At)))
		switch e.Kind {
		case "kill-instance":
			if killInstance != nil && killInstance() {
				kills[e.Kind]++
			}
		case "kill-worker", "kill-agent", "kill-gateway":
			name := e.Target
			switch e.Kind {
			case "kill-worker":
				name = "worker"
			case "kill-gateway":
				name = "gateway"
			}
			kill := func() bool { return p.kill(name) }
			if e.Kind == "kill-gateway" && killGateway != nil {
				kill = func() bool { return killGateway(func() bool { return p.kill(name) }) }
			}
			if kill() {
				logf("%v: SIGKILL %s", e.At.Round(time.Second), name)
				kills[e.Kind]++
			} else {
				logf("%v: %s was not running: nothing killed", e.At.Round(time.Second), name)
			}
			time.Sleep(e.Lasts)
			if err := p.start(name); err != nil {
				logf("restart %s: %v", name, err)
			} else {
				logf("%s restarted", name)
			}
		case "cut-clickhouse":
			logf("%v: ClickHouse cut for %v", e.At.Round(time.Second), e.Lasts)
			px.Cut()
			time.Sleep(e.Lasts)
			if err := px.Restore(); err != nil {
				logf("restore ClickHouse: %v", err)
			} else {
				logf("ClickHouse back")
			}
		}
	}
	return kills
}

// longestLease bounds how long a lease of the soak's loops can outlive
// their stop: a hold planned as far as a loop may sleep (or over its
// lookahead, if longer), its grace (a bin, at least 5 s) and a start up to
// a bin ahead; then the agents' reaper.
func longestLease(bin time.Duration) time.Duration {
	p := workflows.DefaultPolicy()
	return time.Duration(max(p.LookaheadBins, p.MaxSleepBins)+2)*bin + 10*time.Second
}
