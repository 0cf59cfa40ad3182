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

// Shadow runs a small slice of the expected work on a ready lease: it
// writes every page of the prepared memory, asks the kernel how much of
// it is resident, and reads and writes a sample of the prepared file with
// the application's read ratio.
func (a *Agent) Shadow(ctx context.Context, id string, r api.ShadowRequest) (api.ShadowResult, error) {
	if err := badID("preparation ID", id); err != nil {
		return api.ShadowResult{}, err
	}
	if err := firstError(errors.Join(checkRatio("read_ratio", r.ReadRatio), checkSample(r.SampleMB))); err != nil {
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
	// Taken under a.mu while the lease is live, so no free can be running.
	l.use.RLock()
	a.mu.Unlock()
	res, err := a.shadowWork(l, r)
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

func (a *Agent) shadowWork(l *lease, r api.ShadowRequest) (api.ShadowResult, error) {
	res := api.ShadowResult{PreparationID: l.id}
	start := time.Now()
	l.mem.touch(byte(l.shadows + 2))
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
	if err := errors.Join(errs...); err != nil {
		return firstError(err)
	}
	return nil
}

// Serve runs one request. Naming a ready lease of the same application
// claims it (warm: its memory and file are handed over as they are);
// otherwise the resources are allocated on the spot (cold). Either way the
// request's work then runs and the resources are freed afterwards.
func (a *Agent) Serve(ctx context.Context, r api.ServeRequest) (api.ServeResult, error) {
	if err := a.checkServe(r); err != nil {
		return api.ServeResult{}, err
	}
	if err := a.begin(); err != nil {
		return api.ServeResult{}, err
	}
	defer a.ops.Done()

	res := api.ServeResult{RequestID: r.RequestID, HostID: a.cfg.HostID}
	start := time.Now()
	var (
		l    *lease
		mem  *region
		disk *storage
	)
	if r.PreparationID != "" {
		var err error
		l, err = a.claim(ctx, r)
		switch {
		case err == nil:
			res.Warm, res.PreparationID = true, r.PreparationID
			mem, disk = l.mem, l.disk
		case r.FallbackCold && fallbackable(err):
			res.FallbackReason = err.Error()
		default:
			return api.ServeResult{}, err
		}
	}
	var need usage
	if !res.Warm {
		need = usage{mbToBytes(r.MemoryMB), mbToBytes(r.DiskMB), r.CPUMilli}
		a.mu.Lock()
		if err := a.admit(need); err != nil {
			a.mu.Unlock()
			a.prom.refused.Inc()
			return api.ServeResult{}, err
		}
		a.reserved = a.reserved.add(need)
		a.cold++
		a.mu.Unlock()
		var err error
		mem, disk, err = a.allocate(need, coldFile(a.cfg.DataDir, r.RequestID))
		if err != nil {
			a.endCold(need)
			return api.ServeResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("cold set-up for request %s: %v", r.RequestID, err)}
		}
	}
	setup := time.Since(start)

	workStart := time.Now()
	if res.Warm {
		l.use.RLock() // a shadow may still be finishing on it; fine, both only read and write bytes
	}
	werr := a.work(mem, disk, r)
	if res.Warm {
		l.use.RUnlock()
	}
	work := time.Since(workStart)

	// Free after answering; the capacity returns when the memory is gone.
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if res.Warm {
			a.finishClaim(l)
		} else {
			_ = errors.Join(mem.free(), disk.free())
			a.endCold(need)
		}
	}()
	if werr != nil {
		return api.ServeResult{}, &Error{Code: api.CodeInternal, Msg: fmt.Sprintf("request %s: %v", r.RequestID, werr)}
	}
	res.SetupMS, res.WorkMS = msOf(setup), msOf(work)
	res.TotalMS = msOf(time.Since(start))
	if res.Warm {
		a.counters.servedWarm.Add(1)
	} else {
		a.counters.servedCold.Add(1)
	}
	a.prom.serve.WithLabelValues(warmLabel(res.Warm)).Observe(res.TotalMS / 1000)
	return res, nil
}

func warmLabel(warm bool) string {
	if warm {
		return "warm"
	}
	return "cold"
}

// fallbackable says whether a failed claim may be served cold instead.
// A lease of another application never is: that is a caller's bug.
func fallbackable(err error) bool {
	switch CodeOf(err) {
	case api.CodeNotFound, api.CodeGone, api.CodeClaimed, api.CodeLeaseTooSmall:
		return true
	}
	return false
}

// claim hands a ready lease to one request; of concurrent claims exactly
// one wins because the state changes under a.mu.
func (a *Agent) claim(ctx context.Context, r api.ServeRequest) (*lease, error) {
	l, err := a.acquire(ctx, r.PreparationID, r.App)
	if err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	if exceeds(r.MemoryMB, l.memMB) || exceeds(r.DiskMB, l.diskMB) || r.CPUMilli > l.cpuMilli {
		return nil, errorf(api.CodeLeaseTooSmall,
			"lease %s holds %g MB memory, %g MB disk, %d millicores; the request needs %g MB, %g MB, %d",
			l.id, l.memMB, l.diskMB, l.cpuMilli, r.MemoryMB, r.DiskMB, r.CPUMilli)
	}
	l.state = api.StateClaimed
	return l, nil
}

// exceeds says a request's size is larger than a lease's, ignoring float
// noise: sizes reach the agent through averages (an app's profile is a sum
// over requests divided by their count), and 111 MB must fit a lease of
// 110.99999999999999 MB.
func exceeds(need, have float64) bool {
	return need > have+1e-6*max(1, have)
}

// finishClaim frees a lease whose request has been served.
func (a *Agent) finishClaim(l *lease) {
	a.mu.Lock()
	delete(a.leases, l.id)
	a.ended[l.id] = endedInfo{app: l.app, state: api.StateUsed, at: time.Now()}
	a.mu.Unlock()
	_ = a.freeLease(l)
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
