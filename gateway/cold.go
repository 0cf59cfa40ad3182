package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// coldStart is one start of an application under way; requests that find
// no instance meanwhile wait for it.
type coldStart struct {
	done chan struct{}
	in   *instance
	err  error
}

// maxStartHosts is how many hosts one cold start tries before it fails.
const maxStartHosts = 3

// cold returns an instance of app for a request that found none: the one
// being started already (joined), or a new one on the best host that
// starts it. The start does not end with the request that began it: the
// requests waiting for it, and the next ones, use the instance.
func (g *Gateway) cold(ctx context.Context, app string, spec api.App, requestID string) (in *instance, joined bool, err error) {
	g.startMu.Lock()
	if s, ok := g.starting[app]; ok {
		g.startMu.Unlock()
		select {
		case <-s.done:
			return s.in, true, s.err
		case <-ctx.Done():
			return nil, true, ctx.Err()
		}
	}
	// Another request may have finished a start between the pick and here.
	if in := g.t.pick(app, false); in != nil {
		g.startMu.Unlock()
		return in, false, nil
	}
	s := &coldStart{done: make(chan struct{})}
	g.starting[app] = s
	g.startMu.Unlock()

	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		s.in, s.err = g.start(app, spec, requestID)
		g.startMu.Lock()
		delete(g.starting, app)
		g.startMu.Unlock()
		close(s.done)
	}()
	select {
	case <-s.done:
		return s.in, false, s.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// start reserves an instance of app on the best-ranked host that takes it,
// trying the next on a refusal and saying why each one refused.
func (g *Gateway) start(app string, spec api.App, requestID string) (*instance, error) {
	if in, ok := g.awaitPreparing(app); ok {
		return in, nil
	}
	hosts := g.t.candidates(app)
	if len(hosts) == 0 {
		g.prom.starts.WithLabelValues("no_host").Inc()
		return nil, fmt.Errorf("no host runs application %s now", app)
	}
	var why []string
	for _, h := range hosts[:min(maxStartHosts, len(hosts))] {
		id := app + ".gw." + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StartTimeout)
		t0 := time.Now()
		h.starts.Add(1)
		l, err := h.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: app, TTL: g.cfg.KeepTTL, SpecVersion: g.specVersion(h, app, spec)})
		h.starts.Add(-1)
		cancel()
		if err != nil {
			g.prom.starts.WithLabelValues(startResult(err)).Inc()
			why = append(why, fmt.Sprintf("%s: %v", h.ID, err))
			g.log.Warn("cold start refused; trying the next host", "app", app, "host", h.ID, "err", err)
			continue
		}
		if l.Instance == nil {
			// The host reserved memory instead of starting the application
			// (its spec went away): nothing to send the request to.
			g.releaseQuietly(h, id)
			why = append(why, fmt.Sprintf("%s: no process instance (no spec of %s there)", h.ID, app))
			continue
		}
		g.prom.starts.WithLabelValues("ok").Inc()
		g.t.learnStart(h, app, msSince(t0))
		in := &instance{host: h, lease: id, app: app, maxConc: max(1, l.MaxConcurrent), added: time.Now()}
		g.t.add(in)
		if g.cfg.OnKept != nil {
			k := Kept{App: app, Host: h.ID, HostURL: h.URL, RequestID: requestID, Lease: l}
			g.bg.Add(1)
			go func() {
				defer g.bg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := g.cfg.OnKept(ctx, k); err != nil {
					g.log.Warn("could not tell the loop of a started instance (its TTL ends it)", "app", app, "lease", id, "err", err)
				}
			}()
		}
		return in, nil
	}
	return nil, fmt.Errorf("no host could start %s: %s", app, strings.Join(why, "; "))
}

// awaitPreparing waits for a lease of app that is being prepared (a loop
// preparing ahead of its bin, its instance not ready yet): the same
// reserve again returns it once ready. Starting another would cost a
// second start on the same cores and hold a second instance.
func (g *Gateway) awaitPreparing(app string) (*instance, bool) {
	p, ok := g.t.preparing(app)
	if !ok {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StartTimeout)
	defer cancel()
	l, err := p.host.c.Reserve(ctx, client.ReserveRequest{PreparationID: p.id, App: app, MemoryMB: p.memoryMB, DiskMB: p.diskMB, CPUMilli: p.cpuMilli})
	if err != nil || l.Instance == nil || l.State != api.StateReady {
		g.log.Debug("a preparation under way did not give a ready instance; starting one", "app", app, "lease", p.id, "err", err)
		return nil, false
	}
	g.prom.starts.WithLabelValues("joined").Inc()
	in := &instance{host: p.host, lease: p.id, app: app, maxConc: max(1, l.MaxConcurrent), added: time.Now()}
	g.t.add(in)
	return in, true
}

// specVersion is the version of app's spec host h runs (the one the
// gateway read); an agent whose spec changed since refuses the start.
func (g *Gateway) specVersion(h *hostState, app string, spec api.App) string {
	g.t.mu.RLock()
	defer g.t.mu.RUnlock()
	if a, ok := h.apps[app]; ok {
		return a.Version
	}
	return spec.Version
}

func (g *Gateway) releaseQuietly(h *hostState, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.c.Release(ctx, id)
}

func startResult(err error) string {
	if c := client.Code(err); c != "" {
		return c
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "unreachable"
}
