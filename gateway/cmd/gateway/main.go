// Command gateway is Forewarm's request path: HTTP in, routed by
// application to a warm process instance on a host agent, or to one it
// starts. See package gateway.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/activities/wire"
	"github.com/forewarm/forewarm/agent/api"
	agentclient "github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/internal/buildinfo"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/workflows"
)

type settings struct {
	Listen       string
	ID           string
	Bin          time.Duration
	Refresh      time.Duration
	KeepTTL      time.Duration
	StartTimeout time.Duration
	HostSuffix   string
	AgentList    []string // id=url; empty: the store's registry
	UpstreamList []string // app=url: applications served elsewhere
	NoStore      bool
	Spool        string // "" once parsed: none
	NotifyLoops  bool
	ShutdownWait time.Duration
	LogLevel     string
	Agents       config.Agents
	ClickHouse   config.ClickHouse
	Temporal     config.Temporal
}

const usage = `gateway: Forewarm's request path.

HTTP in, routed by application: /<app>/<path> (or <app><suffix> as the host
name with --host-suffix) goes to a ready warm instance of the application on
a host agent, chosen from a routing table read from the agents every
--refresh (no store or Temporal call per request); when there is none, the
gateway starts one on the host that starts the application fastest (learned
from its own starts; a refusal moves to the next host) and serves the request
when it is ready. Requests arriving meanwhile wait for that start.

Per application and --bin it writes the arrivals the prediction loops read
(router mode) to ClickHouse in batches, and per request the host, warm or cold,
and the latency split (queue, start, application) to gateway_requests. Each
counted request is appended to the --spool folder before it is forwarded:
a killed gateway's counts are written by the next start (a machine crash can
lose what the kernel had not written). With
--notify-loops it tells an application's loop (predict/<app>) about an
instance it started, so the loop keeps or releases it like its own.

Its own endpoints: /_forewarm/healthz, /_forewarm/readyz, /_forewarm/metrics
(Prometheus), /_forewarm/table (the routing table).

Errors are JSON {"code","message","app"}: unknown_app 404, no_host 503,
instance_failed 502 (the instance died while serving), bad_gateway 502,
shutting_down 503. A request that never reached its instance is retried once.

Flags (environment variable in brackets):
`

func parse(args []string, stdout io.Writer) (settings, error) {
	var s settings
	var env config.EnvDefaults
	fs := pflag.NewFlagSet("gateway", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.Listen, "listen", config.Env("GATEWAY_LISTEN", "127.0.0.1:8080"), "address to serve requests on ($GATEWAY_LISTEN)")
	fs.StringVar(&s.ID, "id", config.Env("GATEWAY_ID", defaultID()), "this gateway's name in its arrival batches; each gateway behind a load balancer needs its own, "+api.IDPattern+" ($GATEWAY_ID)")
	fs.DurationVar(&s.Bin, "bin", env.Duration("GATEWAY_BIN", time.Minute), "width of the arrival counts: the prediction loops' bin ($GATEWAY_BIN)")
	fs.DurationVar(&s.Refresh, "refresh", env.Duration("GATEWAY_REFRESH", 500*time.Millisecond), "how often the routing table is read from the agents ($GATEWAY_REFRESH)")
	fs.DurationVar(&s.KeepTTL, "keep-ttl", env.Duration("GATEWAY_KEEP_TTL", 10*time.Minute), "lease TTL of an instance the gateway starts (its loop extends or releases it) ($GATEWAY_KEEP_TTL)")
	fs.DurationVar(&s.StartTimeout, "start-timeout", env.Duration("GATEWAY_START_TIMEOUT", 2*time.Minute), "how long one start on one host may take ($GATEWAY_START_TIMEOUT)")
	fs.StringVar(&s.HostSuffix, "host-suffix", config.Env("GATEWAY_HOST_SUFFIX", ""), "route by host name too: a request to <app><suffix> (e.g. .apps.example.com) goes to app ($GATEWAY_HOST_SUFFIX)")
	fs.StringSliceVar(&s.AgentList, "agent", nil, "a host agent as id=url (repeat); default: the live hosts of the store's registry")
	fs.StringSliceVar(&s.UpstreamList, "upstream", envList("GATEWAY_UPSTREAMS"), "an application served elsewhere as app=url (repeat), e.g. shop=http://shop.apps.svc: its requests are counted for the loops and passed on to url, where the platform serves them (a Kubernetes Service, which the warm pods of --hosts kubernetes join); with only upstreams no agent credentials are needed ($GATEWAY_UPSTREAMS, comma-separated)")
	fs.BoolVar(&s.NoStore, "no-store", env.Bool("GATEWAY_NO_STORE", false), "record nothing (no arrivals, no requests): for benchmarks; needs --agent ($GATEWAY_NO_STORE)")
	fs.StringVar(&s.Spool, "spool", config.Env("GATEWAY_SPOOL", ""), "folder where each counted request is appended before it is forwarded, so a killed gateway loses no arrival count (the next start writes what it left); a machine crash can lose what the kernel had not written; off: none (default $XDG_STATE_HOME/forewarm-gateway/<id>/spool, else ~/.local/state/...; none with --no-store unless given: then the counts are spooled and discarded, to measure the spool) ($GATEWAY_SPOOL)")
	fs.BoolVar(&s.NotifyLoops, "notify-loops", env.Bool("GATEWAY_NOTIFY_LOOPS", false), "signal predict/<app> about each instance the gateway starts (Temporal settings below) ($GATEWAY_NOTIFY_LOOPS)")
	fs.DurationVar(&s.ShutdownWait, "shutdown-timeout", env.Duration("GATEWAY_SHUTDOWN_TIMEOUT", 30*time.Second), "how long SIGTERM waits for requests in flight and the last batches ($GATEWAY_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&s.LogLevel, "log-level", config.Env("GATEWAY_LOG_LEVEL", "info"), "debug, info, warn or error ($GATEWAY_LOG_LEVEL)")
	s.Agents.Flags(fs)
	s.ClickHouse.Flags(fs)
	s.Temporal.Flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usage, fs.FlagUsages())
		}
		return s, err
	}
	switch {
	case env.Err != nil:
		return s, env.Err
	case fs.NArg() > 0:
		return s, fmt.Errorf("unexpected argument %q: gateway takes only flags", fs.Arg(0))
	case s.Bin < 100*time.Millisecond:
		return s, fmt.Errorf("--bin %s: must be at least 100ms", s.Bin)
	case s.Refresh < 10*time.Millisecond:
		return s, fmt.Errorf("--refresh %s: must be at least 10ms", s.Refresh)
	case s.NoStore && len(s.AgentList) == 0:
		return s, errors.New("--no-store needs --agent: without the store there is no host registry")
	}
	if err := api.CheckID("--id", s.ID); err != nil {
		return s, err
	}
	switch {
	case s.Spool == "off":
		s.Spool = ""
	case s.Spool == "" && !s.NoStore:
		s.Spool = defaultSpool(s.ID)
	}
	if _, err := s.hosts(); err != nil {
		return s, err
	}
	if _, err := s.upstreams(); err != nil {
		return s, err
	}
	return s, s.Agents.Load()
}

func defaultID() string {
	h, _ := os.Hostname()
	id := "gw-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, h)
	return id[:min(len(id), 100)]
}

// defaultSpool is the spool folder under the gateway's state:
// $XDG_STATE_HOME/forewarm-gateway/<id>/spool or
// ~/.local/state/forewarm-gateway/<id>/spool, else under /var/lib.
func defaultSpool(id string) string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "forewarm-gateway", id, "spool")
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) && h != "/" {
		return filepath.Join(h, ".local", "state", "forewarm-gateway", id, "spool")
	}
	return filepath.Join("/var/lib/forewarm-gateway", id, "spool")
}

// hosts parses --agent.
func (s settings) hosts() (gateway.Fixed, error) {
	var out gateway.Fixed
	for _, a := range s.AgentList {
		id, url, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--agent %q: want id=url", a)
		}
		if err := api.CheckID("--agent "+a+": id", id); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return nil, fmt.Errorf("--agent %q: the URL must start with http:// or https://", a)
		}
		out = append(out, gateway.Host{ID: id, URL: url})
	}
	return out, nil
}

// envList is a comma-separated environment variable as a list (nil when unset).
func envList(name string) []string {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// upstreams parses --upstream.
func (s settings) upstreams() (map[string]*url.URL, error) {
	out := map[string]*url.URL{}
	for _, a := range s.UpstreamList {
		app, raw, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--upstream %q: want app=url", a)
		}
		if err := api.CheckID("--upstream "+a+": app", app); err != nil {
			return nil, err
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--upstream %q: the URL must be http:// or https:// with a host", a)
		}
		if _, dup := out[app]; dup {
			return nil, fmt.Errorf("--upstream %q: %s is given twice", a, app)
		}
		out[app] = u
	}
	return out, nil
}

// registry lists the hosts seen in the last 30 s in the store.
type registry struct{ st *store.Store }

func (r registry) Hosts(ctx context.Context) ([]gateway.Host, error) {
	hs, err := r.st.Hosts(ctx, time.Now().Add(-30*time.Second))
	if err != nil {
		return nil, err
	}
	out := make([]gateway.Host, len(hs))
	for i, h := range hs {
		out[i] = gateway.Host{ID: h.ID, URL: h.URL}
	}
	return out, nil
}

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(buildinfo.String("gateway"))
		return
	}
	s, err := parse(os.Args[1:], os.Stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\nRun `gateway --help` for the flags.\n", err)
		os.Exit(2)
	}
	if err := run(s); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(1)
	}
}

func run(s settings) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", s.LogLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ups, _ := s.upstreams()
	// Upstreams alone need no agent: no credentials, no host list.
	agents := len(ups) == 0 || s.Agents.RootSecret != "" || s.Agents.Token != ""
	var trust *agentclient.Trust
	if agents {
		t, err := s.Agents.Trust()
		if err != nil {
			return err
		}
		if w := s.Agents.Warning(t); w != "" {
			log.Warn(w)
		}
		trust = t
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg := gateway.Config{ID: s.ID, Trust: trust, Bin: s.Bin, RefreshEvery: s.Refresh, KeepTTL: s.KeepTTL,
		StartTimeout: s.StartTimeout, HostSuffix: s.HostSuffix, Logger: log, Upstreams: ups}
	fixed, _ := s.hosts()
	if agents {
		cfg.Hosts = fixed
	}
	var st *store.Store
	var err error
	if !s.NoStore {
		st, err = store.Open(ctx, s.ClickHouse)
		if err != nil {
			return fmt.Errorf("store: %w", err) // an unreachable server: the error carries the hint
		}
		defer st.Close()
		if len(fixed) == 0 && agents {
			cfg.Hosts = registry{st}
		}
		cfg.Arrivals, cfg.Outcomes = st.RecordArrivals, st.RecordGatewayRequests
	} else if s.Spool != "" {
		// Counted and spooled, then dropped: the spool's cost alone.
		cfg.Arrivals = func(context.Context, store.ArrivalBatch) error { return nil }
	}
	cfg.SpoolDir = s.Spool
	var onKept []func(context.Context, gateway.Kept) error
	if !s.NoStore {
		onKept = append(onKept, recordKept(st))
	}
	if s.NotifyLoops {
		tc, err := s.Temporal.Dial(log)
		if err != nil {
			return err
		}
		defer tc.Close()
		onKept = append(onKept, notifier(tc))
	}
	if len(onKept) > 0 {
		cfg.OnKept = func(ctx context.Context, k gateway.Kept) error {
			var errs []error
			for _, f := range onKept {
				errs = append(errs, f(ctx, k))
			}
			return errors.Join(errs...)
		}
	}
	g, err := gateway.New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", s.Listen, err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	log.Info("gateway serving", "listen", ln.Addr().String(), "id", s.ID, "bin", s.Bin, "spool", s.Spool)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownWait)
	defer cancel()
	err = errors.Join(srv.Shutdown(sctx), g.Close(sctx))
	log.Info("gateway stopped", "err", err)
	return err
}

// recordKept records an instance the gateway started as a kept lease of
// its application (preparation_events), as a cold request's kept instance
// is: its memory-time counts from now.
func recordKept(st *store.Store) func(context.Context, gateway.Kept) error {
	return func(ctx context.Context, k gateway.Kept) error {
		l := k.Lease
		return st.RecordPreparationEvents(ctx, []records.PreparationEvent{{Time: time.Now().UTC(), PreparationID: l.PreparationID,
			App: k.App, Host: k.Host, Event: records.EventKept, MemoryMB: l.MemoryMB, DiskMB: l.DiskMB, CPUMilli: l.CPUMilli,
			Reason: "started by gateway for request " + k.RequestID}})
	}
}

// notifier tells an application's loop about an instance the gateway
// started: the same observation a cold request's kept instance sends, its
// arrival already counted through the gateway's batches.
func notifier(tc client.Client) func(context.Context, gateway.Kept) error {
	return func(ctx context.Context, k gateway.Kept) error {
		l := k.Lease
		kept := &wire.Lease{LeaseID: l.PreparationID, App: k.App, Host: k.Host, HostURL: k.HostURL,
			MemoryMB: l.MemoryMB, DiskMB: l.DiskMB, CPUMilli: l.CPUMilli, Reserved: l.Created, Expires: l.Expires}
		err := tc.SignalWorkflow(ctx, workflows.LoopWorkflowID(k.App), "", workflows.SignalObservation,
			workflows.ObservationSignal{RequestID: k.RequestID, Claimed: true, Kept: kept})
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil // no loop for this application: its TTL ends the instance
		}
		return err
	}
}
