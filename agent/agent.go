package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/instance"
	"github.com/forewarm/forewarm/appspec"
	"github.com/forewarm/forewarm/internal/buildinfo"
)

// Config says what one agent offers and how it behaves.
type Config struct {
	// HostID names the host in leases, metrics and the host registry.
	HostID string
	// URL is the address the engine should use for this agent (registered
	// with the Reporter); informational otherwise.
	URL string
	// DataDir holds the lease files. Created if missing.
	DataDir string
	// Capacity the agent may hand out.
	MemoryMB, DiskMB, CPUMilli int64
	// Speed in (0, 1] stretches every preparation, shadow and work phase
	// to 1/Speed of its real duration: 0.5 makes a host half as fast. It
	// lets one machine play hosts of different speeds in a demo.
	Speed float64
	// SetupPerMB is an artificial delay added per MB allocated (memory
	// plus disk) when preparing a lease or serving cold.
	SetupPerMB time.Duration
	// DefaultTTL applies when a reserve names none.
	DefaultTTL time.Duration
	// ReapEvery is how often expired leases are looked for (default 1s).
	ReapEvery time.Duration
	// SampleEvery is how often host metrics and the I/O probe are taken
	// (default 2s).
	SampleEvery time.Duration
	// QueueWait is how long a request that finds its lease at its limit of
	// parallel requests waits for one of them to finish before it is
	// served cold: an instance queues briefly rather than cold-start
	// another. 0: no wait.
	QueueWait time.Duration
	// SleepWork makes a request's WorkMS a sleep instead of CPU work, for
	// demos on machines whose cores are shared.
	SleepWork bool
	// AllocScale in (0, 1] is the share of each requested MB really
	// allocated (0 means 1). Sizes, capacity and accounting stay in the
	// requested MB; a demo playing several hosts on one machine uses it to
	// keep real memory use small without changing any figure.
	AllocScale float64
	// Labels is free text registered with the host (e.g. "zone=a,ssd").
	Labels  string
	Version string
	Logger  *slog.Logger

	// TombstoneTTL is how long an ended lease ID is remembered (default
	// api.MaxTTL), MaxTombstones how many at most (default 100,000).
	TombstoneTTL  time.Duration
	MaxTombstones int
	// ServeMemory is how long a served request's result is remembered for
	// retries (default 1 hour), MaxServeMemory how many at most (default
	// 10,000).
	ServeMemory    time.Duration
	MaxServeMemory int
	// UnauthorizedLogEvery is the least time between two log lines about
	// calls with a wrong token (default 10 s); the ones in between are
	// counted in the next line.
	UnauthorizedLogEvery time.Duration

	// SpecDir is the folder of application specs (package appspec). A
	// lease of an application with a spec runs its process; without
	// SpecDir every lease is a memory reservation.
	SpecDir string
	// InstanceUser runs the instances when the agent is root (default
	// nobody); an agent that is not root runs them as itself.
	InstanceUser string
	// MaxStarting is how many instances start at once (default the
	// machine's cores); the others wait their turn.
	MaxStarting int
}

func (c *Config) check() error {
	var errs []error
	if err := api.CheckID("host ID", c.HostID); err != nil {
		errs = append(errs, err)
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data folder is required"))
	}
	if c.MemoryMB < 0 || c.MemoryMB > api.MaxSizeMB {
		errs = append(errs, fmt.Errorf("memory capacity %d MB is outside 0..%d", c.MemoryMB, api.MaxSizeMB))
	}
	if c.DiskMB < 0 || c.DiskMB > api.MaxSizeMB {
		errs = append(errs, fmt.Errorf("disk capacity %d MB is outside 0..%d", c.DiskMB, api.MaxSizeMB))
	}
	if c.CPUMilli < 0 || c.CPUMilli > api.MaxCPUMilli {
		errs = append(errs, fmt.Errorf("CPU capacity %d millicores is outside 0..%d", c.CPUMilli, api.MaxCPUMilli))
	}
	if math.IsNaN(c.Speed) || c.Speed <= 0 || c.Speed > 1 {
		errs = append(errs, fmt.Errorf("speed %g is outside (0, 1]: 1 is this machine's real speed, 0.5 half of it", c.Speed))
	}
	if c.AllocScale < 0 || c.AllocScale > 1 || math.IsNaN(c.AllocScale) {
		errs = append(errs, fmt.Errorf("allocation scale %v is outside (0, 1]", c.AllocScale))
	}
	if c.SetupPerMB < 0 {
		errs = append(errs, fmt.Errorf("set-up latency per MB %s is negative", c.SetupPerMB))
	}
	if c.DefaultTTL < api.MinTTL || c.DefaultTTL > api.MaxTTL {
		errs = append(errs, fmt.Errorf("default TTL %s is outside %s..%s", c.DefaultTTL, api.MinTTL, api.MaxTTL))
	}
	return errors.Join(errs...)
}

// Agent owns the leases of one host. Its methods are what the HTTP layer
// calls; tests may call them directly too.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	prom    *promMetrics
	sampler *sampler

	mu       sync.Mutex
	leases   map[string]*lease // live: preparing or ready
	ended    *tombstones       // recently ended, so late retries are told so
	reserved usage             // leases plus cold requests in flight
	cold     int               // cold requests being served
	// endedBusy and endedIdle add up the memory-time of ended leases.
	endedBusy, endedIdle float64
	closing              bool
	ops                  sync.WaitGroup // reserve, shadow, serve and extend calls in flight
	bg                   sync.WaitGroup // background frees and loops

	// freed is closed (and replaced) when a request on a lease ends, for
	// the requests queued for a slot; made on demand, under mu.
	freed chan struct{}
	// queueTries counts the takes of queued requests after their first.
	queueTries atomic.Int64

	served   *serveCache // results by request ID, for retried serves
	unauth   logLimiter
	counters counters
	stop     context.CancelFunc
	bgCtx    context.Context // ends when Close stops the background loops

	// Process instances: the specs in force (nil without SpecDir), the
	// cgroups they get (nil where none can be made), who they run as (nil:
	// the agent's user), and a context that Close ends so starts in
	// flight stop.
	specs        atomic.Pointer[appspec.Set]
	cgroups      *instance.Cgroups
	starting     chan struct{} // one token per start in progress (MaxStarting)
	instUser     *instance.User
	startCtx     context.Context
	cancelStarts context.CancelFunc
	proxy        http.Handler
}

// usage is an amount of the three resources, memory and disk in bytes.
type usage struct {
	mem, disk, cpu int64
}

func (u usage) add(v usage) usage { return usage{u.mem + v.mem, u.disk + v.disk, u.cpu + v.cpu} }
func (u usage) sub(v usage) usage { return usage{u.mem - v.mem, u.disk - v.disk, u.cpu - v.cpu} }

// New checks cfg, prepares the data folder (removing a previous run's
// leftovers) and starts the reaper and the metrics sampler. Close stops
// them and releases every lease.
func New(cfg Config) (*Agent, error) {
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = 5 * time.Minute
	}
	if cfg.ReapEvery <= 0 {
		cfg.ReapEvery = time.Second
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = buildinfo.Version()
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = api.MaxTTL
	}
	if cfg.MaxTombstones <= 0 {
		cfg.MaxTombstones = 100_000
	}
	if cfg.ServeMemory <= 0 {
		cfg.ServeMemory = time.Hour
	}
	if cfg.MaxServeMemory <= 0 {
		cfg.MaxServeMemory = 10_000
	}
	if cfg.UnauthorizedLogEvery <= 0 {
		cfg.UnauthorizedLogEvery = 10 * time.Second
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("host agent configuration: %w", err)
	}
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("host", cfg.HostID)
	if _, err := removeLeftovers(cfg.DataDir, log); err != nil {
		return nil, err
	}
	// Before anything runs: kill and remove what a crashed run of this
	// host's agent started (its cgroups, processes and instance folders).
	cgs, cgErr := instance.NewCgroups(cfg.HostID)
	if err := instance.Reap(cfg.DataDir, cgs, log); err != nil {
		return nil, fmt.Errorf("removing a previous run's instances: %w", err)
	}
	if cfg.MaxStarting <= 0 {
		cfg.MaxStarting = runtime.NumCPU()
	}
	a := &Agent{
		starting: make(chan struct{}, cfg.MaxStarting),
		cfg:      cfg,
		log:      log,
		started:  time.Now(),
		leases:   map[string]*lease{},
		ended:    newTombstones(cfg.TombstoneTTL, cfg.MaxTombstones),
		served:   newServeCache(cfg.ServeMemory, cfg.MaxServeMemory),
		unauth:   logLimiter{every: cfg.UnauthorizedLogEvery},
		sampler:  newSampler(cfg.DataDir),
	}
	if cfg.SpecDir != "" {
		if err := a.setUpInstances(cgs, cgErr); err != nil {
			if a.cgroups != nil {
				a.cgroups.Close()
			}
			return nil, err
		}
	}
	a.prom = newPromMetrics(a)
	a.proxy = a.instanceProxy()
	a.sampler.sample() // a first snapshot so metrics are never empty
	a.startCtx, a.cancelStarts = context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.bgCtx = cancel, ctx
	a.bg.Add(2)
	go a.reapLoop(ctx)
	go a.sampleLoop(ctx)
	return a, nil
}

// setUpInstances loads the specs, makes the cgroups' parent (or says once
// why instances run without limits), and finds the instance user.
func (a *Agent) setUpInstances(cgs *instance.Cgroups, cgErr error) error {
	set, err := loadSpecs(a.cfg.SpecDir)
	if err != nil {
		return err
	}
	a.specs.Store(&set)
	if cgs != nil {
		if cgErr = cgs.Prepare(); cgErr != nil {
			cgs = nil
		}
	}
	if cgs == nil {
		a.log.Warn("process instances run without a cgroup: their memory and CPU limits are not enforced", "reason", cgErr)
	}
	a.cgroups = cgs // set at once: a failure below removes its parent
	if os.Geteuid() == 0 {
		name := a.cfg.InstanceUser
		if name == "" {
			name = "nobody"
		}
		u, err := instance.LookupUser(name)
		if err != nil {
			return err
		}
		if u.UID != 0 {
			a.instUser = u
		}
	}
	if err := a.openDataDirToInstances(); err != nil {
		return err
	}
	cgv := ""
	if cgs != nil {
		cgv = cgs.Version()
	}
	user := "the agent's"
	if a.instUser != nil {
		user = a.instUser.Name
	}
	a.log.Info("process instances", "spec_dir", a.cfg.SpecDir, "apps", len(set), "cgroup", cgv, "user", user)
	return nil
}

// Info describes the agent.
func (a *Agent) Info() api.Info {
	return api.Info{
		HostID:      a.cfg.HostID,
		URL:         a.cfg.URL,
		Version:     a.cfg.Version,
		Started:     a.started,
		MemoryMB:    a.cfg.MemoryMB,
		DiskMB:      a.cfg.DiskMB,
		CPUMilli:    a.cfg.CPUMilli,
		Speed:       a.cfg.Speed,
		SetupPerMB:  msOf(a.cfg.SetupPerMB),
		DefaultTTLS: a.cfg.DefaultTTL.Seconds(),
		Labels:      a.cfg.Labels,
		DataDir:     a.cfg.DataDir,
	}
}

// Ready reports whether the agent accepts work.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.closing
}

// begin registers an operation, refusing once Close has started.
func (a *Agent) begin() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return errorf(api.CodeShuttingDown, "host agent %s is shutting down", a.cfg.HostID)
	}
	a.ops.Add(1)
	return nil
}

// Close refuses new work, waits for calls in flight, then releases every
// lease and removes its file. It returns when all resources are freed or
// ctx ends.
func (a *Agent) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return nil
	}
	a.closing = true
	a.mu.Unlock()
	a.cancelStarts() // instances still starting give up at once

	done := make(chan struct{})
	go func() { a.ops.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for calls in flight: %w", ctx.Err())
	}

	// No call is in flight now, so no lease is being prepared or served.
	a.mu.Lock()
	var all []*lease
	now := time.Now()
	for _, l := range a.leases {
		all = append(all, l)
	}
	for _, l := range all {
		a.retireLocked(l, api.StateReleased, "agent shut down", now)
	}
	a.mu.Unlock()
	// In parallel: each instance may take its stop grace.
	errCh := make(chan error, len(all))
	for _, l := range all {
		go func() { errCh <- a.freeLease(l) }()
	}
	var errs []error
	for range all {
		if err := <-errCh; err != nil {
			errs = append(errs, err)
		}
	}
	a.stop()
	a.bg.Wait()
	if a.cgroups != nil {
		a.cgroups.Close()
	}
	if len(all) > 0 {
		a.log.Info("released every lease on shutdown", "leases", len(all))
	}
	return errors.Join(errs...)
}

// stretch sleeps so that a phase that really took since-start takes
// 1/Speed as long, plus extra.
func (a *Agent) stretch(start time.Time, extra time.Duration) {
	d := extra
	if a.cfg.Speed < 1 {
		d += time.Duration(float64(time.Since(start)) * (1/a.cfg.Speed - 1))
	}
	if d > 0 {
		time.Sleep(d)
	}
}

func (a *Agent) reapLoop(ctx context.Context) {
	a.every(ctx, a.cfg.ReapEvery, func() { a.reap(time.Now()) })
}

func (a *Agent) sampleLoop(ctx context.Context) {
	a.every(ctx, a.cfg.SampleEvery, func() {
		if err := a.sampler.sample(); err != nil {
			a.log.Warn("host metrics sample incomplete", "err", err)
		}
	})
}

// every runs f every d until ctx ends; it is one of the agent's background
// goroutines (a.bg).
func (a *Agent) every(ctx context.Context, d time.Duration, f func()) {
	defer a.bg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mbOf(bytes int64) float64 { return float64(bytes) / (1 << 20) }
