package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// Host is one host agent the gateway may route to.
type Host struct {
	ID  string
	URL string
}

// HostSource lists the live host agents (the store's registry, or a fixed
// list).
type HostSource interface {
	Hosts(ctx context.Context) ([]Host, error)
}

// Fixed is a HostSource of a fixed list.
type Fixed []Host

func (f Fixed) Hosts(context.Context) ([]Host, error) { return f, nil }

// instance is one ready process instance the gateway can send requests
// to. inflight counts this gateway's requests on it (the agent enforces the
// real limit; this only spreads load and avoids a refusal).
type instance struct {
	host     *hostState
	lease    string
	app      string
	maxConc  int
	inflight atomic.Int64
	dead     atomic.Bool // refused as gone: skip until the table forgets it
	added    time.Time   // when this gateway started it (zero: read from a list)
}

// hostState is what the gateway knows of one host: its client, the specs
// it runs and its learned start-up times.
type hostState struct {
	Host
	c     *client.Client
	apps  map[string]api.App
	free  float64 // free memory MB at the last refresh
	err   error   // last refresh failure
	seen  time.Time
	start map[string]float64 // app → moving average of cold start ms here
	// Starts under way here: leases the last refresh found preparing, and
	// this gateway's own cold starts since. A host starts a few at a time,
	// so a start queued behind them waits for them.
	preparing int
	starts    atomic.Int32
}

// table is the routing table: every ready instance by application, kept
// from the agents' lease lists. Reads take the read lock only.
type table struct {
	mu    sync.RWMutex
	hosts map[string]*hostState
	byApp map[string][]*instance
	// starting are process leases being prepared (by a loop, ahead of
	// its bin), by application: a request that finds no ready instance
	// waits for one of these rather than start another.
	starting map[string][]pending
}

// pending is a lease being prepared on a host, with the sizes a repeated
// reserve must name to wait for it.
type pending struct {
	host     *hostState
	id       string
	memoryMB float64
	diskMB   float64
	cpuMilli int64
}

// preparing returns a lease of app being prepared on a host that runs it.
func (t *table) preparing(app string) (pending, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.starting[app] {
		if _, ok := p.host.apps[app]; ok {
			return p, true
		}
	}
	return pending{}, false
}

func newTable() *table {
	return &table{hosts: map[string]*hostState{}, byApp: map[string][]*instance{}}
}

// pick returns the least loaded ready instance of app. When every one is
// at its limit it returns the least loaded all the same if queue is set
// (its agent holds the request until a slot frees, briefly: a request
// waits milliseconds for a running instance rather than seconds for a new
// one), else nil, as when app has none.
func (t *table) pick(app string, queue bool) *instance {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var best *instance
	var bestLoad float64
	for _, in := range t.byApp[app] {
		if in.dead.Load() {
			continue
		}
		load := float64(in.inflight.Load()) / float64(in.maxConc)
		if best == nil || load < bestLoad {
			best, bestLoad = in, load
		}
	}
	if best != nil && bestLoad >= 1 && !queue {
		return nil
	}
	return best
}

// known says whether any host runs app, and the spec of it one host holds.
func (t *table) known(app string) (api.App, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, h := range t.hosts {
		if a, ok := h.apps[app]; ok {
			return a, true
		}
	}
	return api.App{}, false
}

// add puts an instance the gateway just started into the table.
func (t *table) add(in *instance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.ContainsFunc(t.byApp[in.app], func(o *instance) bool { return o.lease == in.lease && o.host == in.host }) {
		return
	}
	t.byApp[in.app] = append(t.byApp[in.app], in)
}

// candidates are the hosts that run app, best first: the shortest learned
// start-up of app there (unknown counts as the mean of the known ones),
// then the most free memory.
func (t *table) candidates(app string) []*hostState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var hs []*hostState
	var sum float64
	var n int
	for _, h := range t.hosts {
		if _, ok := h.apps[app]; ok && h.err == nil {
			hs = append(hs, h)
			if ms, ok := h.start[app]; ok {
				sum += ms
				n++
			}
		}
	}
	mean := 0.0
	if n > 0 {
		mean = sum / float64(n)
	}
	cost := func(h *hostState) float64 {
		ms, ok := h.start[app]
		if !ok {
			ms = mean
		}
		return ms * float64(1+h.preparing+int(h.starts.Load()))
	}
	slices.SortStableFunc(hs, func(a, b *hostState) int {
		switch ca, cb := cost(a), cost(b); {
		case ca < cb:
			return -1
		case ca > cb:
			return 1
		case a.free > b.free:
			return -1
		case a.free < b.free:
			return 1
		}
		return 0
	})
	return hs
}

// learnStart folds a cold start's time on host into its moving average.
func (t *table) learnStart(h *hostState, app string, ms float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := h.start[app]; ok {
		ms = 0.7*old + 0.3*ms
	}
	h.start[app] = ms
}

// refresher keeps the table from the agents.
type refresher struct {
	src   HostSource
	trust *client.Trust
	t     *table
	// every is how often lease lists are read; apps are read every appsEvery.
	every, appsEvery time.Duration
	timeout          time.Duration
	logf             func(msg string, args ...any)

	lastApps time.Time
}

// refresh reads the host list and every host's leases (and, every
// appsEvery, its specs and free memory) at once, then swaps in the new
// instances. An instance the gateway already tracks keeps its counters.
func (r *refresher) refresh(ctx context.Context, now time.Time) error {
	hosts, err := r.src.Hosts(ctx)
	if err != nil {
		return fmt.Errorf("host list: %w", err)
	}
	withApps := now.Sub(r.lastApps) >= r.appsEvery
	if withApps {
		r.lastApps = now
	}
	type result struct {
		h      *hostState
		leases []api.Lease
		apps   []api.App
		free   float64
		err    error
	}
	r.t.mu.RLock()
	states := make([]*hostState, 0, len(hosts))
	for _, h := range hosts {
		st, ok := r.t.hosts[h.ID]
		if !ok || st.URL != h.URL {
			st = &hostState{Host: h, start: map[string]float64{}}
			if ok {
				st.start = r.t.hosts[h.ID].start
			}
		}
		states = append(states, st)
	}
	r.t.mu.RUnlock()

	results := make([]result, len(states))
	var wg sync.WaitGroup
	for i, st := range states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := result{h: st}
			defer func() { results[i] = res }()
			if st.c == nil {
				c, err := r.trust.Client(st.ID, st.URL)
				if err != nil {
					res.err = err
					return
				}
				st.c = c
			}
			ctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			if res.leases, res.err = st.c.Leases(ctx); res.err != nil {
				return
			}
			if withApps || st.apps == nil {
				if res.apps, res.err = st.c.Apps(ctx); res.err != nil {
					return
				}
				m, err := st.c.Metrics(ctx)
				if err == nil {
					res.free = m.CapacityMemMB - m.ReservedMemMB
				}
			}
		}()
	}
	wg.Wait()

	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	old := r.t.byApp
	byApp := map[string][]*instance{}
	starting := map[string][]pending{}
	hostMap := map[string]*hostState{}
	var errs []error
	for _, res := range results {
		h := res.h
		hostMap[h.ID] = h
		h.err = res.err
		if res.err != nil {
			errs = append(errs, fmt.Errorf("host %s (%s): %w", h.ID, h.URL, res.err))
			continue
		}
		h.seen = now
		if res.apps != nil {
			h.apps = make(map[string]api.App, len(res.apps))
			for _, a := range res.apps {
				h.apps[a.App] = a
			}
			h.free = res.free
		}
		h.preparing = 0
		for _, l := range res.leases {
			if l.State == api.StatePreparing {
				h.preparing++
				starting[l.App] = append(starting[l.App], pending{host: h, id: l.PreparationID, memoryMB: l.MemoryMB, diskMB: l.DiskMB, cpuMilli: l.CPUMilli})
				continue
			}
			if l.State != api.StateReady || l.Instance == nil {
				continue
			}
			// An instance keeps its counters while its host's state is the
			// same; its fields never change once it is in the table.
			in := findInstance(old[l.App], h.ID, l.PreparationID)
			if in == nil || in.host != h {
				in = &instance{host: h, lease: l.PreparationID, app: l.App, maxConc: max(1, l.MaxConcurrent)}
			}
			byApp[l.App] = append(byApp[l.App], in)
		}
	}
	// Instances this gateway started since the lists were read stay.
	for app, ins := range old {
		for _, in := range ins {
			if h, ok := hostMap[in.host.ID]; ok && h.err == nil && !in.dead.Load() && findInstance(byApp[app], in.host.ID, in.lease) == nil && !in.added.Before(now) {
				byApp[app] = append(byApp[app], in)
			}
		}
	}
	r.t.hosts, r.t.byApp, r.t.starting = hostMap, byApp, starting
	return errors.Join(errs...)
}

func findInstance(ins []*instance, host, lease string) *instance {
	for _, in := range ins {
		if in.host.ID == host && in.lease == lease {
			return in
		}
	}
	return nil
}
