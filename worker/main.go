// Command worker runs Forewarm's Temporal workers: the prediction task
// queue (prediction loops, preparations, serve-request workflows and their
// activities) and the training task queue (the CPU-heavy training
// workflow), apart so training can never starve the loops. The activity
// structs are built once here with their dependencies: the ClickHouse
// store, the model runtime, the host-agent clients, the Temporal client.
//
//	worker                       # both queues, settings from the environment
//	worker --queues prediction   # loops only (scale out the loops)
//	worker --queues training     # training only (a bigger machine)
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/internal/buildinfo"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/forewarm/forewarm/activities"
	"github.com/forewarm/forewarm/internal/batch"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/telemetry"
	"github.com/forewarm/forewarm/keda"
	"github.com/forewarm/forewarm/kube"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/worker/adapters"
	"github.com/forewarm/forewarm/worker/resident"
	"github.com/forewarm/forewarm/workflows"
	"github.com/forewarm/forewarm/workflows/wfclient"
)

// settings is the worker's whole configuration (flags with env defaults).
type settings struct {
	Temporal        config.Temporal
	ClickHouse      config.ClickHouse
	ONNX            config.ONNX
	Queues          []string
	PredictionQueue string
	TrainingQueue   string
	UseORT          bool
	WorkflowTasks   int
	WorkflowPollers int
	ModelCheck      time.Duration
	HostMaxStale    time.Duration // how old a host list may be used while ClickHouse is unreachable
	HoldoutFraction float64
	TrainSamples    int
	LogLevel        string
	MetricsListen   string        // /metrics, /healthz, /readyz; "off": none
	StopTimeout     time.Duration // how long a stopping worker lets activities finish
	WorkflowCache   int           // workflows kept in memory between tasks (0: the SDK's default)
	StickyTimeout   time.Duration // how long a task waits on this worker's sticky queue before any worker may take it
	// ArrivalsBin, when set, mirrors the arrivals routers record in the
	// store at that bin width, for router-mode loops, and runs the arrival
	// watch that wakes them; ArrivalsSpan is how many bins it keeps, and
	// ArrivalsLate how many frozen bins it reads again for late arrivals
	// (resident.Mirror.LateBins: 0 its default, -1 none).
	ArrivalsBin  time.Duration
	ArrivalsSpan int
	ArrivalsLate int
	// GatewayLearnEvery is how often a worker serving the training queue
	// moves the affinity adjustments from the gateway's requests
	// (resident.GatewayLearner); 0: never.
	GatewayLearnEvery time.Duration

	// Agents is the host agents' trust: a root secret to derive each
	// host's token, the CA their certificates chain to, whether plain HTTP
	// off loopback is allowed, and the pattern their URLs must match.
	Agents config.Agents

	// Hosts is the host driver: "agents" (Forewarm's host agents),
	// "kubernetes" (warm pods of the applications' own templates, kube
	// package) or "keda" (KEDA scales the workloads; leases are warm
	// windows only).
	Hosts string
	// Kube configures the Kubernetes driver (--hosts kubernetes).
	Kube kubeSettings
	// KEDAListen is the KEDA external scaler's gRPC address ("off": none).
	KEDAListen string

	metrics *telemetry.Metrics // nil: nothing counted (tests that do not look)
}

// defaultWorkflowPollers is autoscaling (see the worker options below).
const defaultWorkflowPollers = 0

func parseFlags(args []string) (settings, error) {
	var s settings
	var env config.EnvDefaults
	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	s.Temporal.Flags(fs)
	s.ClickHouse.Flags(fs)
	s.ONNX.Flags(fs)
	fs.StringSliceVar(&s.Queues, "queues", strings.Split(config.Env("FOREWARM_QUEUES", "prediction,training"), ","), "task queues to serve: prediction, training or both ($FOREWARM_QUEUES)")
	fs.StringVar(&s.PredictionQueue, "prediction-task-queue", config.Env("FOREWARM_PREDICTION_QUEUE", workflows.PredictionTaskQueue), "prediction task queue name ($FOREWARM_PREDICTION_QUEUE)")
	fs.StringVar(&s.TrainingQueue, "training-task-queue", config.Env("FOREWARM_TRAINING_QUEUE", workflows.TrainingTaskQueue), "training task queue name ($FOREWARM_TRAINING_QUEUE)")
	s.Agents.Flags(fs)
	fs.BoolVar(&s.UseORT, "ort", config.Env("FOREWARM_ORT", "true") == "true", "run the demand model in ONNX Runtime (false: the pure-Go forward pass) ($FOREWARM_ORT)")
	fs.IntVar(&s.WorkflowTasks, "workflow-tasks", 200, "concurrent workflow tasks on the prediction queue")
	fs.IntVar(&s.WorkflowPollers, "workflow-pollers", env.Int("FOREWARM_WORKFLOW_POLLERS", defaultWorkflowPollers), "workflow and activity task pollers on the prediction queue; 0: autoscaling with the server's backlog. A fixed count can leave the queue of new and moved loops unpolled for a minute at a time ($FOREWARM_WORKFLOW_POLLERS)")
	fs.DurationVar(&s.ModelCheck, "model-check", 10*time.Second, "how often the registry is asked whether the champion changed")
	fs.DurationVar(&s.HostMaxStale, "host-list-max-stale", env.Duration("FOREWARM_HOST_LIST_MAX_STALE", resident.DefaultMaxStale), "while ClickHouse is unreachable, preparations and cold serves use the last host list read, for at most this long after it was read ($FOREWARM_HOST_LIST_MAX_STALE)")
	fs.Float64Var(&s.HoldoutFraction, "holdout", 0.2, "share of the training range held out for evaluation")
	fs.IntVar(&s.TrainSamples, "train-samples", env.Int("FOREWARM_TRAIN_SAMPLES", 0), "training sequences per run (0: the trainer's default) ($FOREWARM_TRAIN_SAMPLES)")
	fs.StringVar(&s.LogLevel, "log-level", config.Env("FOREWARM_LOG_LEVEL", "info"), "debug, info, warn or error ($FOREWARM_LOG_LEVEL)")
	fs.StringVar(&s.MetricsListen, "metrics-listen", config.Env("FOREWARM_METRICS_LISTEN", "127.0.0.1:9464"), "address for /metrics (Prometheus), /healthz and /readyz, unauthenticated: keep it on loopback or a network only probes and scrapers reach. /readyz answers from a check of Temporal and ClickHouse run at most every 2 s, with no detail in its body; off for none ($FOREWARM_METRICS_LISTEN)")
	fs.DurationVar(&s.StopTimeout, "stop-timeout", env.Duration("FOREWARM_STOP_TIMEOUT", time.Minute), "on SIGTERM, how long running activities may finish before they are cancelled (keep it below Kubernetes' terminationGracePeriodSeconds) ($FOREWARM_STOP_TIMEOUT)")
	fs.IntVar(&s.WorkflowCache, "workflow-cache", env.Int("FOREWARM_WORKFLOW_CACHE", 0), "workflows kept in memory between their tasks; a loop evicted from it replays its history at its next wake, so give it at least the loops this worker runs (0: the SDK's default, 10,000) ($FOREWARM_WORKFLOW_CACHE)")
	fs.DurationVar(&s.StickyTimeout, "sticky-timeout", env.Duration("FOREWARM_STICKY_TIMEOUT", 5*time.Second), "how long a loop's workflow task may wait for the worker that caches the loop before the server hands it to any worker, which must replay the loop's history. Raise it (e.g. 1m) when a bin's burst of wakes takes this worker longer than that to drain, or the burst turns into replays; after a crash, the dead worker's loops stay bound to it (their queries fail) up to this long ($FOREWARM_STICKY_TIMEOUT)")
	fs.DurationVar(&s.ArrivalsBin, "arrivals-bin", env.Duration("FOREWARM_ARRIVALS_BIN", 0), "bin width of the arrivals a platform's router records in the store (e.g. 1m): mirror them for router-mode loops (starter loop start --router) and wake those loops when an arrival can change a decision; 0: no router-mode loops ($FOREWARM_ARRIVALS_BIN)")
	fs.IntVar(&s.ArrivalsSpan, "arrivals-span", env.Int("FOREWARM_ARRIVALS_SPAN", 1440), "bins of recorded arrivals the worker keeps in memory: at least a loop's history window ($FOREWARM_ARRIVALS_SPAN)")
	fs.IntVar(&s.ArrivalsLate, "arrivals-late-bins", env.Int("FOREWARM_ARRIVALS_LATE_BINS", 0), "frozen bins of recorded arrivals the worker reads again at each bin, for reports that came after their bin was frozen (a router restarted on its spool): they count in the next bin, and reports later than this reach training and reports only; 0: a minute's bins, at least 2; -1: none ($FOREWARM_ARRIVALS_LATE_BINS)")
	fs.DurationVar(&s.GatewayLearnEvery, "gateway-learn-every", env.Duration("FOREWARM_GATEWAY_LEARN_EVERY", 30*time.Second), "on a worker serving the training queue, how often the affinity adjustments learn from the gateway's recorded requests; run it on one worker only (0 on the others): two would learn from every request twice; 0: never ($FOREWARM_GATEWAY_LEARN_EVERY)")
	fs.StringVar(&s.Kube.Apps, "kube-apps", config.Env("FOREWARM_KUBE_APPS", ""), "with --hosts kubernetes: the applications file (JSON: each application's namespace, Deployment, PodTemplate or Knative Service, port and shadow request) ($FOREWARM_KUBE_APPS)")
	fs.StringVar(&s.Kube.Config, "kubeconfig", config.Env("KUBECONFIG", ""), "with --hosts kubernetes: the kubeconfig file; empty: the pod's own service account ($KUBECONFIG)")
	fs.StringVar(&s.Kube.Nodes, "kube-nodes", config.Env("FOREWARM_KUBE_NODES", ""), "with --hosts kubernetes: label selector of the nodes that may hold warm pods, e.g. pool=warm; empty: every node ($FOREWARM_KUBE_NODES)")
	fs.DurationVar(&s.Kube.JanitorEvery, "kube-janitor-every", env.Duration("FOREWARM_KUBE_JANITOR_EVERY", 10*time.Second), "with --hosts kubernetes: how often expired warm pods are deleted (a lost loop's pod lives its TTL plus this) ($FOREWARM_KUBE_JANITOR_EVERY)")
	fs.StringVar(&s.Hosts, "hosts", config.Env("FOREWARM_HOSTS", "agents"), "host driver: agents (Forewarm's host agents hold the warm instances), kubernetes (warm pods of each application's own template on the cluster's nodes, see --kube-apps) or keda (KEDA scales each application's workload from the scaler of --keda-listen; Forewarm holds nothing and serves no request) ($FOREWARM_HOSTS)")
	fs.StringVar(&s.KEDAListen, "keda-listen", config.Env("FOREWARM_KEDA_LISTEN", "off"), "address of the KEDA external scaler (gRPC, e.g. :9090): a ScaledObject's trigger asks it whether the loops expect a request of its app. Plain gRPC, unauthenticated: keep it on a cluster-internal port; off for none ($FOREWARM_KEDA_LISTEN)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if env.Err != nil {
		return s, env.Err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q: worker takes only flags", fs.Arg(0))
	}
	for _, q := range s.Queues {
		if q != "prediction" && q != "training" {
			return s, fmt.Errorf("--queues: %q is neither prediction nor training", q)
		}
	}
	if s.ArrivalsBin != 0 && (s.ArrivalsBin < time.Second || s.ArrivalsBin%time.Second != 0) {
		return s, fmt.Errorf("--arrivals-bin %v: use whole seconds (or 0 for none)", s.ArrivalsBin)
	}
	if s.ArrivalsSpan < 1 || s.ArrivalsSpan > wire.MaxCountBins {
		return s, fmt.Errorf("--arrivals-span %d: must be in [1, %d]", s.ArrivalsSpan, wire.MaxCountBins)
	}
	if s.ArrivalsLate < -1 || s.ArrivalsLate >= s.ArrivalsSpan {
		return s, fmt.Errorf("--arrivals-late-bins %d: must be -1 (none), 0 (a minute's bins) or less than --arrivals-span %d", s.ArrivalsLate, s.ArrivalsSpan)
	}
	if s.GatewayLearnEvery < 0 {
		return s, fmt.Errorf("--gateway-learn-every %v: must be >= 0", s.GatewayLearnEvery)
	}
	if s.StickyTimeout < time.Second || s.StickyTimeout > 10*time.Minute {
		return s, fmt.Errorf("--sticky-timeout %v: must be in [1s, 10m]", s.StickyTimeout)
	}
	if s.WorkflowCache < 0 {
		return s, fmt.Errorf("--workflow-cache %d: must be >= 0", s.WorkflowCache)
	}
	if s.HoldoutFraction <= 0 || s.HoldoutFraction >= 1 {
		return s, fmt.Errorf("--holdout %v: must be in (0, 1)", s.HoldoutFraction)
	}
	switch s.Hosts {
	case "agents":
	case "kubernetes":
		if err := s.Kube.check(); err != nil {
			return s, err
		}
	case "keda":
		if s.KEDAListen == "off" || s.KEDAListen == "" {
			return s, errors.New("--hosts keda needs --keda-listen: without the scaler KEDA never learns of a window, and every preparation fails its shadow")
		}
	default:
		return s, fmt.Errorf("--hosts %q: must be agents, kubernetes or keda", s.Hosts)
	}
	if s.KEDAListen != "off" && s.KEDAListen != "" && !slices.Contains(s.Queues, "prediction") {
		return s, fmt.Errorf("--keda-listen %s: the scaler answers from the leases of this worker's loops: serve the prediction queue (--queues)", s.KEDAListen)
	}
	if err := s.Agents.Load(); err != nil {
		return s, err
	}
	if slices.Contains(s.Queues, "prediction") && s.Hosts == "agents" {
		if _, err := s.Agents.Trust(); err != nil {
			return s, err
		}
	}
	return s, nil
}

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(buildinfo.String("worker"))
		return
	}
	s, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\nRun `worker --help` for the flags.\n", err)
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s.LogLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "worker: --log-level %q: %v\n", s.LogLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s, logger); err != nil {
		logger.Error("worker stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, s settings, logger *slog.Logger) error {
	m, err := telemetry.New()
	if err != nil {
		return err
	}
	s.metrics = m
	c, err := s.Temporal.Dial(logger, func(o *client.Options) { o.MetricsHandler = m.SDK })
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := store.Open(ctx, s.ClickHouse)
	var schemaErr *chconn.SchemaError
	if errors.As(err, &schemaErr) {
		return err // names the versions and `starter migrate`; the worker never migrates
	}
	if err != nil {
		return fmt.Errorf("open the store at %s (database %s): %w", s.ClickHouse.Addr, s.ClickHouse.Database, err)
	}
	defer st.Close()
	if s.UseORT {
		if err := models.InitORT(s.ONNX.Lib); err != nil {
			return fmt.Errorf("--onnxruntime-lib %q: %w (or run with --ort=false for the pure-Go model)", s.ONNX.Lib, err)
		}
	}
	if s.WorkflowCache > 0 {
		// Process-wide, and only before the first worker starts.
		worker.SetStickyWorkflowCacheSize(s.WorkflowCache)
	}
	var started atomic.Bool
	// /readyz answers from this check, run at most every
	// telemetry.ReadyEvery however often it is probed; its body says only
	// which part is not ready, the detail goes to the log.
	m.Log = logger
	stopHTTP, err := serveOps(s.MetricsListen, m, func(ctx context.Context) error {
		if !started.Load() {
			return &telemetry.Unready{Part: "starting", Err: errors.New("workers not started yet")}
		}
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return &telemetry.Unready{Part: "temporal", Err: fmt.Errorf("temporal %s: %w", s.Temporal.Address, err)}
		}
		if err := st.Conn().Ping(ctx); err != nil {
			return &telemetry.Unready{Part: "store", Err: fmt.Errorf("clickhouse %s: %w", s.ClickHouse.Addr, err)}
		}
		return nil
	}, logger)
	if err != nil {
		return err
	}
	defer stopHTTP()
	w, err := start(s, c, st, logger)
	if err != nil {
		return err
	}
	defer w.Stop()
	started.Store(true)
	if slices.Contains(s.Queues, "prediction") {
		count := func(ctx context.Context, q string) (int64, error) {
			r, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: s.Temporal.Namespace, Query: q})
			return r.GetCount(), err
		}
		go m.WatchLoops(ctx, count, workflows.LoopWorkflowName, workflows.AttrLoopState.GetName(), workflows.LoopStates, 30*time.Second, logger)
	}
	logger.Info("worker running", "queues", s.Queues, "prediction_queue", s.PredictionQueue, "training_queue", s.TrainingQueue, "ort", s.UseORT, "metrics", s.MetricsListen)
	<-ctx.Done()
	return nil
}

// serveOps serves the metrics and probes on addr ("off": nothing); the
// returned function stops it.
func serveOps(addr string, m *telemetry.Metrics, ready func(context.Context) error, logger *slog.Logger) (func(), error) {
	if addr == "off" || addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(ready), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics endpoint stopped", "err", err)
		}
	}()
	logger.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// running is the started workers and what must be flushed when they stop.
type running struct {
	workers     []worker.Worker
	predictions *batch.Batcher[records.Prediction]
	events      *batch.Batcher[records.PreparationEvent] // refused by the store, written when it is back
	watch       *resident.Watch                          // router-mode loops' arrival watch (nil: none)
	stopWatch   context.CancelFunc
	stopLearn   context.CancelFunc // the gateway learner (nil: none)
	stopScaler  func()             // the KEDA scaler (nil: none)
	stopJanitor context.CancelFunc // the Kubernetes driver's janitor (nil: none)
	scalerAddr  net.Addr           // where it listens (nil: none)
	stop        sync.Once
}

// Stop stops polling, lets running tasks finish, then flushes predictions
// and the preparation events the store refused (rows the store still
// refuses are lost; the batchers log how many).
// Calling it again does nothing.
func (r *running) Stop() {
	r.stop.Do(func() {
		if r.stopWatch != nil {
			r.stopWatch()
		}
		if r.stopLearn != nil {
			r.stopLearn()
		}
		for _, w := range r.workers {
			w.Stop()
		}
		if r.stopScaler != nil {
			r.stopScaler()
		}
		if r.stopJanitor != nil {
			r.stopJanitor()
		}
		if r.predictions != nil {
			r.predictions.Close()
		}
		if r.events != nil {
			r.events.Close()
		}
	})
}

// start builds the activity structs once and starts the workers.
func start(s settings, c client.Client, st *store.Store, logger *slog.Logger) (*running, error) {
	deps := &adapters.Store{St: st, Metrics: s.metrics}
	// Hosts are read at most every 2 s (a preparation burst across many
	// loops is one query) and, while ClickHouse is unreachable, the last
	// list read serves for HostMaxStale.
	directory := &resident.LastKnownHosts{Source: deps, Fresh: 2 * time.Second, MaxStale: s.HostMaxStale, Log: logger,
		Observe: s.metrics.HostList}
	if slices.Contains(s.Queues, "prediction") {
		// Read the host list at once, so a ClickHouse outage soon after a
		// restart still finds a last known one.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := directory.LiveHosts(ctx); err != nil {
				logger.Warn("host list not read at start; the first preparation reads it", "err", err)
			}
		}()
	}
	r := &running{}
	if slices.Contains(s.Queues, "prediction") {
		var reg *keda.Registry
		if s.KEDAListen != "off" && s.KEDAListen != "" {
			ln, err := net.Listen("tcp", s.KEDAListen)
			if err != nil {
				return nil, fmt.Errorf("--keda-listen %s: %w", s.KEDAListen, err)
			}
			reg = keda.NewRegistry(nil)
			r.stopScaler, r.scalerAddr = keda.Serve(keda.NewServer(reg, logger), ln), ln.Addr()
			logger.Info("serving the KEDA external scaler (plain gRPC)", "addr", ln.Addr().String(), "hosts", s.Hosts)
		}
		dir, clients, err := hostDriver(s, directory, reg, r, logger)
		if err != nil {
			r.Stop()
			return nil, err
		}
		r.predictions = batch.New(deps.RecordPredictions, time.Second, 200_000, logger)
		predictor := &activities.Predictor{Models: &adapters.Registry{Src: st, UseORT: s.UseORT, Metrics: s.metrics}, History: deps,
			Predictions: r.predictions, CheckEvery: s.ModelCheck, Log: logger}
		if d := s.metrics.Decisions(); d != nil {
			predictor.Decisions = d
		}
		if s.ArrivalsBin > 0 {
			w, err := startWatch(s, c, st, predictor, logger)
			if err != nil {
				return nil, err
			}
			r.watch = w
			ctx, cancel := context.WithCancel(context.Background())
			r.stopWatch = cancel
			go w.Run(ctx)
		}
		scorer := &adapters.AffinityScorer{Src: st, UseORT: s.UseORT, CheckEvery: s.ModelCheck, Log: logger, Metrics: s.metrics}
		r.events = batch.New(deps.RecordPreparationEvents, 5*time.Second, 100_000, logger)
		hosts := &activities.Hosts{Directory: dir, Affinity: scorer, Recorder: deps, Unrecorded: r.events, Log: logger,
			Clients: clients}
		requests := &activities.Requests{Claimer: wfclient.Claimer{C: c}, Recorder: deps}
		w := worker.New(c, s.PredictionQueue, predictionOptions(s))
		workflows.RegisterPrediction(w)
		workflows.RegisterPredictionActivities(w, predictor, hosts, requests)
		r.workers = append(r.workers, w)
	}
	if slices.Contains(s.Queues, "training") {
		tr := &activities.Training{Trainer: &adapters.Trainer{St: st, HoldoutFraction: s.HoldoutFraction, Samples: s.TrainSamples, UseORT: s.UseORT, Log: logger}}
		w := worker.New(c, s.TrainingQueue, worker.Options{
			// One training at a time: it uses the cores it gets.
			MaxConcurrentActivityExecutionSize: 1,
			WorkerStopTimeout:                  s.StopTimeout,
		})
		workflows.RegisterTraining(w)
		workflows.RegisterTrainingActivities(w, tr)
		r.workers = append(r.workers, w)
	}
	for i, w := range r.workers {
		if err := w.Start(); err != nil {
			for _, started := range r.workers[:i] {
				started.Stop()
			}
			return nil, fmt.Errorf("start worker: %w", err)
		}
	}
	if slices.Contains(s.Queues, "training") && s.GatewayLearnEvery > 0 {
		r.stopLearn = startGatewayLearner(s, c, st, directory, logger)
	}
	return r, nil
}

// hostDriver is the hosts the loops prepare on and their clients: the
// host agents or the cluster's nodes (either feeding the KEDA scaler's
// registry when there is one), or KEDA's pseudo host.
func hostDriver(s settings, agents activities.HostDirectory, reg *keda.Registry, r *running, logger *slog.Logger) (activities.HostDirectory, activities.HostClients, error) {
	switch s.Hosts {
	case "keda":
		return keda.Directory{}, &keda.Clients{Reg: reg}, nil
	case "kubernetes":
		d, err := s.Kube.driver(logger)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.stopJanitor = cancel
		go (&kube.Janitor{Driver: d, Every: s.Kube.JanitorEvery}).Run(ctx)
		// The nodes and their pods are listed at most every 2 s (a burst of
		// preparations is one list), and the last list serves through an
		// API server outage as the agents' does through ClickHouse's.
		nodes := &resident.LastKnownHosts{Source: d, Fresh: 2 * time.Second, MaxStale: s.HostMaxStale, Log: logger,
			Observe: s.metrics.HostList}
		if reg != nil {
			return nodes, &keda.Feed{Next: d, Reg: reg, Log: logger}, nil
		}
		return nodes, d, nil
	}
	trust, err := s.Agents.Trust()
	if err != nil {
		return nil, nil, err
	}
	if w := s.Agents.Warning(trust); w != "" {
		logger.Warn(w, "allow", trust.AllowURL())
	}
	var clients activities.HostClients = adapters.NewHostClients(trust, logger)
	if reg != nil {
		clients = &keda.Feed{Next: clients, Reg: reg, Log: logger}
	}
	return agents, clients, nil
}

// predictionOptions are the prediction queue's worker options.
func predictionOptions(s settings) worker.Options {
	opts := worker.Options{
		MaxConcurrentWorkflowTaskExecutionSize: s.WorkflowTasks,
		MaxConcurrentActivityExecutionSize:     200,
		WorkerStopTimeout:                      s.StopTimeout,
		StickyScheduleToStartTimeout:           s.StickyTimeout,
	}
	if s.WorkflowPollers > 0 {
		opts.MaxConcurrentWorkflowTaskPollers = max(2, s.WorkflowPollers)
		opts.MaxConcurrentActivityTaskPollers = max(2, s.WorkflowPollers)
		return opts
	}
	// Let the server's backlog decide. With a fixed count the SDK sends
	// every poller to the sticky queue while its last backlog hint was
	// above zero, and a poller leaves only after an empty long poll (a
	// minute): meanwhile loops that start, or whose task moved off a busy
	// worker, wait unpolled. Measured at 50,000 loops (docs/scale.md).
	opts.WorkflowTaskPollerBehavior = worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{})
	opts.ActivityTaskPollerBehavior = worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{})
	return opts
}
