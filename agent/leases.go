package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// lease is one reservation. Fields other than use and the resources are
// guarded by Agent.mu.
type lease struct {
	id, app  string
	memMB    float64
	diskMB   float64
	cpuMilli int64
	need     usage
	ttl      time.Duration
	created  time.Time
	expires  time.Time // zero while preparing
	state    string
	// ready is closed when preparation ends; prepErr says how.
	ready   chan struct{}
	prepErr error
	// releaseWanted marks a lease released or shut down while preparing;
	// the preparer frees it when done.
	releaseWanted bool
	prepareMS     float64
	shadows       int

	// use is read-held by shadow requests and write-held while freeing,
	// so memory is never unmapped under a running shadow.
	use   sync.RWMutex
	mem   *region
	disk  *storage
	freed bool // guarded by use
}

// keepEnded is how long ended lease IDs are remembered: a late retry of a
// reserve is told the lease ended instead of silently getting a new one.
const keepEnded = time.Hour

func checkSize(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return errorf(api.CodeBadRequest, "%s must be a number ≥ 0, got %g", field, v)
	}
	if v > api.MaxSizeMB {
		return errorf(api.CodeBadRequest, "%s %g is absurd (limit %d MB)", field, v, api.MaxSizeMB)
	}
	return nil
}

func checkCPU(field string, v int64) error {
	if v < 0 || v > api.MaxCPUMilli {
		return errorf(api.CodeBadRequest, "%s %d is outside 0..%d", field, v, api.MaxCPUMilli)
	}
	return nil
}

func checkRatio(field string, v float64) error {
	if math.IsNaN(v) || v < 0 || v > 1 {
		return errorf(api.CodeBadRequest, "%s must be within 0..1, got %g", field, v)
	}
	return nil
}

func badID(field, id string) error {
	if err := api.CheckID(field, id); err != nil {
		return &Error{Code: api.CodeBadRequest, Msg: err.Error()}
	}
	return nil
}

func (a *Agent) checkReserve(r api.ReserveRequest) (time.Duration, error) {
	if err := badID("preparation_id", r.PreparationID); err != nil {
		return 0, err
	}
	if err := badID("app", r.App); err != nil {
		return 0, err
	}
	if err := errors.Join(checkSize("memory_mb", r.MemoryMB), checkSize("disk_mb", r.DiskMB), checkCPU("cpu_milli", r.CPUMilli)); err != nil {
		return 0, firstError(err)
	}
	if r.MemoryMB == 0 && r.DiskMB == 0 && r.CPUMilli == 0 {
		return 0, errorf(api.CodeBadRequest, "a lease must reserve something: memory_mb, disk_mb and cpu_milli are all 0")
	}
	ttl := a.cfg.DefaultTTL
	if r.TTLSeconds != 0 {
		if math.IsNaN(r.TTLSeconds) || r.TTLSeconds < api.MinTTL.Seconds() || r.TTLSeconds > api.MaxTTL.Seconds() {
			return 0, errorf(api.CodeBadRequest, "ttl_seconds %g is outside %g..%g", r.TTLSeconds, api.MinTTL.Seconds(), api.MaxTTL.Seconds())
		}
		ttl = time.Duration(r.TTLSeconds * float64(time.Second))
	}
	return ttl, nil
}

// firstError unwraps a join to its first *Error so one clear code is sent.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil {
				return e
			}
		}
	}
	return err
}

// admit checks need against the free capacity; a.mu must be held.
func (a *Agent) admit(need usage) error {
	free := usage{a.cfg.MemoryMB << 20, a.cfg.DiskMB << 20, a.cfg.CPUMilli}.sub(a.reserved)
	switch {
	case need.mem > free.mem:
		return errorf(api.CodeOverCapacity, "memory: need %.1f MB, %.1f MB free of %d MB on host %s",
			mbOf(need.mem), mbOf(free.mem), a.cfg.MemoryMB, a.cfg.HostID)
	case need.disk > free.disk:
		return errorf(api.CodeOverCapacity, "disk: need %.1f MB, %.1f MB free of %d MB on host %s",
			mbOf(need.disk), mbOf(free.disk), a.cfg.DiskMB, a.cfg.HostID)
	case need.cpu > free.cpu:
		return errorf(api.CodeOverCapacity, "CPU: need %d millicores, %d free of %d on host %s",
			need.cpu, free.cpu, a.cfg.CPUMilli, a.cfg.HostID)
	}
	// A safety net under the configured capacity: never touch memory the
	// kernel says it does not have (that ends in the OOM killer).
	if h := a.sampler.latest(); h.memAvailMB > 0 && need.mem > 0 && mbOf(need.mem) > h.memAvailMB-memHeadroomMB {
		return errorf(api.CodeOverCapacity, "memory: need %.1f MB, but the host has only %.1f MB available (keeping %d MB headroom) on host %s",
			mbOf(need.mem), h.memAvailMB, memHeadroomMB, a.cfg.HostID)
	}
	return nil
}

// memHeadroomMB is memory the agent leaves to the rest of the host.
const memHeadroomMB = 256

// Reserve allocates a lease, or returns the existing one when the same
// preparation ID is reserved again with the same application and sizes.
// created is false for a repeat.
func (a *Agent) Reserve(ctx context.Context, r api.ReserveRequest) (l api.Lease, created bool, err error) {
	ttl, err := a.checkReserve(r)
	if err != nil {
		return api.Lease{}, false, err
	}
	if err := a.begin(); err != nil {
		return api.Lease{}, false, err
	}
	defer a.ops.Done()

	need := usage{mbToBytes(r.MemoryMB), mbToBytes(r.DiskMB), r.CPUMilli}
	a.mu.Lock()
	if old, ok := a.leases[r.PreparationID]; ok {
		a.mu.Unlock()
		if old.app != r.App || old.memMB != r.MemoryMB || old.diskMB != r.DiskMB || old.cpuMilli != r.CPUMilli {
			return api.Lease{}, false, errorf(api.CodeConflict,
				"preparation %s already holds a different lease (app %s, %g MB memory, %g MB disk, %d millicores)",
				r.PreparationID, old.app, old.memMB, old.diskMB, old.cpuMilli)
		}
		select {
		case <-old.ready:
		case <-ctx.Done():
			return api.Lease{}, false, fmt.Errorf("waiting for preparation %s: %w", r.PreparationID, ctx.Err())
		}
		if old.prepErr != nil {
			return api.Lease{}, false, old.prepErr
		}
		v, err := a.Lease(r.PreparationID)
		v.Existing = true
		return v, false, err
	}
	if e, ok := a.ended[r.PreparationID]; ok {
		a.mu.Unlock()
		return api.Lease{}, false, errorf(api.CodeGone, "preparation %s already ended (%s at %s); use a new preparation ID",
			r.PreparationID, e.state, e.at.UTC().Format(time.RFC3339))
	}
	if err := a.admit(need); err != nil {
		a.mu.Unlock()
		a.prom.refused.Inc()
		return api.Lease{}, false, err
	}
	nl := &lease{
		id: r.PreparationID, app: r.App,
		memMB: r.MemoryMB, diskMB: r.DiskMB, cpuMilli: r.CPUMilli,
		need: need, ttl: ttl, created: time.Now(),
		state: api.StatePreparing, ready: make(chan struct{}),
	}
	a.leases[nl.id] = nl
	a.reserved = a.reserved.add(need)
	a.mu.Unlock()

	// Allocate outside the lock: other calls go on meanwhile.
	start := time.Now()
	mem, disk, perr := a.allocate(need, leaseFile(a.cfg.DataDir, nl.id))
	prepare := time.Since(start)

	a.mu.Lock()
	nl.prepErr = perr
	nl.prepareMS = msOf(prepare)
	if perr == nil {
		nl.mem, nl.disk = mem, disk
		nl.state = api.StateReady
		nl.expires = time.Now().Add(ttl)
	}
	abandon := perr != nil || nl.releaseWanted
	if abandon {
		// Failed, or released while preparing: nobody else will find it.
		if a.leases[nl.id] == nl {
			delete(a.leases, nl.id)
		}
		if perr == nil {
			a.ended[nl.id] = endedInfo{app: nl.app, state: api.StateReleased, at: time.Now()}
		}
	}
	close(nl.ready)
	a.mu.Unlock()

	if perr != nil {
		a.unreserve(need)
		a.log.Error("lease preparation failed", "preparation", nl.id, "app", nl.app, "err", perr)
		return api.Lease{}, false, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("preparing lease %s: %v", nl.id, perr)}
	}
	if abandon {
		_ = a.freeLease(nl)
		return api.Lease{}, false, errorf(api.CodeGone, "preparation %s was released while it was being prepared", nl.id)
	}
	a.prom.prepare.Observe(prepare.Seconds())
	a.counters.reserved.Add(1)
	a.log.Info("lease ready", "preparation", nl.id, "app", nl.app, "memory_mb", nl.memMB, "disk_mb", nl.diskMB,
		"cpu_milli", nl.cpuMilli, "prepare_ms", nl.prepareMS, "ttl", ttl)
	v, err := a.Lease(nl.id)
	return v, true, err
}

// allocate really reserves memory and storage, then applies the host's
// artificial slowness.
func (a *Agent) allocate(need usage, path string) (*region, *storage, error) {
	start := time.Now()
	mem, err := allocRegion(a.scaled(need.mem))
	if err != nil {
		return nil, nil, err
	}
	var disk *storage
	if need.disk > 0 {
		disk, err = allocStorage(path, a.scaled(need.disk))
		if err != nil {
			_ = mem.free()
			return nil, nil, err
		}
	}
	a.stretch(start, time.Duration(mbOf(need.mem+need.disk)*float64(a.cfg.SetupPerMB)))
	return mem, disk, nil
}

// scaled is the number of bytes really allocated for a requested size.
func (a *Agent) scaled(bytes int64) int64 {
	if a.cfg.AllocScale <= 0 || a.cfg.AllocScale >= 1 || bytes == 0 {
		return bytes
	}
	return max(1, int64(float64(bytes)*a.cfg.AllocScale))
}

func (a *Agent) unreserve(u usage) {
	a.mu.Lock()
	a.reserved = a.reserved.sub(u)
	a.mu.Unlock()
}

// freeLease unmaps the memory and removes the file, waiting for shadow
// requests still using them, then returns the capacity. The lease must
// already be out of a.leases.
func (a *Agent) freeLease(l *lease) error {
	l.use.Lock()
	if l.freed {
		l.use.Unlock()
		return nil
	}
	l.freed = true
	err := errors.Join(l.mem.free(), l.disk.free())
	l.use.Unlock()
	a.unreserve(l.need)
	if err != nil {
		a.log.Error("freeing lease", "preparation", l.id, "err", err)
	}
	return err
}

// Lease describes one live lease.
func (a *Agent) Lease(id string) (api.Lease, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.Lease{}, err
	}
	a.mu.Lock()
	l, ok := a.leases[id]
	if !ok {
		err := a.missing(id)
		a.mu.Unlock()
		return api.Lease{}, err
	}
	v := a.viewLocked(l)
	a.mu.Unlock()
	if l.state == api.StateReady {
		a.measure(l, &v)
	}
	return v, nil
}

// Leases lists the live leases, oldest first.
func (a *Agent) Leases() []api.Lease {
	a.mu.Lock()
	out := make([]api.Lease, 0, len(a.leases))
	for _, l := range a.leases {
		out = append(out, a.viewLocked(l))
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

func (a *Agent) viewLocked(l *lease) api.Lease {
	return api.Lease{
		PreparationID: l.id, App: l.app, HostID: a.cfg.HostID, State: l.state,
		MemoryMB: l.memMB, DiskMB: l.diskMB, CPUMilli: l.cpuMilli,
		Created: l.created, Expires: l.expires, PrepareMS: l.prepareMS, Shadows: l.shadows,
	}
}

// measure fills in what the kernel says the lease really holds.
func (a *Agent) measure(l *lease, v *api.Lease) {
	l.use.RLock()
	defer l.use.RUnlock()
	if l.mem != nil {
		if n, err := l.mem.residentBytes(); err == nil {
			v.ResidentMB = mbOf(n)
		}
	}
	if l.disk != nil && l.disk.f != nil {
		if n, err := l.disk.allocatedBytes(); err == nil {
			v.DiskAllocatedMB = mbOf(n)
		}
	}
}

// missing explains why id is not live; a.mu must be held.
func (a *Agent) missing(id string) error {
	if e, ok := a.ended[id]; ok {
		return errorf(api.CodeGone, "lease %s already ended (%s at %s)", id, e.state, e.at.UTC().Format(time.RFC3339))
	}
	return errorf(api.CodeNotFound, "no lease %s on host %s", id, a.cfg.HostID)
}

// Release frees a lease. Releasing a lease that already ended is not an
// error (Released is false); releasing one being served is refused.
func (a *Agent) Release(id string) (api.ReleaseResult, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.ReleaseResult{}, err
	}
	a.mu.Lock()
	l, ok := a.leases[id]
	if !ok {
		e, was := a.ended[id]
		a.mu.Unlock()
		if was {
			return api.ReleaseResult{PreparationID: id, State: e.state}, nil
		}
		return api.ReleaseResult{}, errorf(api.CodeNotFound, "no lease %s on host %s", id, a.cfg.HostID)
	}
	switch l.state {
	case api.StateClaimed:
		a.mu.Unlock()
		return api.ReleaseResult{PreparationID: id, State: l.state},
			errorf(api.CodeClaimed, "lease %s is claimed by a request being served; it is freed when that request ends", id)
	case api.StatePreparing:
		l.releaseWanted = true
		delete(a.leases, id)
		a.ended[id] = endedInfo{app: l.app, state: api.StateReleased, at: time.Now()}
		a.mu.Unlock()
		a.counters.released.Add(1)
		return api.ReleaseResult{PreparationID: id, Released: true, State: api.StateReleased}, nil
	}
	delete(a.leases, id)
	a.ended[id] = endedInfo{app: l.app, state: api.StateReleased, at: time.Now()}
	a.mu.Unlock()
	held := time.Since(l.created).Seconds()
	err := a.freeLease(l)
	a.counters.released.Add(1)
	a.log.Info("lease released", "preparation", id, "app", l.app, "held_s", held)
	if err != nil {
		return api.ReleaseResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("releasing lease %s: %v", id, err)}
	}
	return api.ReleaseResult{PreparationID: id, Released: true, State: api.StateReleased, HeldSeconds: held}, nil
}

// reap releases every ready lease whose TTL has passed and forgets ended
// IDs older than keepEnded.
func (a *Agent) reap(now time.Time) int {
	a.mu.Lock()
	var expired []*lease
	for id, l := range a.leases {
		if l.state == api.StateReady && now.After(l.expires) {
			expired = append(expired, l)
			delete(a.leases, id)
			a.ended[id] = endedInfo{app: l.app, state: api.StateExpired, at: now}
		}
	}
	for id, e := range a.ended {
		if now.Sub(e.at) > keepEnded {
			delete(a.ended, id)
		}
	}
	a.mu.Unlock()
	for _, l := range expired {
		_ = a.freeLease(l)
		a.counters.expired.Add(1)
		a.log.Info("lease expired", "preparation", l.id, "app", l.app, "held_s", now.Sub(l.created).Seconds())
	}
	return len(expired)
}

// acquire finds a ready lease for a shadow or a claim, waiting while it is
// being prepared and reaping it if its TTL has passed. a.mu is held on
// return when err is nil.
func (a *Agent) acquire(ctx context.Context, id, app string) (*lease, error) {
	for {
		a.mu.Lock()
		l, ok := a.leases[id]
		if !ok {
			err := a.missing(id)
			a.mu.Unlock()
			return nil, err
		}
		if app != "" && l.app != app {
			a.mu.Unlock()
			return nil, errorf(api.CodeWrongApp, "lease %s belongs to application %s, not %s", id, l.app, app)
		}
		switch l.state {
		case api.StatePreparing:
			a.mu.Unlock()
			select {
			case <-l.ready:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for lease %s to be ready: %w", id, ctx.Err())
			}
		case api.StateClaimed:
			a.mu.Unlock()
			return nil, errorf(api.CodeClaimed, "lease %s is already claimed by another request", id)
		}
		if now := time.Now(); now.After(l.expires) {
			delete(a.leases, id)
			a.ended[id] = endedInfo{app: l.app, state: api.StateExpired, at: now}
			a.mu.Unlock()
			_ = a.freeLease(l)
			a.counters.expired.Add(1)
			return nil, errorf(api.CodeGone, "lease %s expired at %s", id, l.expires.UTC().Format(time.RFC3339Nano))
		}
		return l, nil
	}
}
