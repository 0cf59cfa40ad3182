// Package keda is Forewarm's KEDA external scaler: it tells KEDA which
// applications the prediction loops expect a request for, so a ScaledObject
// scales the application's workload up from zero before the request
// arrives, and back to zero once the loop lets the instance go.
//
// The loops' leases become warm windows in a Registry (Feed wraps any host
// driver; Directory and Clients are a host driver of their own for clusters
// where KEDA scales the workload and Forewarm holds nothing), and Server
// answers KEDA's ExternalScaler gRPC calls from it. KEDA is configured with
// a ScaledObject whose trigger has type "external-push" (or "external",
// polled every pollingInterval) and metadata
//
//	scalerAddress: <worker service>:<port of --keda-listen>
//	app: <application name, as the loop knows it>
//
// The scaler speaks plain gRPC: keep its port cluster-internal.
package keda

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// keepEnded is how long a window past its expiry is remembered, so the
// loop's late release or extension learns how it ended.
const keepEnded = time.Hour

// window is one lease's warm window.
type window struct {
	app     string
	opened  time.Time
	expires time.Time
	seq     uint64 // the app's open count when it opened
}

// Registry holds the warm windows per application. A window counts from
// Open until its expiry or Close, whichever comes first; nothing needs to
// call it when a window expires. Safe for concurrent use.
type Registry struct {
	now func() time.Time

	mu      sync.Mutex
	windows map[string]*window // by lease ID
	seq     map[string]uint64  // by app: windows opened so far
	told    map[string]uint64  // by app: the seq KEDA was last told "active" at
	changed chan struct{}      // closed at the next change
}

// NewRegistry is an empty registry on the clock now (nil: time.Now).
func NewRegistry(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, windows: map[string]*window{}, seq: map[string]uint64{}, told: map[string]uint64{},
		changed: make(chan struct{})}
}

// Now is the registry's clock.
func (r *Registry) Now() time.Time { return r.now() }

// ErrUnknownLease is returned for a lease the registry holds no window of.
var ErrUnknownLease = errors.New("no warm window for this lease")

// Open opens (or, for a lease already open, moves the expiry of) the
// application's window for lease until expires.
func (r *Registry) Open(app, lease string, expires time.Time) error {
	if app == "" || lease == "" {
		return fmt.Errorf("open a warm window: app %q and lease %q are both required", app, lease)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.prune(now)
	if w, ok := r.windows[lease]; ok && w.app == app && w.expires.After(now) {
		w.expires = expires
		r.notify()
		return nil
	}
	// KEDA told "active" while a window still live was open already
	// scales the workload: the new window needs no new answer.
	toldLive := false
	for _, w := range r.windows {
		if w.app == app && w.expires.After(now) && w.seq <= r.told[app] {
			toldLive = true
		}
	}
	r.seq[app]++
	r.windows[lease] = &window{app: app, opened: now, expires: expires, seq: r.seq[app]}
	if toldLive {
		r.told[app] = r.seq[app]
	}
	r.notify()
	return nil
}

// Extend moves a live window's expiry; a window unknown or past its expiry
// is ErrUnknownLease (the lease is gone).
func (r *Registry) Extend(lease string, expires time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.windows[lease]
	if !ok || !w.expires.After(r.now()) {
		return fmt.Errorf("extend %s: %w", lease, ErrUnknownLease)
	}
	w.expires = expires
	r.notify()
	return nil
}

// Ended is how a closed window lived.
type Ended struct {
	App     string
	Opened  time.Time
	Ended   time.Time // the close, or the expiry when that came first
	Expired bool      // it had expired before the close
}

// Close ends lease's window; ErrUnknownLease when none is known.
func (r *Registry) Close(lease string) (Ended, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.windows[lease]
	if !ok {
		return Ended{}, fmt.Errorf("close %s: %w", lease, ErrUnknownLease)
	}
	delete(r.windows, lease)
	now := r.now()
	e := Ended{App: w.app, Opened: w.opened, Ended: now}
	if !w.expires.After(now) {
		e.Ended, e.Expired = w.expires, true
	}
	r.notify()
	return e, nil
}

// State is an application's windows at one instant.
type State struct {
	Live       int       // windows open now
	Seq        uint64    // windows ever opened for the app
	NextExpiry time.Time // the earliest expiry of a live window (zero: none)
}

// State is app's state now.
func (r *Registry) State(app string) State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state(app, r.now())
}

func (r *Registry) state(app string, now time.Time) State {
	s := State{Seq: r.seq[app]}
	for _, w := range r.windows {
		if w.app != app || !w.expires.After(now) {
			continue
		}
		s.Live++
		if s.NextExpiry.IsZero() || w.expires.Before(s.NextExpiry) {
			s.NextExpiry = w.expires
		}
	}
	return s
}

// Changed is closed at the next change (a window opened, extended or
// closed, or KEDA told of a new window); an expiry is not a change: wait
// for State's NextExpiry for it.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Told records that KEDA was answered "active" for app while seq windows
// had been opened.
func (r *Registry) Told(app string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.told[app] {
		r.told[app] = seq
		r.notify()
	}
}

// toldOf says whether KEDA was told "active" since lease's window opened,
// and the window's app; known is false for a lease with no live window.
func (r *Registry) toldOf(lease string) (app string, told, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.windows[lease]
	if !ok || !w.expires.After(r.now()) {
		return "", false, false
	}
	return w.app, r.told[w.app] >= w.seq, true
}

func (r *Registry) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// prune forgets windows ended long ago whose loop never released them.
func (r *Registry) prune(now time.Time) {
	for id, w := range r.windows {
		if now.Sub(w.expires) > keepEnded {
			delete(r.windows, id)
		}
	}
}
