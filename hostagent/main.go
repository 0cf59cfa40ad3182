// Command hostagent is the Forewarm host agent: the daemon on every
// resource host that really prepares leases (resident memory, pre-allocated
// files, reserved CPU), runs shadow requests, serves requests warm or cold,
// and reports host metrics. See package agent for the design and the HTTP
// API, and `hostagent --help` for the flags.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/forewarm/forewarm/internal/buildinfo"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store/chconn"
)

// settings are the command line, with environment defaults.
type settings struct {
	Listen       string
	HostID       string
	MemoryMB     int64
	DiskMB       int64
	CPUMilli     int64
	DataDir      string
	TokenFile    string
	TLSCert      string
	TLSKey       string
	Speed        float64
	SetupMSPerMB float64
	QueueWait    time.Duration
	SleepWork    bool
	AllocScale   float64
	DefaultTTL   time.Duration
	AdvertiseURL string
	Labels       string
	ReportEvery  time.Duration
	SampleEvery  time.Duration
	ShutdownWait time.Duration
	SpecDir      string
	InstanceUser string
	MaxStarting  int
	LogLevel     string
	LogFormat    string
	ClickHouse   config.ClickHouse
	// PrintToken, with RootSecretFile, prints the host's derived token and
	// exits (run where the root secret lives, not on the host).
	PrintToken     bool
	RootSecretFile string
	// MetricsListen serves only GET /metrics, without a token; empty: off.
	MetricsListen string
	// MemoryOverheadMB is kept from the cgroup limit with --memory-mb cgroup.
	MemoryOverheadMB int64
}

// usageError is a bad flag or environment variable: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(buildinfo.String("hostagent"))
		return
	}
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.Is(err, pflag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "hostagent: %v\nRun `hostagent --help` for the flags.\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "hostagent: %v\n", err)
		os.Exit(1)
	}
}

var unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func defaultHostID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "host"
	}
	return unsafeIDChars.ReplaceAllString(h, "-")
}

func parse(args []string, stdout, stderr *os.File) (settings, error) {
	var s settings
	var env config.EnvDefaults
	fs := pflag.NewFlagSet("hostagent", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and printed once by main
	fs.Usage = func() {}
	printUsage := func() {
		fmt.Fprintf(stdout, `hostagent: the Forewarm host agent.

Prepares leases on this host (resident memory, pre-allocated storage files,
reserved CPU), runs shadow requests, serves requests warm or cold and reports
host metrics, over HTTP+JSON with a bearer token (TLS with --tls-cert/--tls-key).
With --advertise-url it registers itself in ClickHouse and pushes its metrics
every --report-every so the worker discovers it without a restart.

A lease is a warm instance of its application: once ready it serves every
request of that application naming it until it is released or its TTL ends,
up to one request per whole core it reserves at a time (at least one). A
request beyond that, or larger than the lease, is served cold (when the
caller allows it) and counted, and the lease stays ready. Leases are extended
in place (POST /v1/leases/{id}/extend), and a cold request may keep its
instance as a new lease (keep_id, keep_ttl_seconds). Serving is idempotent by
request ID; releasing an unknown ID leaves a tombstone so a late reserve of it
is refused.

Process instances (--spec-dir): an application with a spec in that folder
(<app>.json: command, env, readiness and shadow request, memory_mb, cpu_milli,
scratch_mb, concurrency, stop_grace) gets its own process as its lease: a
scratch folder with pre-allocated storage, a cgroup with the lease's memory
limit and CPU quota, an unprivileged user (--instance-user) when the agent is
root, a loopback port in $PORT; the lease is ready once the process passes its
readiness check and shadow request. Its requests go through
/v1/instances/{id}/http/{path} (at most the spec's concurrency at once); a
process that exits or is killed (memory limit) ends its lease as failed.
Release stops it (SIGTERM, SIGKILL after stop_grace). SIGHUP re-reads the spec
folder (a folder that does not load keeps the specs in force). At start the
agent kills and removes what a crashed run of the same --host-id left
(processes, cgroups, folders).

API (JSON; every path but /healthz and /readyz needs "Authorization: Bearer"):
  GET    /healthz, /readyz               liveness, readiness (503 when stopping)
  GET    /v1/info                        host ID, capacity, speed, version
  POST   /v1/leases                      reserve {preparation_id, app, memory_mb, disk_mb, cpu_milli, ttl_seconds, spec_version}
  GET    /v1/leases[/{id}]               live leases with their use (requests_served, busy_mb_s, idle_mb_s, fallbacks)
  DELETE /v1/leases/{id}                 release (final use in the answer)
  POST   /v1/leases/{id}/shadow          shadow request {read_ratio, sample_mb}
  POST   /v1/leases/{id}/extend          new expiry {ttl_seconds, app}
  POST   /v1/serve                       {request_id, app, preparation_id, memory_mb, disk_mb, read_ratio, work_ms,
                                          fallback_cold, keep_id, keep_ttl_seconds, keep_memory_mb, ...}
  GET    /v1/apps                        the application specs this agent runs as processes
  any    /v1/instances/{id}/http/{path}  forwarded to lease id's process; its answer carries Forewarm-Lease,
                                          Forewarm-Host, Forewarm-Instance-Ms; the agent's own refusals carry
                                          Forewarm-Sent: 0 (never reached the instance) or 1 (may have)
  GET    /v1/metrics, /metrics           host metrics as JSON, and for Prometheus
With --metrics-listen, a second plain-HTTP listener serves GET /metrics without
a token (for Prometheus) and answers 404 to everything else.
Refusals are {"code","message"}: bad_request 400, unauthorized 401, wrong_app 403,
not_found / unknown_spec 404, conflict / lease_busy / lease_too_small / not_ready /
over_capacity / no_instance 409, gone 410, too_large 413, internal 500,
instance_failed / start_failed 502, shutting_down 503.

Credentials: each agent has its own token, derived from a root secret that
only the worker holds: hex(HMAC-SHA256(root secret, host ID)). Compute it where
the secret lives and give the host only the result:
  hostagent --print-token --host-id fast --root-secret-file .state/agent-root-secret > fast.token

Example, three hosts of different sizes and speeds on one machine:
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .state/agent-root-secret
  for h in fast medium slow; do hostagent --print-token --host-id $h --root-secret-file .state/agent-root-secret > .state/$h.token; done
  hostagent --host-id fast   --listen 127.0.0.1:7071 --memory-mb 4096 --speed 1    --token-file .state/fast.token   --advertise-url http://127.0.0.1:7071 &
  hostagent --host-id medium --listen 127.0.0.1:7072 --memory-mb 2048 --speed 0.5  --setup-ms-per-mb 0.2 --token-file .state/medium.token --advertise-url http://127.0.0.1:7072 &
  hostagent --host-id slow   --listen 127.0.0.1:7073 --memory-mb 1024 --speed 0.25 --setup-ms-per-mb 1   --token-file .state/slow.token   --advertise-url http://127.0.0.1:7073 &
  worker --agent-root-secret-file .state/agent-root-secret

Flags (environment variable in brackets):
%s`, fs.FlagUsages())
	}
	fs.StringVar(&s.Listen, "listen", config.Env("HOSTAGENT_LISTEN", "127.0.0.1:7071"), "address to listen on ($HOSTAGENT_LISTEN)")
	fs.StringVar(&s.HostID, "host-id", config.Env("HOSTAGENT_HOST_ID", defaultHostID()), "this host's ID, "+api.IDPattern+" ($HOSTAGENT_HOST_ID)")
	fs.StringVar(&s.MetricsListen, "metrics-listen", os.Getenv("HOSTAGENT_METRICS_LISTEN"), "address of a plain-HTTP listener serving only GET /metrics, without a token (for Prometheus); empty: none ($HOSTAGENT_METRICS_LISTEN)")
	memEnv, memFromEnv := os.LookupEnv("HOSTAGENT_MEMORY_MB")
	memory := fs.String("memory-mb", cmp.Or(memEnv, "2048"), "memory capacity to hand out, MB, or \"cgroup\": the agent's own cgroup memory limit less --memory-overhead-mb (in a pod, its memory limit) ($HOSTAGENT_MEMORY_MB)")
	fs.Int64Var(&s.MemoryOverheadMB, "memory-overhead-mb", env.Int64("HOSTAGENT_MEMORY_OVERHEAD_MB", 256), "with --memory-mb cgroup: memory kept for the agent itself, MB ($HOSTAGENT_MEMORY_OVERHEAD_MB)")
	fs.Int64Var(&s.DiskMB, "disk-mb", env.Int64("HOSTAGENT_DISK_MB", 4096), "storage capacity to hand out, MB ($HOSTAGENT_DISK_MB)")
	fs.Int64Var(&s.CPUMilli, "cpu-milli", env.Int64("HOSTAGENT_CPU_MILLI", int64(runtime.NumCPU())*1000), "CPU capacity to hand out, millicores ($HOSTAGENT_CPU_MILLI)")
	fs.StringVar(&s.DataDir, "data-dir", os.Getenv("HOSTAGENT_DATA_DIR"), "folder for lease files and instance folders, created 0700 (0711 with --spec-dir under a root agent: the instance user enters it, so its parents must let others enter) and refused if another user owns it or can write into it; leftovers of a previous run are removed at start (default $XDG_STATE_HOME/forewarm-agent/<host-id>, else ~/.local/state/forewarm-agent/<host-id>) ($HOSTAGENT_DATA_DIR)")
	fs.StringVar(&s.TokenFile, "token-file", os.Getenv("HOSTAGENT_TOKEN_FILE"), "file holding this host's bearer token (or put the token itself in $HOSTAGENT_TOKEN) ($HOSTAGENT_TOKEN_FILE)")
	fs.BoolVar(&s.PrintToken, "print-token", false, "print the token of --host-id derived from --root-secret-file, and exit")
	fs.StringVar(&s.RootSecretFile, "root-secret-file", "", "the fleet's root secret, only with --print-token (never give it to a host)")
	fs.StringVar(&s.TLSCert, "tls-cert", os.Getenv("HOSTAGENT_TLS_CERT"), "TLS certificate (PEM); serve HTTPS with --tls-key ($HOSTAGENT_TLS_CERT)")
	fs.StringVar(&s.TLSKey, "tls-key", os.Getenv("HOSTAGENT_TLS_KEY"), "TLS private key (PEM) ($HOSTAGENT_TLS_KEY)")
	fs.Float64Var(&s.Speed, "speed", env.Float("HOSTAGENT_SPEED", 1), "speed in (0,1]: every prepare, shadow and work phase takes 1/speed of its real time ($HOSTAGENT_SPEED)")
	fs.DurationVar(&s.QueueWait, "queue-wait", env.Duration("HOSTAGENT_QUEUE_WAIT", 50*time.Millisecond), "how long a request that finds its warm instance at its limit of parallel requests waits for a slot before it is served cold (0: not at all) ($HOSTAGENT_QUEUE_WAIT)")
	fs.Float64Var(&s.SetupMSPerMB, "setup-ms-per-mb", env.Float("HOSTAGENT_SETUP_MS_PER_MB", 0), "artificial latency per MB allocated when preparing or serving cold, ms ($HOSTAGENT_SETUP_MS_PER_MB)")
	fs.Float64Var(&s.AllocScale, "alloc-scale", env.Float("HOSTAGENT_ALLOC_SCALE", 1), "share of each requested MB really allocated, in (0,1]; sizes and accounting stay as requested (several demo hosts on one machine) ($HOSTAGENT_ALLOC_SCALE)")
	fs.BoolVar(&s.SleepWork, "sleep-work", env.Bool("HOSTAGENT_SLEEP_WORK", false), "run a request's work_ms as a sleep instead of CPU work (for shared demo machines) ($HOSTAGENT_SLEEP_WORK)")
	fs.DurationVar(&s.DefaultTTL, "default-ttl", env.Duration("HOSTAGENT_DEFAULT_TTL", 5*time.Minute), "lease TTL when a reserve names none ($HOSTAGENT_DEFAULT_TTL)")
	fs.StringVar(&s.AdvertiseURL, "advertise-url", os.Getenv("HOSTAGENT_ADVERTISE_URL"), "URL the engine should use for this agent; when set, the agent registers in ClickHouse ($HOSTAGENT_ADVERTISE_URL)")
	fs.StringVar(&s.Labels, "labels", os.Getenv("HOSTAGENT_LABELS"), "free-text labels registered with the host, e.g. zone=a,ssd ($HOSTAGENT_LABELS)")
	fs.DurationVar(&s.ReportEvery, "report-every", env.Duration("HOSTAGENT_REPORT_EVERY", 5*time.Second), "how often to register and push metrics ($HOSTAGENT_REPORT_EVERY)")
	fs.DurationVar(&s.SampleEvery, "sample-every", env.Duration("HOSTAGENT_SAMPLE_EVERY", 2*time.Second), "how often to sample /proc and run the I/O probe ($HOSTAGENT_SAMPLE_EVERY)")
	fs.DurationVar(&s.ShutdownWait, "shutdown-timeout", env.Duration("HOSTAGENT_SHUTDOWN_TIMEOUT", 30*time.Second), "how long SIGTERM waits for calls in flight before releasing leases ($HOSTAGENT_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&s.SpecDir, "spec-dir", "", "folder of application specs (<app>.json); their leases run the application's process (re-read on SIGHUP); empty: every lease is a memory reservation")
	fs.IntVar(&s.MaxStarting, "max-starting", env.Int("HOSTAGENT_MAX_STARTING", runtime.NumCPU()), "process instances started at once; the others wait their turn (a start is CPU work: all at once, every one is late) ($HOSTAGENT_MAX_STARTING)")
	fs.StringVar(&s.InstanceUser, "instance-user", "nobody", "user the process instances run as when the agent is root; it must be able to enter the data folder and run the specs' programs")
	fs.StringVar(&s.LogLevel, "log-level", config.Env("HOSTAGENT_LOG_LEVEL", "info"), "debug, info, warn or error ($HOSTAGENT_LOG_LEVEL)")
	fs.StringVar(&s.LogFormat, "log-format", config.Env("HOSTAGENT_LOG_FORMAT", "text"), "text or json ($HOSTAGENT_LOG_FORMAT)")
	s.ClickHouse.Flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printUsage()
			return s, err
		}
		return s, usageError{err.Error()}
	}
	if env.Err != nil {
		return s, usageError{env.Err.Error()}
	}
	if fs.NArg() > 0 {
		return s, usagef("unexpected argument %q: hostagent takes only flags", fs.Arg(0))
	}
	if err := s.memoryCapacity(*memory, memFromEnv && !fs.Changed("memory-mb")); err != nil {
		return s, err
	}
	return s, s.check()
}

func (s *settings) check() error {
	if err := api.CheckID("--host-id", s.HostID); err != nil {
		return usageError{err.Error()}
	}
	if s.PrintToken != (s.RootSecretFile != "") {
		return usagef("--print-token and --root-secret-file go together: the agent itself is given only its token (--token-file)")
	}
	if s.DataDir == "" {
		s.DataDir = agent.DefaultDataDir(s.HostID)
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return usagef("--tls-cert and --tls-key must be given together")
	}
	if s.AdvertiseURL != "" && !strings.HasPrefix(s.AdvertiseURL, "http://") && !strings.HasPrefix(s.AdvertiseURL, "https://") {
		return usagef("--advertise-url %q must start with http:// or https://", s.AdvertiseURL)
	}
	if s.ReportEvery < time.Second {
		return usagef("--report-every %s is below 1s", s.ReportEvery)
	}
	if s.SampleEvery < 100*time.Millisecond {
		return usagef("--sample-every %s is below 100ms", s.SampleEvery)
	}
	if s.QueueWait < 0 || s.QueueWait > 10*time.Second {
		return usagef("--queue-wait %v is outside 0..10s", s.QueueWait)
	}
	if s.MaxStarting < 1 || s.MaxStarting > 1024 {
		return usagef("--max-starting %d is outside 1..1024", s.MaxStarting)
	}
	if s.SetupMSPerMB < 0 || s.SetupMSPerMB > 1000 {
		return usagef("--setup-ms-per-mb %g is outside 0..1000", s.SetupMSPerMB)
	}
	return nil
}

// memoryCapacity sets MemoryMB from --memory-mb: a number, or "cgroup".
func (s *settings) memoryCapacity(v string, fromEnv bool) error {
	name := "--memory-mb"
	if fromEnv {
		name = "$HOSTAGENT_MEMORY_MB"
	}
	if v != "cgroup" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return usagef("%s %q: want a number of MB or \"cgroup\"", name, v)
		}
		s.MemoryMB = n
		return nil
	}
	cg, err := agent.ReadCgroupMemory(agent.CgroupRoot)
	if err != nil {
		return usagef("%s cgroup: %v", name, err)
	}
	if s.MemoryMB, err = cg.CapacityMB(s.MemoryOverheadMB); err != nil {
		return usagef("%s cgroup: %v", name, err)
	}
	return nil
}

// token reads the bearer token from --token-file, else $HOSTAGENT_TOKEN.
func (s *settings) token() (string, error) {
	if s.TokenFile != "" {
		b, err := os.ReadFile(s.TokenFile)
		if err != nil {
			return "", usagef("--token-file: %v", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < agent.MinTokenLen {
			return "", usagef("--token-file %s: the token must be at least %d characters", s.TokenFile, agent.MinTokenLen)
		}
		return tok, nil
	}
	tok := strings.TrimSpace(os.Getenv("HOSTAGENT_TOKEN"))
	if tok == "" {
		return "", usagef("no bearer token: give --token-file (or $HOSTAGENT_TOKEN_FILE), or put the token in $HOSTAGENT_TOKEN; e.g. head -c 24 /dev/urandom | base64 > agent.token")
	}
	if len(tok) < agent.MinTokenLen {
		return "", usagef("$HOSTAGENT_TOKEN: the token must be at least %d characters", agent.MinTokenLen)
	}
	return tok, nil
}

func newLogger(s settings, w *os.File) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", s.LogFormat)
}

// printToken writes the host's token derived from the root secret file.
func printToken(s settings, stdout *os.File) error {
	b, err := os.ReadFile(s.RootSecretFile)
	if err != nil {
		return usagef("--root-secret-file: %v", err)
	}
	root := strings.TrimSpace(string(b))
	if len(root) < agent.MinTokenLen {
		return usagef("--root-secret-file %s: the root secret must be at least %d characters", s.RootSecretFile, agent.MinTokenLen)
	}
	_, err = fmt.Fprintln(stdout, api.DeriveToken([]byte(root), s.HostID))
	return err
}

func run(args []string, stdout, stderr *os.File) error {
	s, err := parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	if s.PrintToken {
		return printToken(s, stdout)
	}
	tok, err := s.token()
	if err != nil {
		return err
	}
	log, err := newLogger(s, stderr)
	if err != nil {
		return err
	}
	// The registry's schema must be the one this build writes: refuse to
	// start on a mismatch (the agent never migrates). An unreachable
	// ClickHouse is not a mismatch: the reporter keeps retrying.
	var rep *storeReporter
	if s.AdvertiseURL != "" {
		rep = newStoreReporter(s.ClickHouse, log)
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := rep.connect(cctx)
		cancel()
		var se *chconn.SchemaError
		if errors.As(err, &se) {
			return err
		}
		if err != nil {
			log.Warn("host registry not reachable yet; the agent serves and keeps retrying", "err", err)
		}
	}
	var tlsConf *tls.Config
	if s.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return usagef("--tls-cert/--tls-key: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}

	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", s.Listen, err)
	}
	var mln net.Listener
	if s.MetricsListen != "" {
		if mln, err = net.Listen("tcp", s.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen %s: %w", s.MetricsListen, err)
		}
	}
	closeListeners := func() {
		ln.Close()
		if mln != nil {
			mln.Close()
		}
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	url := cmp.Or(s.AdvertiseURL, scheme+"://"+ln.Addr().String())

	a, err := agent.New(agent.Config{
		HostID: s.HostID, URL: url, DataDir: s.DataDir,
		MemoryMB: s.MemoryMB, DiskMB: s.DiskMB, CPUMilli: s.CPUMilli,
		Speed: s.Speed, SetupPerMB: time.Duration(s.SetupMSPerMB * float64(time.Millisecond)), QueueWait: s.QueueWait,
		DefaultTTL: s.DefaultTTL, SampleEvery: s.SampleEvery, SleepWork: s.SleepWork, AllocScale: s.AllocScale,
		Labels: s.Labels, Version: buildinfo.Version(), Logger: log,
		SpecDir: s.SpecDir, InstanceUser: s.InstanceUser, MaxStarting: s.MaxStarting,
	})
	if err != nil {
		closeListeners()
		return usageError{err.Error()}
	}
	h, err := a.Handler(tok)
	if err != nil {
		closeListeners()
		_ = a.Close(context.Background())
		return usageError{err.Error()}
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      api.MaxWorkMS*time.Millisecond + time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if s.SpecDir != "" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					if err := a.ReloadSpecs(); err != nil {
						log.Error("reloading application specs failed; the specs in force stay", "err", err)
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	reportCtx, stopReport := context.WithCancel(ctx)
	defer stopReport()
	reportDone := make(chan struct{})
	if s.AdvertiseURL != "" {
		go func() {
			defer close(reportDone)
			a.Report(reportCtx, rep, s.ReportEvery)
			rep.Close()
		}()
		log.Info("registering in the host registry", "clickhouse", s.ClickHouse.Addr, "database", s.ClickHouse.Database, "url", url, "every", s.ReportEvery)
	} else {
		close(reportDone)
		log.Info("no --advertise-url: not registering; the engine must be told this agent's URL")
	}

	serveErr := make(chan error, 2)
	go func() {
		if tlsConf != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	var metricsSrv *http.Server
	if mln != nil {
		metricsSrv = &http.Server{
			Handler:           a.MetricsHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() { serveErr <- metricsSrv.Serve(mln) }()
		log.Info("metrics listener (GET /metrics only, no token)", "addr", mln.Addr().String())
	}
	log.Info("host agent listening", "addr", ln.Addr().String(), "tls", tlsConf != nil, "data_dir", s.DataDir,
		"memory_mb", s.MemoryMB, "disk_mb", s.DiskMB, "cpu_milli", s.CPUMilli, "speed", s.Speed, "setup_ms_per_mb", s.SetupMSPerMB)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing calls in flight, then releasing every lease")
	case err := <-serveErr:
		runErr = fmt.Errorf("HTTP server: %w", err)
	}
	stopReport()
	<-reportDone
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownWait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
	}
	if metricsSrv != nil {
		if err := metricsSrv.Shutdown(sctx); err != nil {
			log.Warn("metrics listener shutdown", "err", err)
		}
	}
	// A fresh deadline: leases must be released even if Shutdown timed out.
	cctx, cancelClose := context.WithTimeout(context.Background(), s.ShutdownWait)
	defer cancelClose()
	if err := a.Close(cctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("releasing leases: %w", err))
	}
	log.Info("host agent stopped")
	return runErr
}
