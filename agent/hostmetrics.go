package agent

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/forewarm/forewarm/agent/api"
)

// hostSample is what the kernel says about the host.
type hostSample struct {
	time         time.Time
	cpuUtil      float64
	memTotalMB   float64
	memAvailMB   float64
	memPressure  float64
	psiAvailable bool
	ioLatencyMS  float64
}

// sampler reads /proc periodically: CPU utilisation from /proc/stat deltas,
// memory from /proc/meminfo narrowed to the agent's cgroup limit (in a pod
// the limit, not the node, is what the agent can use), pressure from
// /proc/pressure/memory (PSI), and I/O latency from its own probe in the
// data folder.
type sampler struct {
	dataDir string
	// procRoot and cgroupRoot are /proc and CgroupRoot (a test's fakes).
	procRoot, cgroupRoot string

	mu      sync.Mutex
	prevCPU *procfs.CPUStat
	last    hostSample
}

func newSampler(dataDir string) *sampler {
	return &sampler{dataDir: dataDir, procRoot: procfs.DefaultMountPoint, cgroupRoot: CgroupRoot}
}

func (s *sampler) latest() hostSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// sample takes a new snapshot; parts that fail keep their previous value
// and are reported in the error.
func (s *sampler) sample() error {
	fs, err := procfs.NewFS(s.procRoot)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.procRoot, err)
	}
	s.mu.Lock()
	next := s.last
	prev := s.prevCPU
	s.mu.Unlock()
	next.time = time.Now()
	var errs []error

	if st, err := fs.Stat(); err != nil {
		errs = append(errs, fmt.Errorf("/proc/stat: %w", err))
	} else {
		cur := st.CPUTotal
		if prev != nil {
			busy := cpuBusy(cur) - cpuBusy(*prev)
			total := busy + (cur.Idle + cur.Iowait) - (prev.Idle + prev.Iowait)
			if total > 0 {
				next.cpuUtil = min(max(busy/total, 0), 1)
			}
		}
		prev = &cur
	}
	if mi, err := fs.Meminfo(); err != nil {
		errs = append(errs, fmt.Errorf("/proc/meminfo: %w", err))
	} else if mi.MemTotal != nil && mi.MemAvailable != nil {
		next.memTotalMB = float64(*mi.MemTotal) / 1024
		next.memAvailMB = float64(*mi.MemAvailable) / 1024
		if cg, err := ReadCgroupMemory(s.cgroupRoot); err != nil {
			errs = append(errs, fmt.Errorf("cgroup memory: %w", err))
		} else {
			next.memTotalMB, next.memAvailMB = cg.limitTo(next.memTotalMB, next.memAvailMB)
		}
	}
	if psi, err := fs.PSIStatsForResource("memory"); err == nil && psi.Some != nil {
		next.memPressure = psi.Some.Avg10 / 100
		next.psiAvailable = true
	} else {
		next.memPressure, next.psiAvailable = 0, false
	}
	if ms, err := ioProbe(s.dataDir); err != nil {
		errs = append(errs, err)
	} else {
		next.ioLatencyMS = ms
	}

	s.mu.Lock()
	s.last = next
	s.prevCPU = prev
	s.mu.Unlock()
	return errors.Join(errs...)
}

func cpuBusy(c procfs.CPUStat) float64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
}

// ioProbe times a 64 KiB write, fsync and read back of a file in the data
// folder: a small, honest view of what storage on this host costs now. The
// file has a fresh random name and is created exclusively without
// following symbolic links, so nothing planted in the folder is written
// through; it is removed afterwards.
func ioProbe(dir string) (float64, error) {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	path := probeFile(dir)
	start := time.Now()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("I/O probe: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	if _, err := f.WriteAt(buf, 0); err != nil {
		return 0, fmt.Errorf("I/O probe write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("I/O probe fsync: %w", err)
	}
	if _, err := f.ReadAt(buf, 0); err != nil {
		return 0, fmt.Errorf("I/O probe read: %w", err)
	}
	return msOf(time.Since(start)), nil
}

// Metrics combines the latest host sample with the agent's reservations.
func (a *Agent) Metrics() api.HostMetrics {
	h := a.sampler.latest()
	m := api.HostMetrics{
		Time:             time.Now().UTC(),
		HostID:           a.cfg.HostID,
		CPUUtil:          h.cpuUtil,
		MemTotalMB:       h.memTotalMB,
		MemUsedMB:        h.memTotalMB - h.memAvailMB,
		MemAvailMB:       h.memAvailMB,
		MemPressure:      h.memPressure,
		PSIAvailable:     h.psiAvailable,
		IOLatencyMS:      h.ioLatencyMS,
		CapacityMemMB:    float64(a.cfg.MemoryMB),
		CapacityDiskMB:   float64(a.cfg.DiskMB),
		CapacityCPUMilli: a.cfg.CPUMilli,
		ServedWarm:       a.counters.servedWarm.Load(),
		ServedCold:       a.counters.servedCold.Load(),
		LeasesExpired:    a.counters.expired.Load(),
		ServedReplayed:   a.counters.replayed.Load(),

		FallbackConcurrency: a.counters.fbConc.Load(),
		FallbackOversize:    a.counters.fbOversize.Load(),
		LeasesExtended:      a.counters.extended.Load(),
		LeasesKept:          a.counters.kept.Load(),
	}
	now := time.Now()
	a.mu.Lock()
	m.ReservedMemMB = mbOf(a.reserved.mem)
	m.ReservedDiskMB = mbOf(a.reserved.disk)
	m.ReservedCPUMilli = a.reserved.cpu
	m.Leases = len(a.leases)
	m.LeaseBusyMBs, m.LeaseIdleMBs = a.endedBusy, a.endedIdle
	for _, l := range a.leases {
		if l.state == api.StateReady {
			m.LeasesReady++
		}
		u := l.useAt(now)
		m.LeaseBusyMBs += u.BusyMBs
		m.LeaseIdleMBs += u.IdleMBs
		m.LeaseUse = append(m.LeaseUse, api.LeaseUseEntry{PreparationID: l.id, App: l.app, MemoryMB: l.memMB, LeaseUse: u})
	}
	m.ServingCold = a.cold
	m.Tombstones = a.ended.len()
	a.mu.Unlock()
	sort.Slice(m.LeaseUse, func(i, j int) bool { return m.LeaseUse[i].PreparationID < m.LeaseUse[j].PreparationID })
	return m
}
