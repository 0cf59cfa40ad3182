package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/instance"
	"github.com/forewarm/forewarm/appspec"
)

// lease is one reservation: a warm instance of its application. Fields
// other than use and the resources are guarded by Agent.mu.
type lease struct {
	id, app  string
	memMB    float64
	diskMB   float64
	cpuMilli int64
	need     usage
	ttl      time.Duration
	created  time.Time
	readyAt  time.Time // zero while preparing
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
	keptFrom      string // the cold request whose instance became this lease

	// Its use as a warm instance.
	maxConc    int
	inflight   int
	served     int64
	busy       time.Duration // time with at least one request in flight, before busySince
	busySince  time.Time
	lastServed time.Time
	fbConc     int64
	fbOversize int64
	extensions int

	// use is read-held by shadows and served requests and write-held while
	// freeing, so memory is never unmapped under them.
	use   sync.RWMutex
	mem   *region
	disk  *storage
	freed bool // guarded by use

	// A process instance (spec not nil): its spec, folder, the process
	// once started (nil while preparing), the scratch phase, and the
	// start's context, cancelled by a release while preparing.
	spec        *appspec.Spec
	folder      string
	inst        *instance.Instance
	scratchMS   float64
	startWaitMS float64 // waiting for one of the host's start slots
	startCtx    context.Context
	cancelStart context.CancelFunc
}

func newLease(id, app string, memMB, diskMB float64, cpuMilli int64, need usage, ttl time.Duration) *lease {
	return &lease{
		id: id, app: app, memMB: memMB, diskMB: diskMB, cpuMilli: cpuMilli,
		need: need, ttl: ttl, created: time.Now(), maxConc: api.MaxConcurrent(cpuMilli),
		state: api.StatePreparing, ready: make(chan struct{}),
	}
}

// useAt is the lease's use until now; a.mu must be held.
func (l *lease) useAt(now time.Time) api.LeaseUse {
	u := api.LeaseUse{
		RequestsServed: l.served, InFlight: l.inflight, MaxConcurrent: l.maxConc,
		FallbackConcurrency: l.fbConc, FallbackOversize: l.fbOversize,
		LastServed: l.lastServed, Extensions: l.extensions,
	}
	if l.readyAt.IsZero() {
		return u
	}
	busy := l.busy
	if l.inflight > 0 {
		busy += now.Sub(l.busySince)
	}
	life := now.Sub(l.readyAt)
	u.BusyMBs = l.memMB * busy.Seconds()
	u.IdleMBs = l.memMB * max(0, life-busy).Seconds()
	return u
}

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

// checkTTL turns a TTL in seconds into a duration, refusing one outside
// api.MinTTL..api.MaxTTL.
func checkTTL(field string, secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || secs < api.MinTTL.Seconds() || secs > api.MaxTTL.Seconds() {
		return 0, errorf(api.CodeBadRequest, "%s %g is outside %g..%g", field, secs, api.MinTTL.Seconds(), api.MaxTTL.Seconds())
	}
	return time.Duration(secs * float64(time.Second)), nil
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
	if r.SpecVersion != "" {
		if err := badID("spec_version", r.SpecVersion); err != nil {
			return 0, err
		}
	}
	spec, err := a.specFor(r)
	if err != nil {
		return 0, err
	}
	if err := checkSomething(withSpecSizes(r, spec)); err != nil {
		return 0, err
	}
	if r.TTLSeconds == 0 {
		return a.cfg.DefaultTTL, nil
	}
	return checkTTL("ttl_seconds", r.TTLSeconds)
}

// checkSomething refuses a reserve of nothing (its sizes once a spec has
// filled them in).
func checkSomething(r api.ReserveRequest) error {
	if r.MemoryMB == 0 && r.DiskMB == 0 && r.CPUMilli == 0 {
		return errorf(api.CodeBadRequest, "a lease must reserve something: memory_mb, disk_mb and cpu_milli are all 0")
	}
	return nil
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
// created is false for a repeat. An application with a spec here gets a
// process instance (sized at least as its spec says); one without, a memory
// reservation.
func (a *Agent) Reserve(ctx context.Context, r api.ReserveRequest) (l api.Lease, created bool, err error) {
	ttl, err := a.checkReserve(r)
	if err != nil {
		return api.Lease{}, false, err
	}
	spec, err := a.specFor(r)
	if err != nil {
		return api.Lease{}, false, err
	}
	r = withSpecSizes(r, spec)
	if err := a.begin(); err != nil {
		return api.Lease{}, false, err
	}
	defer a.ops.Done()

	need := usage{mbToBytes(r.MemoryMB), mbToBytes(r.DiskMB), r.CPUMilli}
	a.mu.Lock()
	if old, ok := a.leases[r.PreparationID]; ok {
		a.mu.Unlock()
		if old.app != r.App || old.memMB != r.MemoryMB || old.diskMB != r.DiskMB || old.cpuMilli != r.CPUMilli ||
			(old.spec == nil) != (spec == nil) || (old.spec != nil && old.spec.Version != spec.Version) {
			return api.Lease{}, false, errorf(api.CodeConflict,
				"preparation %s already holds a different lease (app %s%s, %g MB memory, %g MB disk, %d millicores)",
				r.PreparationID, old.app, specNote(old.spec), old.memMB, old.diskMB, old.cpuMilli)
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
	if ts, ok := a.ended.get(r.PreparationID); ok {
		a.mu.Unlock()
		return api.Lease{}, false, errorf(api.CodeGone, "preparation %s already ended (%s at %s%s); use a new preparation ID",
			r.PreparationID, ts.state, ts.at.UTC().Format(time.RFC3339), noteOf(ts))
	}
	if err := a.admit(need); err != nil {
		a.mu.Unlock()
		a.prom.refused.Inc()
		return api.Lease{}, false, err
	}
	nl := newLease(r.PreparationID, r.App, r.MemoryMB, r.DiskMB, r.CPUMilli, need, ttl)
	if spec != nil {
		nl.spec, nl.maxConc = spec, spec.Concurrency
		nl.folder = instance.Folder(a.cfg.DataDir, nl.id)
		nl.startCtx, nl.cancelStart = context.WithCancel(a.startCtx)
	}
	a.leases[nl.id] = nl
	a.reserved = a.reserved.add(need)
	a.mu.Unlock()

	// Allocate outside the lock: other calls go on meanwhile.
	start := time.Now()
	var (
		mem  *region
		disk *storage
		inst *instance.Instance
		perr error
	)
	if spec != nil {
		disk, inst, perr = a.prepareInstance(nl)
		nl.cancelStart()
	} else {
		mem, disk, perr = a.allocate(need, leaseFile(a.cfg.DataDir, nl.id))
	}
	prepare := time.Since(start)
	if err := a.finishPreparing(nl, mem, disk, inst, perr, prepare); err != nil {
		return api.Lease{}, false, err
	}
	a.prom.prepare.Observe(prepare.Seconds())
	a.counters.reserved.Add(1)
	if inst != nil {
		a.watchInstance(nl, inst)
		v := inst.View()
		a.log.Info("instance ready", "preparation", nl.id, "app", nl.app, "spec_version", spec.Version, "pid", v.PID,
			"port", v.Port, "cgroup", v.Cgroup, "memory_limit_mb", nl.memMB, "cpu_milli", nl.cpuMilli, "scratch_mb", nl.diskMB,
			"scratch_ms", nl.scratchMS, "spawn_ms", v.SpawnMS, "ready_ms", v.ReadyMS, "shadow_ms", v.ShadowMS, "ttl", ttl)
	} else {
		a.log.Info("lease ready", "preparation", nl.id, "app", nl.app, "memory_mb", nl.memMB, "disk_mb", nl.diskMB,
			"cpu_milli", nl.cpuMilli, "prepare_ms", nl.prepareMS, "ttl", ttl)
	}
	v, err := a.Lease(nl.id)
	return v, true, err
}

func specNote(s *appspec.Spec) string {
	if s == nil {
		return ""
	}
	return " spec version " + s.Version
}

// finishPreparing makes a preparing lease ready with the resources
// allocated for it, or, when allocation failed or the lease was released
// meanwhile, frees what there is and says why it is not ready.
func (a *Agent) finishPreparing(l *lease, mem *region, disk *storage, inst *instance.Instance, perr error, took time.Duration) error {
	a.mu.Lock()
	l.prepareMS = msOf(took)
	l.mem, l.disk, l.inst = mem, disk, inst
	var coded *Error
	switch {
	case l.releaseWanted:
		l.prepErr = errorf(api.CodeGone, "preparation %s was released while it was being prepared", l.id)
	case errors.As(perr, &coded):
		l.prepErr = coded
	case perr != nil:
		l.prepErr = &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("preparing lease %s: %v", l.id, perr)}
	default:
		now := time.Now()
		l.state = api.StateReady
		l.readyAt = now
		l.expires = now.Add(l.ttl)
	}
	if l.prepErr != nil && a.leases[l.id] == l {
		// Failed: nobody else will find it. (A released one is gone already.)
		delete(a.leases, l.id)
	}
	err := l.prepErr
	close(l.ready) // readers of prepErr wait for this
	a.mu.Unlock()

	if err != nil {
		if perr != nil && CodeOf(err) != api.CodeGone { // a start stopped by its release is no failure
			a.log.Error("lease preparation failed", "preparation", l.id, "app", l.app, "err", perr)
			if l.spec != nil {
				a.prom.instStartFailed.Inc()
			}
		}
		_ = a.freeLease(l) // frees what was allocated and returns the capacity
	}
	return err
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

// freeLease unmaps the memory and removes the file, waiting for shadows
// and requests still using them, then returns the capacity. The lease must
// already be out of a.leases. Freeing twice does nothing.
func (a *Agent) freeLease(l *lease) error {
	l.use.Lock()
	if l.freed {
		l.use.Unlock()
		return nil
	}
	l.freed = true
	var err error
	if l.inst != nil {
		err = l.inst.Stop()
	}
	err = errors.Join(err, l.mem.free(), l.disk.free())
	if l.folder != "" {
		if rerr := os.RemoveAll(l.folder); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove instance folder: %w", rerr))
		}
	}
	l.use.Unlock()
	a.unreserve(l.need)
	if err != nil {
		a.log.Error("freeing lease", "preparation", l.id, "err", err)
	}
	return err
}

// freeLater frees l in the background (requests still run on it).
func (a *Agent) freeLater(l *lease) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		_ = a.freeLease(l)
	}()
}

// retireLocked takes a ready lease out of the live ones and remembers how
// it ended; the caller frees it. a.mu must be held.
func (a *Agent) retireLocked(l *lease, state, note string, now time.Time) tombstone {
	use := l.useAt(now)
	delete(a.leases, l.id)
	if l.state == api.StatePreparing {
		l.releaseWanted = true
	}
	ts := tombstone{app: l.app, state: state, note: note, at: now, held: now.Sub(l.created).Seconds(), use: use}
	if l.inst != nil {
		ts.inst = instanceView(l.inst, l.scratchMS, l.startWaitMS)
		if ts.inst.Exit == "" {
			ts.inst.Exit = "stopped"
		}
	}
	a.ended.add(l.id, ts)
	a.endedBusy += use.BusyMBs
	a.endedIdle += use.IdleMBs
	return ts
}

func noteOf(ts tombstone) string {
	if ts.note == "" {
		return ""
	}
	return ": " + ts.note
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
	v := a.viewLocked(l, time.Now())
	inst, scratchMS, waitMS := l.inst, l.scratchMS, l.startWaitMS
	a.mu.Unlock()
	if v.State == api.StateReady {
		a.measure(l, &v)
		if v.Instance = instanceView(inst, scratchMS, waitMS); v.Instance != nil {
			v.ResidentMB = v.Instance.MemoryMB
		}
	}
	return v, nil
}

// Leases lists the live leases, oldest first.
func (a *Agent) Leases() []api.Lease {
	now := time.Now()
	a.mu.Lock()
	out := make([]api.Lease, 0, len(a.leases))
	type started struct {
		i                 int
		inst              *instance.Instance
		scratchMS, waitMS float64
	}
	var insts []started
	for _, l := range a.leases {
		if l.inst != nil {
			insts = append(insts, started{len(out), l.inst, l.scratchMS, l.startWaitMS})
		}
		out = append(out, a.viewLocked(l, now))
	}
	a.mu.Unlock()
	for _, s := range insts {
		out[s.i].Instance = instanceView(s.inst, s.scratchMS, s.waitMS)
		out[s.i].ResidentMB = out[s.i].Instance.MemoryMB
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

func (a *Agent) viewLocked(l *lease, now time.Time) api.Lease {
	return api.Lease{
		PreparationID: l.id, App: l.app, HostID: a.cfg.HostID, State: l.state,
		MemoryMB: l.memMB, DiskMB: l.diskMB, CPUMilli: l.cpuMilli,
		Created: l.created, Expires: l.expires, PrepareMS: l.prepareMS, Shadows: l.shadows,
		KeptFrom: l.keptFrom, LeaseUse: l.useAt(now),
	}
}

// measure fills in what the kernel says the lease really holds.
func (a *Agent) measure(l *lease, v *api.Lease) {
	l.use.RLock()
	defer l.use.RUnlock()
	if l.freed {
		return
	}
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
	if ts, ok := a.ended.get(id); ok {
		return errorf(api.CodeGone, "lease %s already ended (%s at %s%s)", id, ts.state, ts.at.UTC().Format(time.RFC3339), noteOf(ts))
	}
	return errorf(api.CodeNotFound, "no lease %s on host %s", id, a.cfg.HostID)
}

// Release frees a lease. Releasing a lease that already ended is not an
// error (Released is false). Releasing an ID the agent never knew is
// not_found, and leaves a tombstone: a reserve for it that arrives late is
// then refused instead of creating a lease nobody will release. Requests
// still running on the lease finish first; its resources return after.
func (a *Agent) Release(id string) (api.ReleaseResult, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.ReleaseResult{}, err
	}
	now := time.Now()
	a.mu.Lock()
	l, ok := a.leases[id]
	if !ok {
		ts, was := a.ended.get(id)
		if !was {
			a.ended.add(id, tombstone{state: api.StateReleased, note: "released before it was reserved", at: now})
		}
		a.mu.Unlock()
		if was {
			return api.ReleaseResult{PreparationID: id, State: ts.state, Note: ts.note, HeldSeconds: ts.held, EndedAt: ts.at.UTC(),
				LeaseUse: ts.use, Instance: ts.inst}, nil
		}
		return api.ReleaseResult{}, errorf(api.CodeNotFound, "no lease %s on host %s (remembered as released, so a late reserve of it is refused)", id, a.cfg.HostID)
	}
	preparing := l.state == api.StatePreparing
	inflight := l.inflight
	ts := a.retireLocked(l, api.StateReleased, "", now)
	a.mu.Unlock()
	a.counters.released.Add(1)
	res := api.ReleaseResult{PreparationID: id, Released: true, State: api.StateReleased, HeldSeconds: ts.held, LeaseUse: ts.use, Instance: ts.inst}
	switch {
	case preparing:
		if l.cancelStart != nil {
			l.cancelStart() // its instance stops starting; its preparer frees it
		}
		return res, nil
	case inflight > 0:
		a.freeLater(l)
		a.log.Info("lease released; freed when its requests end", "preparation", id, "app", l.app, "in_flight", inflight)
		return res, nil
	}
	err := a.freeLease(l)
	a.log.Info("lease released", "preparation", id, "app", l.app, "held_s", ts.held, "served", ts.use.RequestsServed)
	if err != nil {
		return api.ReleaseResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("releasing lease %s: %v", id, err)}
	}
	return res, nil
}

func checkExtend(r api.ExtendRequest) (time.Duration, error) {
	if r.App != "" {
		if err := badID("app", r.App); err != nil {
			return 0, err
		}
	}
	return checkTTL("ttl_seconds", r.TTLSeconds)
}

// Extend sets a ready lease's expiry to now + the TTL asked for, in place.
func (a *Agent) Extend(id string, r api.ExtendRequest) (api.Lease, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.Lease{}, err
	}
	ttl, err := checkExtend(r)
	if err != nil {
		return api.Lease{}, err
	}
	if err := a.begin(); err != nil {
		return api.Lease{}, err
	}
	defer a.ops.Done()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.leases[id]
	switch {
	case !ok:
		return api.Lease{}, a.missing(id)
	case r.App != "" && l.app != r.App:
		return api.Lease{}, errorf(api.CodeWrongApp, "lease %s belongs to application %s, not %s", id, l.app, r.App)
	case l.state != api.StateReady:
		return api.Lease{}, errorf(api.CodeNotReady, "lease %s is %s; only a ready lease can be extended", id, l.state)
	case now.After(l.expires) && l.inflight == 0:
		a.retireLocked(l, api.StateExpired, "", now)
		a.freeLater(l)
		a.counters.expired.Add(1)
		return api.Lease{}, errorf(api.CodeGone, "lease %s expired at %s", id, l.expires.UTC().Format(time.RFC3339Nano))
	}
	l.expires = now.Add(ttl)
	l.extensions++
	a.counters.extended.Add(1)
	return a.viewLocked(l, now), nil
}

// reap releases every ready lease whose TTL has passed and that no request
// runs on (a request is never cut short: its lease expires when it ends),
// and forgets old tombstones.
func (a *Agent) reap(now time.Time) int {
	a.mu.Lock()
	var expired []*lease
	for _, l := range a.leases {
		if l.state == api.StateReady && l.inflight == 0 && now.After(l.expires) {
			expired = append(expired, l)
		}
	}
	for _, l := range expired {
		a.retireLocked(l, api.StateExpired, "", now)
	}
	a.ended.trim(now)
	a.mu.Unlock()
	for _, l := range expired {
		if l.inst != nil {
			a.freeLater(l) // its stop may take the spec's grace: not in the reaper's way
		} else {
			_ = a.freeLease(l)
		}
		a.counters.expired.Add(1)
		a.log.Info("lease expired", "preparation", l.id, "app", l.app, "held_s", now.Sub(l.created).Seconds())
	}
	return len(expired)
}

// acquire finds a ready lease for a shadow or a request, waiting while it
// is being prepared and reaping it if its TTL has passed. a.mu is held on
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
		if l.state == api.StatePreparing {
			a.mu.Unlock()
			select {
			case <-l.ready:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for lease %s to be ready: %w", id, ctx.Err())
			}
		}
		if now := time.Now(); now.After(l.expires) {
			err := errorf(api.CodeGone, "lease %s expired at %s", id, l.expires.UTC().Format(time.RFC3339Nano))
			if l.inflight > 0 {
				// Requests still run on it; the reaper ends it after them.
				a.mu.Unlock()
				return nil, err
			}
			a.retireLocked(l, api.StateExpired, "", now)
			a.mu.Unlock()
			if l.inst != nil {
				a.freeLater(l)
			} else {
				_ = a.freeLease(l)
			}
			a.counters.expired.Add(1)
			return nil, err
		}
		return l, nil
	}
}
