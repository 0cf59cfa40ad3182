package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// defaultSampleMB is how much of the file a shadow or a request reads and
// writes when the caller names no sample.
const defaultSampleMB = 8

func checkSample(v float64) error {
	if math.IsNaN(v) || v < 0 || v > api.MaxSampleMB {
		return errorf(api.CodeBadRequest, "sample_mb %g is outside 0..%d", v, api.MaxSampleMB)
	}
	return nil
}

func sampleBytes(mb float64) int64 {
	if mb == 0 {
		mb = defaultSampleMB
	}
	return mbToBytes(mb)
}

func checkShadow(r api.ShadowRequest) error {
	return firstError(errors.Join(checkRatio("read_ratio", r.ReadRatio), checkSample(r.SampleMB)))
}

// Shadow runs a small slice of the expected work on a ready lease: it
// writes every page of the prepared memory, asks the kernel how much of
// it is resident, and reads and writes a sample of the prepared file with
// the application's read ratio.
func (a *Agent) Shadow(ctx context.Context, id string, r api.ShadowRequest) (api.ShadowResult, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.ShadowResult{}, err
	}
	if err := checkShadow(r); err != nil {
		return api.ShadowResult{}, err
	}
	if err := a.begin(); err != nil {
		return api.ShadowResult{}, err
	}
	defer a.ops.Done()
	l, err := a.acquire(ctx, id, "")
	if err != nil {
		return api.ShadowResult{}, err
	}
	if l.inst != nil {
		res, err := a.instanceShadow(ctx, l)
		if err == nil {
			a.mu.Lock()
			l.shadows++
			a.mu.Unlock()
			a.prom.shadow.Observe(res.TotalMS / 1000)
		}
		return res, err
	}
	// Taken under a.mu while the lease is live, so no free can be running.
	l.use.RLock()
	mark := byte(l.shadows + 2)
	a.mu.Unlock()
	res, err := a.shadowWork(l, r, mark)
	l.use.RUnlock()
	if err != nil {
		return api.ShadowResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("shadow on lease %s: %v", id, err)}
	}
	a.mu.Lock()
	l.shadows++
	a.mu.Unlock()
	a.prom.shadow.Observe(res.TotalMS / 1000)
	return res, nil
}

func (a *Agent) shadowWork(l *lease, r api.ShadowRequest, mark byte) (api.ShadowResult, error) {
	res := api.ShadowResult{PreparationID: l.id}
	start := time.Now()
	l.mem.touch(mark)
	resident, err := l.mem.residentBytes()
	if err != nil {
		return res, err
	}
	res.ResidentMB = mbOf(resident)
	a.stretch(start, 0)
	res.TouchMS = msOf(time.Since(start))

	ioStart := time.Now()
	io, err := l.disk.sampleIO(sampleBytes(r.SampleMB), r.ReadRatio, make([]byte, ioChunk))
	if err != nil {
		return res, err
	}
	a.stretch(ioStart, 0)
	res.IOMS = msOf(time.Since(ioStart))
	res.ReadMB, res.WriteMB = mbOf(io.readBytes), mbOf(io.writeBytes)
	res.TotalMS = msOf(time.Since(start))
	return res, nil
}

func (a *Agent) checkServe(r api.ServeRequest) error {
	errs := []error{badID("request_id", r.RequestID), badID("app", r.App)}
	if r.PreparationID != "" {
		errs = append(errs, badID("preparation_id", r.PreparationID))
	}
	errs = append(errs,
		checkSize("memory_mb", r.MemoryMB), checkSize("disk_mb", r.DiskMB), checkCPU("cpu_milli", r.CPUMilli),
		checkRatio("read_ratio", r.ReadRatio), checkSample(r.SampleMB))
	if math.IsNaN(r.WorkMS) || r.WorkMS < 0 || r.WorkMS > api.MaxWorkMS {
		errs = append(errs, errorf(api.CodeBadRequest, "work_ms %g is outside 0..%d", r.WorkMS, api.MaxWorkMS))
	}
	if err := firstError(errors.Join(errs...)); err != nil {
		return err
	}
	return checkKeep(r)
}

// checkKeep checks the keep fields: keep_id and keep_ttl_seconds come
// together, and the keep sizes are sizes.
func checkKeep(r api.ServeRequest) error {
	asked := r.KeepID != "" || r.KeepTTLSeconds != 0 || r.KeepMemoryMB != 0 || r.KeepDiskMB != 0 || r.KeepCPUMilli != 0
	if !asked {
		return nil
	}
	if r.KeepID == "" {
		return errorf(api.CodeBadRequest, "keep_id is required to keep the instance (keep_ttl_seconds or a keep size was given)")
	}
	if err := badID("keep_id", r.KeepID); err != nil {
		return err
	}
	if r.KeepID == r.PreparationID {
		return errorf(api.CodeBadRequest, "keep_id %s names the lease the request is served on; a kept instance needs a new ID", r.KeepID)
	}
	if r.KeepTTLSeconds == 0 {
		return errorf(api.CodeBadRequest, "keep_ttl_seconds is required with keep_id")
	}
	if _, err := checkTTL("keep_ttl_seconds", r.KeepTTLSeconds); err != nil {
		return err
	}
	return firstError(errors.Join(checkSize("keep_memory_mb", r.KeepMemoryMB), checkSize("keep_disk_mb", r.KeepDiskMB),
		checkCPU("keep_cpu_milli", r.KeepCPUMilli)))
}

// Serve runs one request, once per request ID: a retry of a request served
// before (or still running) gets the first result, marked Replayed.
//
// Naming a ready lease of the same application serves it warm on the
// lease's memory and file, which stay the lease's afterwards; a lease that
// is busy, too small, gone or unknown refuses, or with FallbackCold serves
// cold. Cold, the resources are allocated on the spot and freed after the
// request, unless KeepID asks to keep them as a new lease.
func (a *Agent) Serve(ctx context.Context, r api.ServeRequest) (api.ServeResult, error) {
	if err := a.checkServe(r); err != nil {
		return api.ServeResult{}, err
	}
	if err := a.begin(); err != nil {
		return api.ServeResult{}, err
	}
	defer a.ops.Done()
	e, first, err := a.served.begin(r.RequestID, r.App)
	if err != nil {
		return api.ServeResult{}, err
	}
	if !first {
		select {
		case <-e.done:
		case <-ctx.Done():
			return api.ServeResult{}, fmt.Errorf("waiting for the first serve of request %s: %w", r.RequestID, ctx.Err())
		}
		if e.err != nil {
			return api.ServeResult{}, e.err
		}
		a.counters.replayed.Add(1)
		res := e.res
		res.Replayed = true
		return res, nil
	}
	res, err := a.serve(ctx, r)
	a.served.end(e, res, err)
	return res, err
}

func (a *Agent) serve(ctx context.Context, r api.ServeRequest) (api.ServeResult, error) {
	res := api.ServeResult{RequestID: r.RequestID, HostID: a.cfg.HostID}
	start := time.Now()
	if r.PreparationID != "" {
		// With a queue, a busy lease is waited for a little and the miss is
		// counted only when the request falls back cold after all.
		q := r
		q.FallbackCold = r.FallbackCold && a.cfg.QueueWait <= 0
		l, err := a.take(ctx, q)
		if err != nil && CodeOf(err) == api.CodeLeaseBusy && a.cfg.QueueWait > 0 {
			// Wait for a request to end (on any lease: then try again),
			// neither holding nor polling the agent's lock.
			t := time.NewTimer(a.cfg.QueueWait - time.Since(start))
		queued:
			for err != nil && CodeOf(err) == api.CodeLeaseBusy {
				freed := a.slotFreed()
				a.queueTries.Add(1)
				// Again, now that no end can be missed.
				if l, err = a.take(ctx, q); err == nil || CodeOf(err) != api.CodeLeaseBusy {
					break
				}
				select {
				case <-freed:
				case <-t.C:
					break queued
				case <-ctx.Done():
					break queued
				}
			}
			t.Stop()
		}
		if err != nil && CodeOf(err) == api.CodeLeaseBusy && q.FallbackCold != r.FallbackCold {
			a.countBusyFallback(r.PreparationID)
		}
		switch {
		case err == nil:
			return a.serveWarm(l, r, res, start)
		case r.FallbackCold && fallbackable(err):
			res.FallbackReason, res.FallbackCode = err.Error(), CodeOf(err)
		default:
			return api.ServeResult{}, err
		}
	}
	return a.serveCold(ctx, r, res, start)
}

// waitForLease serves a request whose lease was busy and beside which no
// cold instance fits (refusal says why) on the lease, once the lease can
// take it: an instance queues the request rather than take a core that is
// promised elsewhere. The busy fallback counted for it is taken back. If
// the lease ends meanwhile the request is served cold if it fits then;
// when ctx ends first it is refused with the capacity refusal.
func (a *Agent) waitForLease(ctx context.Context, r api.ServeRequest, start time.Time, refusal error) (api.ServeResult, error) {
	q := r
	q.FallbackCold = false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.prom.refused.Inc()
			return api.ServeResult{}, refusal
		case <-tick.C:
		}
		l, err := a.take(ctx, q)
		res := api.ServeResult{RequestID: r.RequestID, HostID: a.cfg.HostID}
		switch {
		case err == nil:
			a.uncountBusyFallback(r.PreparationID)
			return a.serveWarm(l, r, res, start)
		case CodeOf(err) == api.CodeLeaseBusy:
			continue
		case fallbackable(err):
			res.FallbackReason, res.FallbackCode = err.Error(), CodeOf(err)
			return a.serveCold(ctx, r, res, start)
		default:
			return api.ServeResult{}, err
		}
	}
}

// uncountBusyFallback takes back the busy fallback counted for a request
// that ended up served warm on its lease after all.
func (a *Agent) uncountBusyFallback(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.leases[id]; ok && l.fbConc > 0 {
		l.fbConc--
	}
	a.counters.fbConc.Add(-1)
}

// slotFreed is closed when a request on a lease next ends.
func (a *Agent) slotFreed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.freed == nil {
		a.freed = make(chan struct{})
	}
	return a.freed
}

// countBusyFallback counts a request that waited for a busy lease in vain
// and is served cold.
func (a *Agent) countBusyFallback(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.leases[id]; ok {
		l.fbConc++
	}
	a.counters.fbConc.Add(1)
}

// take puts a request on a ready lease: same application, fits the lease,
// and fewer than MaxConcurrent requests already on it. Misses that will be
// served cold are counted on the lease. The lease's use lock is read-held
// on success.
func (a *Agent) take(ctx context.Context, r api.ServeRequest) (*lease, error) {
	l, err := a.acquire(ctx, r.PreparationID, r.App)
	if err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if l.inst != nil {
		return nil, errorf(api.CodeConflict, "lease %s is a process instance of %s: send its requests to %s",
			l.id, l.app, api.InstancePath(l.id, "/..."))
	}
	if exceeds(r.MemoryMB, l.memMB) || exceeds(r.DiskMB, l.diskMB) || r.CPUMilli > l.cpuMilli {
		if r.FallbackCold {
			l.fbOversize++
			a.counters.fbOversize.Add(1)
		}
		return nil, errorf(api.CodeLeaseTooSmall,
			"lease %s holds %g MB memory, %g MB disk, %d millicores; the request needs %g MB, %g MB, %d",
			l.id, l.memMB, l.diskMB, l.cpuMilli, r.MemoryMB, r.DiskMB, r.CPUMilli)
	}
	if l.inflight >= l.maxConc {
		if r.FallbackCold {
			l.fbConc++
			a.counters.fbConc.Add(1)
		}
		return nil, errorf(api.CodeLeaseBusy,
			"lease %s already serves %d requests, its limit (one per whole core of its %d millicores, at least one)",
			l.id, l.inflight, l.cpuMilli)
	}
	l.startRequest(time.Now())
	return l, nil
}

// serveWarm runs the request on the lease's resources, which stay the
// lease's.
func (a *Agent) serveWarm(l *lease, r api.ServeRequest, res api.ServeResult, start time.Time) (api.ServeResult, error) {
	setup := time.Since(start)
	workStart := time.Now()
	werr := a.work(l.mem, l.disk, r)
	work := time.Since(workStart)
	a.endRequest(l)
	if werr != nil {
		return api.ServeResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("request %s on lease %s: %v", r.RequestID, l.id, werr)}
	}
	res.Warm, res.PreparationID = true, l.id
	res.SetupMS, res.WorkMS = msOf(setup), msOf(work)
	res.TotalMS = msOf(time.Since(start))
	a.counters.servedWarm.Add(1)
	a.prom.serve.WithLabelValues("warm").Observe(res.TotalMS / 1000)
	return res, nil
}

// endRequest ends a request on a lease: its slot, its busy time and its use
// lock, and wakes the requests queued for a slot.
func (a *Agent) endRequest(l *lease) {
	a.mu.Lock()
	l.inflight--
	if l.inflight == 0 {
		l.busy += time.Since(l.busySince)
	}
	if a.freed != nil {
		close(a.freed)
		a.freed = nil
	}
	a.mu.Unlock()
	l.use.RUnlock()
}

// startRequest puts a request on a lease; a.mu must be held, and the lease
// live and below its limit.
func (l *lease) startRequest(now time.Time) {
	if l.inflight == 0 {
		l.busySince = now
	}
	l.inflight++
	l.served++
	l.lastServed = now
	// Taken under a.mu while the lease is live, so no free can be running.
	l.use.RLock()
}

// coldCPU is the CPU a cold serve holds while it runs: the request's
// millicores, at least one core (all the host has, when it has less). Its
// work keeps a core busy, so it is admitted like a lease's request: the
// cores promised to leases stay theirs.
func (a *Agent) coldCPU(r api.ServeRequest) int64 {
	return max(r.CPUMilli, min(1000, a.cfg.CPUMilli))
}

// admitCold admits a cold serve: the lease it keeps (KeepID), when that
// fits, and what the request holds while it runs beyond it (all of its
// need without a kept lease; with one, the CPU the kept lease does not
// reserve). A refused serve keeps nothing.
func (a *Agent) admitCold(r api.ServeRequest) (kl *lease, run usage, keepRefused string, err error) {
	need := usage{mbToBytes(r.MemoryMB), mbToBytes(r.DiskMB), a.coldCPU(r)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.KeepID != "" {
		kl, keepRefused = a.keepLocked(r)
	}
	run = need
	if kl != nil {
		run = usage{cpu: max(0, need.cpu-kl.need.cpu)}
	}
	if err := a.admit(run); err != nil {
		if kl != nil {
			delete(a.leases, kl.id)
			a.reserved = a.reserved.sub(kl.need)
		}
		return nil, usage{}, "", err
	}
	a.reserved = a.reserved.add(run)
	a.cold++
	return kl, run, keepRefused, nil
}

// serveCold allocates the request's resources, runs it, and frees them
// afterwards or keeps them as a new lease. A request that fell back from
// its busy lease and finds no room waits for the lease instead.
func (a *Agent) serveCold(ctx context.Context, r api.ServeRequest, res api.ServeResult, start time.Time) (api.ServeResult, error) {
	kl, run, keepRefused, err := a.admitCold(r)
	if err != nil {
		if res.FallbackCode == api.CodeLeaseBusy && CodeOf(err) == api.CodeOverCapacity {
			return a.waitForLease(ctx, r, start, err)
		}
		a.prom.refused.Inc()
		return api.ServeResult{}, err
	}
	res.KeepRefused = keepRefused

	var (
		mem  *region
		disk *storage
	)
	if kl != nil {
		mem, disk, err = a.allocate(kl.need, leaseFile(a.cfg.DataDir, kl.id))
	} else {
		mem, disk, err = a.allocate(run, coldFile(a.cfg.DataDir, r.RequestID))
	}
	setup := time.Since(start)
	if err != nil {
		if kl != nil {
			_ = a.finishPreparing(kl, nil, nil, nil, err, setup)
		}
		a.endCold(run)
		return api.ServeResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("cold set-up for request %s: %v", r.RequestID, err)}
	}
	workStart := time.Now()
	werr := a.work(mem, disk, r)
	work := time.Since(workStart)

	switch {
	case kl != nil && werr != nil:
		_ = a.finishPreparing(kl, mem, disk, nil, werr, setup)
		a.endCold(run)
	case kl != nil:
		if perr := a.finishPreparing(kl, mem, disk, nil, nil, setup); perr != nil {
			res.KeepRefused = perr.Error()
		} else {
			a.mu.Lock()
			res.Kept, res.KeptID, res.KeptExpires = true, kl.id, kl.expires
			a.mu.Unlock()
			a.counters.kept.Add(1)
			a.log.Info("cold instance kept as a lease", "preparation", kl.id, "app", kl.app, "request", r.RequestID,
				"memory_mb", kl.memMB, "ttl", kl.ttl)
		}
		a.endCold(run)
	default:
		// Free after answering; the capacity returns when the memory is gone.
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			_ = errors.Join(mem.free(), disk.free())
			a.endCold(run)
		}()
	}
	if werr != nil {
		return api.ServeResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("request %s: %v", r.RequestID, werr)}
	}
	res.SetupMS, res.WorkMS = msOf(setup), msOf(work)
	res.TotalMS = msOf(time.Since(start))
	a.counters.servedCold.Add(1)
	a.prom.serve.WithLabelValues("cold").Observe(res.TotalMS / 1000)
	return res, nil
}

// keepLocked admits the lease a cold request asks to keep, like a reserve:
// a new ID, and room for the larger of the request's and the keep sizes.
// It returns the lease (preparing until the request ends) or why nothing
// will be kept. a.mu must be held.
func (a *Agent) keepLocked(r api.ServeRequest) (*lease, string) {
	if _, live := a.leases[r.KeepID]; live {
		return nil, fmt.Sprintf("%s: lease %s already exists", api.CodeConflict, r.KeepID)
	}
	if ts, ok := a.ended.get(r.KeepID); ok {
		return nil, fmt.Sprintf("%s: preparation %s already ended (%s at %s%s)", api.CodeGone, r.KeepID,
			ts.state, ts.at.UTC().Format(time.RFC3339), noteOf(ts))
	}
	memMB, diskMB, cpu := max(r.MemoryMB, r.KeepMemoryMB), max(r.DiskMB, r.KeepDiskMB), max(r.CPUMilli, r.KeepCPUMilli)
	need := usage{mbToBytes(memMB), mbToBytes(diskMB), cpu}
	if err := a.admit(need); err != nil {
		return nil, err.Error()
	}
	ttl, _ := checkTTL("keep_ttl_seconds", r.KeepTTLSeconds) // checked in checkKeep
	kl := newLease(r.KeepID, r.App, memMB, diskMB, cpu, need, ttl)
	kl.keptFrom = r.RequestID
	a.leases[kl.id] = kl
	a.reserved = a.reserved.add(need)
	return kl, ""
}

// fallbackable says whether a lease that cannot take a request may be
// replaced by a cold serve. A lease of another application never is: that
// is a caller's bug.
func fallbackable(err error) bool {
	switch CodeOf(err) {
	case api.CodeNotFound, api.CodeGone, api.CodeLeaseBusy, api.CodeLeaseTooSmall:
		return true
	}
	return false
}

// exceeds says a request's size is larger than a lease's, ignoring float
// noise: sizes reach the agent through averages (an app's profile is a sum
// over requests divided by their count), and 111 MB must fit a lease of
// 110.99999999999999 MB.
func exceeds(need, have float64) bool {
	return need > have+1e-6*max(1, have)
}

func (a *Agent) endCold(need usage) {
	a.mu.Lock()
	a.reserved = a.reserved.sub(need)
	a.cold--
	a.mu.Unlock()
}

// work is the request itself: write every page of its memory, read and
// write a sample of its file, then WorkMS of computation (slower hosts take
// proportionally longer).
func (a *Agent) work(mem *region, disk *storage, r api.ServeRequest) error {
	start := time.Now()
	mem.touch(3)
	if _, err := disk.sampleIO(sampleBytes(r.SampleMB), r.ReadRatio, make([]byte, ioChunk)); err != nil {
		return err
	}
	a.stretch(start, 0)
	if r.WorkMS > 0 {
		d := time.Duration(r.WorkMS / a.cfg.Speed * float64(time.Millisecond))
		if a.cfg.SleepWork {
			time.Sleep(d)
		} else {
			spin(mem, d)
		}
	}
	return nil
}

// spin keeps one core busy for d, reading the request's memory.
func spin(mem *region, d time.Duration) {
	deadline := time.Now().Add(d)
	var sum byte
	for i := 0; time.Now().Before(deadline); i++ {
		for j := 0; j < 4096; j++ {
			sum += byte(i*j) ^ byte(j>>3)
		}
		if len(mem.mem) > 0 {
			sum += mem.mem[(i*pageSize)%len(mem.mem)]
		}
	}
	sink = sum
}

var sink byte
