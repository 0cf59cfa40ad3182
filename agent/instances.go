package agent

// Process instances: leases of applications that have a spec on this host
// run the application's own process (package instance) instead of holding
// anonymous memory.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/instance"
	"github.com/forewarm/forewarm/appspec"
)

// scratchFile is the pre-allocated file in an instance's scratch folder.
const scratchFile = "scratch.dat"

// loadSpecs reads the spec folder; an error names the file and field.
func loadSpecs(dir string) (appspec.Set, error) {
	set, err := appspec.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("application specs in %s: %w", dir, err)
	}
	return set, nil
}

// ReloadSpecs reads the spec folder again. A folder that does not load
// leaves the specs in force unchanged (the error says why); running
// instances keep the spec they were started with.
func (a *Agent) ReloadSpecs() error {
	if a.cfg.SpecDir == "" {
		return errors.New("no spec folder configured")
	}
	set, err := loadSpecs(a.cfg.SpecDir)
	if err != nil {
		return err
	}
	a.specs.Store(&set)
	a.log.Info("application specs loaded", "dir", a.cfg.SpecDir, "apps", len(set))
	return nil
}

// Apps lists the specs in force, by application.
func (a *Agent) Apps() []api.App {
	p := a.specs.Load()
	out := []api.App{}
	if p == nil {
		return out
	}
	for _, s := range *p {
		out = append(out, api.App{App: s.App, Version: s.Version, MemoryMB: s.MemoryMB, CPUMilli: s.CPUMilli,
			ScratchMB: s.ScratchMB, Concurrency: s.Concurrency})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// specFor finds the spec a reserve runs: nil for an application without
// one (a memory reservation), unknown_spec when the caller names a version
// this host does not hold.
func (a *Agent) specFor(r api.ReserveRequest) (*appspec.Spec, error) {
	var set appspec.Set
	if p := a.specs.Load(); p != nil {
		set = *p
	}
	s, err := set.Lookup(r.App, r.SpecVersion)
	switch {
	case err == nil:
		return s, nil
	case r.SpecVersion == "" && set[r.App] == nil:
		return nil, nil
	}
	return nil, errorf(api.CodeUnknownSpec, "%v on host %s", err, a.cfg.HostID)
}

// withSpecSizes sizes a process lease: never below the spec (its memory
// limit, CPU and scratch are what the application needs; a smaller limit
// would only get it killed), larger where the reserve asks for more.
func withSpecSizes(r api.ReserveRequest, s *appspec.Spec) api.ReserveRequest {
	if s == nil {
		return r
	}
	r.MemoryMB = max(r.MemoryMB, s.MemoryMB)
	r.CPUMilli = max(r.CPUMilli, s.CPUMilli)
	r.DiskMB = max(r.DiskMB, s.ScratchMB)
	return r
}

// prepareInstance lays out the instance's folder and scratch storage and
// starts its process; it returns the scratch file, the process and the
// time the scratch took. On failure nothing is left but the folder, which
// freeLease removes.
func (a *Agent) prepareInstance(l *lease) (*storage, *instance.Instance, error) {
	start := time.Now()
	disk, err := a.makeScratch(l)
	l.scratchMS = msOf(time.Since(start))
	if err != nil {
		return nil, nil, &Error{Code: api.CodeStartFailed, Msg: fmt.Sprintf("application %s, lease %s: scratch: %v", l.app, l.id, err)}
	}
	// A start is CPU work (a runtime loading, a model read): a host starts
	// at most MaxStarting at once, so each is done in its own time instead
	// of all being late together when a fleet prepares at once.
	wait := time.Now()
	select {
	case a.starting <- struct{}{}:
	case <-l.startCtx.Done():
		_ = disk.free()
		return nil, nil, &Error{Code: api.CodeStartFailed, Msg: fmt.Sprintf("application %s, lease %s: waiting for a start slot: %v", l.app, l.id, l.startCtx.Err())}
	}
	l.startWaitMS = msOf(time.Since(wait))
	defer func() { <-a.starting }()
	inst, err := instance.Start(l.startCtx, instance.Config{
		ID: l.id, HostID: a.cfg.HostID, Spec: l.spec,
		MemoryMB: l.memMB, CPUMilli: l.cpuMilli,
		Folder: l.folder, User: a.instUser, Cgroups: a.cgroups,
	})
	if err != nil {
		_ = disk.free()
		return nil, nil, &Error{Code: api.CodeStartFailed, Msg: fmt.Sprintf("application %s, lease %s: %v", l.app, l.id, err)}
	}
	return disk, inst, nil
}

// makeScratch creates <data>/fw-inst-<id>/ (entered by the instance user,
// not listed nor written by it) with scratch/ inside, the instance's own,
// holding a pre-allocated file of the lease's disk size. The file is made
// before the folder is handed over, so nothing can be planted first.
func (a *Agent) makeScratch(l *lease) (*storage, error) {
	if err := os.Mkdir(l.folder, 0o711); err != nil {
		return nil, err
	}
	scratch := instance.ScratchDir(l.folder)
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, err
	}
	var disk *storage
	if l.need.disk > 0 {
		var err error
		if disk, err = allocStorage(filepath.Join(scratch, scratchFile), a.scaled(l.need.disk)); err != nil {
			return nil, err
		}
	}
	if u := a.instUser; u != nil {
		if disk != nil {
			if err := disk.f.Chown(int(u.UID), int(u.GID)); err != nil {
				_ = disk.free()
				return nil, fmt.Errorf("chown %s to %s: %w", disk.path, u.Name, err)
			}
		}
		if err := os.Chown(scratch, int(u.UID), int(u.GID)); err != nil {
			_ = disk.free()
			return nil, fmt.Errorf("chown %s to %s: %w", scratch, u.Name, err)
		}
	}
	return disk, nil
}

// watchInstance ends the lease the moment its process ends by itself.
func (a *Agent) watchInstance(l *lease, inst *instance.Instance) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		select {
		case <-inst.Done():
		case <-a.bgCtx.Done():
			return
		}
		a.instanceEnded(l, inst)
	}()
}

// instanceEnded fails a live lease whose process exited or was killed:
// its tombstone keeps how, everything is freed, and it is logged and
// counted. A lease released or expired meanwhile is its freer's business.
func (a *Agent) instanceEnded(l *lease, inst *instance.Instance) {
	note, reason := inst.Exit()
	now := time.Now()
	a.mu.Lock()
	if a.leases[l.id] != l {
		a.mu.Unlock()
		return
	}
	ts := a.retireLocked(l, api.StateFailed, note, now)
	// Requests queued for its slots learn at once that it is gone.
	if a.freed != nil {
		close(a.freed)
		a.freed = nil
	}
	a.mu.Unlock()
	a.prom.instFailed.WithLabelValues(reason).Inc()
	a.log.Warn("instance ended by itself; lease failed", "preparation", l.id, "app", l.app, "pid", inst.PID(),
		"exit", note, "served", ts.use.RequestsServed, "last_output", inst.Output())
	a.freeLater(l)
}

// instanceView is the lease's instance now (its memory read from the
// kernel), or nil for a memory reservation. It does file I/O: never call
// it with a.mu held.
func instanceView(inst *instance.Instance, scratchMS, waitMS float64) *api.Instance {
	if inst == nil {
		return nil
	}
	v := inst.View()
	v.ScratchMS, v.StartWaitMS = scratchMS, waitMS
	return &v
}

// instanceShadow re-runs the spec's shadow request on a ready process
// lease; a.mu is held on entry and released here.
func (a *Agent) instanceShadow(ctx context.Context, l *lease) (api.ShadowResult, error) {
	inst := l.inst
	l.use.RLock()
	a.mu.Unlock()
	code, took, err := inst.Shadow(ctx)
	l.use.RUnlock()
	if err != nil {
		return api.ShadowResult{}, &Error{Code: api.CodeInstanceDown,
			Msg: fmt.Sprintf("shadow on lease %s (application %s, status %d): %v", l.id, l.app, code, err)}
	}
	cur, _ := inst.Memory()
	return api.ShadowResult{PreparationID: l.id, ResidentMB: mbOf(cur), TotalMS: msOf(took)}, nil
}

// openDataDirToInstances checks that the instance user can enter the data folder
// (the scratch folders are inside it) and opens it to that user: 0711, so
// the user may enter but not list it.
func (a *Agent) openDataDirToInstances() error {
	if a.instUser == nil {
		return nil
	}
	dir, err := filepath.Abs(a.cfg.DataDir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 && ownerOf(fi) != a.instUser.UID {
			return fmt.Errorf("process instances run as %s, who cannot enter %s (mode %04o), a parent of the data folder %s: give a data folder whose parents others may enter (e.g. --data-dir /var/lib/forewarm-agent/%s)",
				a.instUser.Name, p, fi.Mode().Perm(), dir, a.cfg.HostID)
		}
		if p == "/" || p == "." {
			break
		}
	}
	return os.Chmod(dir, 0o711)
}
