package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

func TestReserveMakesMemoryResidentAndPreallocatesFileAndReleaseFreesThem(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	before := rssMB(t)

	l, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "prep-1", App: "app-a", MemoryMB: 64, DiskMB: 32, CPUMilli: 500, TTL: time.Minute})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if l.State != api.StateReady || l.Existing {
		t.Fatalf("lease = %+v, want a new ready lease", l)
	}
	grown := rssMB(t) - before
	if grown < 60 {
		t.Errorf("RSS grew by %.1f MB after reserving 64 MB, want ≥ 60", grown)
	}
	if l.ResidentMB < 63.9 {
		t.Errorf("kernel reports %.1f MB of the lease resident, want 64", l.ResidentMB)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(leaseFile(ta.dir, "prep-1"), &st); err != nil {
		t.Fatalf("lease file: %v", err)
	}
	if st.Size != 32<<20 || st.Blocks*512 < 32<<20 {
		t.Errorf("lease file size %d, allocated %d bytes; want both ≥ 32 MiB (really allocated, not sparse)", st.Size, st.Blocks*512)
	}
	if l.DiskAllocatedMB < 32 {
		t.Errorf("lease reports %.1f MB allocated on disk, want 32", l.DiskAllocatedMB)
	}
	m, err := ta.c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ReservedMemMB != 64 || m.ReservedDiskMB != 32 || m.ReservedCPUMilli != 500 || m.Leases != 1 {
		t.Errorf("metrics after reserve = %+v", m)
	}

	peak := rssMB(t)
	res, err := ta.c.ReleaseLease(ctx, "prep-1")
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	if !res.Released || res.State != api.StateReleased {
		t.Errorf("release = %+v", res)
	}
	if shrunk := peak - rssMB(t); shrunk < 60 {
		t.Errorf("RSS shrank by %.1f MB after release, want ≥ 60 (munmap is immediate)", shrunk)
	}
	if _, err := os.Stat(leaseFile(ta.dir, "prep-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease file still there after release: %v", err)
	}
	m, _ = ta.c.Metrics(ctx)
	if m.ReservedMemMB != 0 || m.ReservedDiskMB != 0 || m.ReservedCPUMilli != 0 || m.Leases != 0 {
		t.Errorf("metrics after release = %+v", m)
	}
	// Releasing again is not an error, and says it had already ended.
	again, err := ta.c.ReleaseLease(ctx, "prep-1")
	if err != nil || again.Released || again.State != api.StateReleased {
		t.Errorf("second release = %+v, %v", again, err)
	}
	if err := ta.c.Release(ctx, "never-was"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("release of an unknown lease: %v, want not_found", err)
	}
}

func TestReserveIsIdempotentPerPreparationID(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	req := client.ReserveRequest{PreparationID: "prep-1", App: "app-a", MemoryMB: 16, DiskMB: 8}
	first, err := ta.c.Reserve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := ta.c.Reserve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Existing || !second.Created.Equal(first.Created) || !second.Expires.Equal(first.Expires) {
		t.Errorf("repeat reserve = %+v, want the same lease marked existing (first %+v)", second, first)
	}
	if m, _ := ta.c.Metrics(ctx); m.ReservedMemMB != 16 || m.Leases != 1 {
		t.Errorf("after a repeat reserve: reserved %.1f MB in %d leases, want 16 MB in 1", m.ReservedMemMB, m.Leases)
	}
	other := req
	other.MemoryMB = 32
	if _, err := ta.c.Reserve(ctx, other); !errors.Is(err, client.ErrConflict) || !client.IsPermanent(err) {
		t.Errorf("same ID, other size: %v, want a permanent conflict", err)
	}
	if err := ta.c.Release(ctx, "prep-1"); err != nil {
		t.Fatal(err)
	}
	// A late retry after the lease ended must not silently allocate again.
	if _, err := ta.c.Reserve(ctx, req); !errors.Is(err, client.ErrGone) {
		t.Errorf("reserve of an ended preparation: %v, want gone", err)
	}
	if files := dataFiles(t, ta.dir); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

// Eight concurrent reserves of one preparation ID allocate one lease: the
// agent's accounting says so, and so do the kernel (the lease's resident
// memory from mincore) and this process's resident set.
func TestConcurrentRepeatReservesAllocateOnce(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	req := client.ReserveRequest{PreparationID: "prep-1", App: "app-a", MemoryMB: 96, DiskMB: 8}
	before := rssMB(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = ta.c.Reserve(ctx, req) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("reserve %d: %v", i, err)
		}
	}
	grown := rssMB(t) - before
	if m, _ := ta.c.Metrics(ctx); m.ReservedMemMB != 96 || m.Leases != 1 {
		t.Errorf("reserved %.1f MB in %d leases, want 96 MB in 1", m.ReservedMemMB, m.Leases)
	}
	// Really allocated once: 96 MB resident, not 2 × 96 or more.
	if grown < 90 || grown >= 2*96 {
		t.Errorf("RSS grew by %.1f MB for eight reserves of one 96 MB lease, want about 96", grown)
	}
	l, err := ta.c.Lease(ctx, "prep-1")
	if err != nil || l.ResidentMB < 95.9 || l.ResidentMB > 96.1 {
		t.Errorf("lease = %+v, %v; want 96 MB resident", l, err)
	}
	if files := dataFiles(t, ta.dir); !slices.Equal(files, []string{"fw-lease-prep-1.dat"}) {
		t.Errorf("files = %v, want the one lease file", files)
	}
}

func TestLeaseExpiresAndReaperFreesIt(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "short", App: "app-a", MemoryMB: 16, DiskMB: 8, TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leaseFile(ta.dir, "short")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reaper to expire the lease", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.Leases == 0 && m.LeasesExpired == 1 && m.ReservedMemMB == 0 && m.ReservedDiskMB == 0
	})
	if _, err := os.Stat(leaseFile(ta.dir, "short")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired lease's file still there: %v", err)
	}
	if _, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: "short"}); !errors.Is(err, client.ErrGone) {
		t.Errorf("shadow on an expired lease: %v, want gone", err)
	}
	res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", PreparationID: "short", MemoryMB: 16, FallbackCold: true})
	if err != nil || res.Warm || !strings.Contains(res.FallbackReason, "expired") {
		t.Errorf("serve on an expired lease with fallback = %+v, %v; want cold with the reason", res, err)
	}
}

func TestCapacityIsEnforcedWithAReason(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.MemoryMB, c.DiskMB, c.CPUMilli = 100, 50, 1000 })
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 64, DiskMB: 32, CPUMilli: 600}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  client.ReserveRequest
		want string
	}{
		{"memory", client.ReserveRequest{PreparationID: "p2", App: "app-a", MemoryMB: 64}, "memory: need 64.0 MB, 36.0 MB free of 100 MB"},
		{"disk", client.ReserveRequest{PreparationID: "p3", App: "app-a", DiskMB: 32}, "disk: need 32.0 MB, 18.0 MB free of 50 MB"},
		{"cpu", client.ReserveRequest{PreparationID: "p4", App: "app-a", CPUMilli: 500}, "CPU: need 500 millicores, 400 free of 1000"},
	}
	for _, tc := range cases {
		_, err := ta.c.Reserve(ctx, tc.req)
		if !errors.Is(err, client.ErrOverCapacity) || !client.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want over_capacity saying %q", tc.name, err, tc.want)
		}
	}
	// A cold request that does not fit is refused the same way.
	_, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", MemoryMB: 64})
	if !errors.Is(err, client.ErrOverCapacity) {
		t.Errorf("cold serve over capacity: %v", err)
	}
	// Nothing of the refused calls remains.
	if files := dataFiles(t, ta.dir); !slices.Equal(files, []string{"fw-lease-p1.dat"}) {
		t.Errorf("files = %v, want only p1's", files)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.Leases != 1 || m.ReservedMemMB != 64 || m.ReservedDiskMB != 32 || m.ReservedCPUMilli != 600 {
		t.Errorf("metrics after refusals = %+v", m)
	}
	// Exactly the remainder fits.
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p5", App: "app-a", MemoryMB: 36, DiskMB: 18, CPUMilli: 400}); err != nil {
		t.Errorf("reserve of exactly the free capacity: %v", err)
	}
}

func TestClaimOfAnotherApplicationsLeaseIsRejected(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 8, DiskMB: 4}); err != nil {
		t.Fatal(err)
	}
	_, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-b", PreparationID: "p1", MemoryMB: 8, FallbackCold: true})
	if !errors.Is(err, client.ErrWrongApp) || !client.IsPermanent(err) {
		t.Fatalf("claim by another app: %v, want wrong_app even with fallback", err)
	}
	l, err := ta.c.Lease(ctx, "p1")
	if err != nil || l.State != api.StateReady {
		t.Fatalf("lease after a rejected claim = %+v, %v; want still ready", l, err)
	}
	res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r2", App: "app-a", PreparationID: "p1", MemoryMB: 8, DiskMB: 4})
	if err != nil || !res.Warm {
		t.Fatalf("claim by the owner = %+v, %v", res, err)
	}
	// A request bigger than the lease is refused, or served cold on request.
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p2", App: "app-a", MemoryMB: 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r3", App: "app-a", PreparationID: "p2", MemoryMB: 16}); !errors.Is(err, client.ErrLeaseTooSmall) {
		t.Errorf("request bigger than the lease: %v, want lease_too_small", err)
	}
}

// A warm request runs on the lease's memory and file, which stay the
// lease's afterwards; a cold one allocates its own and frees them.
func TestServeWarmKeepsTheLeaseAndColdAllocates(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 32, DiskMB: 16}); err != nil {
		t.Fatal(err)
	}
	warm, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", PreparationID: "p1", MemoryMB: 32, DiskMB: 16, ReadRatio: 0.8, WorkMS: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !warm.Warm || warm.PreparationID != "p1" || warm.HostID != "test-host" || warm.WorkMS < 5 || warm.TotalMS < warm.SetupMS+warm.WorkMS-0.001 {
		t.Errorf("warm result = %+v", warm)
	}
	cold, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r2", App: "app-a", MemoryMB: 32, DiskMB: 16, ReadRatio: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	if cold.Warm || cold.SetupMS <= warm.SetupMS {
		t.Errorf("cold result = %+v (warm %+v): want cold with a longer set-up", cold, warm)
	}
	eventually(t, "the cold request's resources to be freed", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ReservedMemMB == 32 && m.ServingCold == 0 && m.Leases == 1 &&
			slices.Equal(dataFiles(t, ta.dir), []string{"fw-lease-p1.dat"})
	})
	m, _ := ta.c.Metrics(ctx)
	if m.ServedWarm != 1 || m.ServedCold != 1 {
		t.Errorf("served warm %d cold %d, want 1 and 1", m.ServedWarm, m.ServedCold)
	}
	// The lease was not used up: the next request is warm on it too.
	again, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r3", App: "app-a", PreparationID: "p1", MemoryMB: 32, DiskMB: 16})
	if err != nil || !again.Warm {
		t.Errorf("second request on the lease = %+v, %v; want warm", again, err)
	}
	l, err := ta.c.Lease(ctx, "p1")
	if err != nil || l.State != api.StateReady || l.RequestsServed != 2 || l.ResidentMB < 31.9 {
		t.Errorf("lease after two requests = %+v, %v; want ready, 2 served, 32 MB resident", l, err)
	}
}

func TestShadowTouchesMemoryAndSamplesTheFileWithTheReadRatio(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 32, DiskMB: 32}); err != nil {
		t.Fatal(err)
	}
	res, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: "p1", ReadRatio: 0.75, SampleMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.ResidentMB < 31.9 || res.ReadMB != 6 || res.WriteMB != 2 || res.TotalMS <= 0 {
		t.Errorf("shadow = %+v, want 32 MB resident, 6 MB read, 2 MB written", res)
	}
	l, _ := ta.c.Lease(ctx, "p1")
	if l.Shadows != 1 || l.State != api.StateReady {
		t.Errorf("lease after shadow = %+v", l)
	}
	// A lease with memory only still shadows (no I/O).
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p2", App: "app-a", MemoryMB: 4}); err != nil {
		t.Fatal(err)
	}
	if res, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: "p2", ReadRatio: 1}); err != nil || res.ReadMB != 0 {
		t.Errorf("memory-only shadow = %+v, %v", res, err)
	}
}

func TestReleaseWhilePreparingFreesWhenPreparationEnds(t *testing.T) {
	// 20 ms per MB makes the 16 MB preparation take ~0.5 s.
	ta := startAgent(t, func(c *agent.Config) { c.SetupPerMB = 20 * time.Millisecond })
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() {
		_, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "slow", App: "app-a", MemoryMB: 8, DiskMB: 8})
		errc <- err
	}()
	eventually(t, "the lease to be preparing", func() bool {
		l, err := ta.c.Lease(ctx, "slow")
		return err == nil && l.State == api.StatePreparing
	})
	if res, err := ta.c.ReleaseLease(ctx, "slow"); err != nil || !res.Released {
		t.Fatalf("release while preparing = %+v, %v", res, err)
	}
	if err := <-errc; !errors.Is(err, client.ErrGone) {
		t.Errorf("the reserve that was released meanwhile: %v, want gone", err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.ReservedMemMB != 0 || m.Leases != 0 || len(dataFiles(t, ta.dir)) != 0 {
		t.Errorf("after release during preparation: %+v, files %v", m, dataFiles(t, ta.dir))
	}
}

func TestCloseReleasesEveryLease(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	for _, id := range []string{"p1", "p2"} {
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 32, DiskMB: 8}); err != nil {
			t.Fatal(err)
		}
	}
	peak := rssMB(t)
	if err := ta.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if shrunk := peak - rssMB(t); shrunk < 60 {
		t.Errorf("RSS shrank by %.1f MB on close, want ≥ 60", shrunk)
	}
	if files := dataFiles(t, ta.dir); len(files) != 0 {
		t.Errorf("files left after close: %v", files)
	}
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p3", App: "app-a", MemoryMB: 1}); !errors.Is(err, client.ErrShuttingDown) || client.IsPermanent(err) {
		t.Errorf("reserve after close: %v, want a transient shutting_down", err)
	}
	if err := ta.c.Ready(ctx); err == nil {
		t.Error("ready after close, want 503")
	}
}

func TestStartRemovesOnlyOwnLeftovers(t *testing.T) {
	dir := t.TempDir()
	leftovers := []string{"fw-lease-old.dat", "fw-cold-r1-0a0b0c0d.dat", "fw-probe-io.dat"}
	kept := []string{"fw-lease-notes.txt", "other.dat", "README"}
	for _, n := range append(slices.Clone(leftovers), kept...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "fw-lease-dir.dat"), 0o700); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, "fw-lease-dir.dat")
	ta := startAgent(t, func(c *agent.Config) { c.DataDir = dir })
	_ = ta
	got := dataFiles(t, dir)
	slices.Sort(got)
	slices.Sort(kept)
	if !slices.Equal(got, kept) {
		t.Errorf("after start the folder holds %v, want %v", got, kept)
	}
}

func TestMetricsJSONAndPrometheus(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 8, DiskMB: 4, CPUMilli: 250}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second sample (CPU needs two)", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.IOLatencyMS > 0 && m.CPUUtil > 0
	})
	m, _ := ta.c.Metrics(ctx)
	if m.HostID != "test-host" || m.MemTotalMB <= 0 || m.MemAvailMB <= 0 || m.MemAvailMB > m.MemTotalMB ||
		m.CPUUtil < 0 || m.CPUUtil > 1 || m.MemPressure < 0 || m.MemPressure > 1 || m.CapacityMemMB != 1024 {
		t.Errorf("metrics = %+v", m)
	}
	if _, err := os.Stat("/proc/pressure/memory"); err == nil && !m.PSIAvailable {
		t.Error("the kernel has PSI but the metrics say it is unavailable")
	}
	body := getText(t, ta.url+api.PathPrometheus, testToken)
	for _, want := range []string{
		`forewarm_agent_leases{host="test-host"} 1`,
		`forewarm_agent_reserved_cpu_cores{host="test-host"} 0.25`,
		`forewarm_agent_reserved_memory_bytes{host="test-host"} 8.388608e+06`,
		"forewarm_host_memory_available_bytes",
		"forewarm_host_io_probe_latency_seconds",
		"forewarm_host_cpu_utilization_ratio",
		"forewarm_agent_prepare_seconds_count",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("Prometheus text lacks %q", want)
		}
	}
	info, err := ta.c.Info(ctx)
	if err != nil || info.HostID != "test-host" || info.MemoryMB != 1024 || info.Speed != 1 {
		t.Errorf("info = %+v, %v", info, err)
	}
}

type fakeReporter struct {
	mu      sync.Mutex
	infos   []api.Info
	metrics []api.HostMetrics
	fail    bool
}

func (f *fakeReporter) Register(ctx context.Context, info api.Info, seen time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("registry down")
	}
	f.infos = append(f.infos, info)
	return nil
}

func (f *fakeReporter) Report(ctx context.Context, m api.HostMetrics) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metrics = append(f.metrics, m)
	return nil
}

func TestReportRegistersAndPushesMetricsAndSurvivesFailures(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.URL = "http://127.0.0.1:9" })
	rep := &fakeReporter{fail: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ta.Report(ctx, rep, 20*time.Millisecond); close(done) }()
	time.Sleep(100 * time.Millisecond)
	rep.mu.Lock()
	rep.fail = false
	rep.mu.Unlock()
	eventually(t, "three reports after the registry came back", func() bool {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return len(rep.metrics) >= 3
	})
	cancel()
	<-done
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.infos[0].HostID != "test-host" || rep.infos[0].URL != "http://127.0.0.1:9" || rep.metrics[0].HostID != "test-host" {
		t.Errorf("registered %+v, reported %+v", rep.infos[0], rep.metrics[0])
	}
}

func TestSlowHostTakesLonger(t *testing.T) {
	fast := startAgent(t, nil)
	slow := startAgent(t, func(c *agent.Config) { c.Speed = 0.25; c.SetupPerMB = time.Millisecond })
	ctx := ctxT(t)
	req := client.ServeRequest{RequestID: "r1", App: "app-a", MemoryMB: 16, DiskMB: 8, WorkMS: 20}
	f, err := fast.c.Serve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	s, err := slow.c.Serve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Work at speed 0.25 is at least 4×20 ms; set-up carries 24 ms of
	// artificial latency. Lower bounds only: no timing upper bounds.
	if s.WorkMS < 80 || s.SetupMS < 24 || f.WorkMS < 20 {
		t.Errorf("fast %+v, slow %+v", f, s)
	}
}

func TestConfigIsChecked(t *testing.T) {
	base := agent.Config{HostID: "h", DataDir: t.TempDir(), MemoryMB: 1, DefaultTTL: time.Minute}
	cases := map[string]struct {
		edit func(*agent.Config)
		says string
	}{
		"host ID":  {func(c *agent.Config) { c.HostID = "../evil" }, `host ID "../evil" does not match`},
		"memory":   {func(c *agent.Config) { c.MemoryMB = -1 }, "memory capacity -1 MB is outside"},
		"speed":    {func(c *agent.Config) { c.Speed = 2 }, "speed 2 is outside (0, 1]"},
		"data":     {func(c *agent.Config) { c.DataDir = "" }, "data folder is required"},
		"TTL":      {func(c *agent.Config) { c.DefaultTTL = time.Millisecond }, "default TTL 1ms is outside"},
		"set-up":   {func(c *agent.Config) { c.SetupPerMB = -time.Millisecond }, "set-up latency per MB -1ms is negative"},
		"CPU":      {func(c *agent.Config) { c.CPUMilli = -5 }, "CPU capacity -5 millicores is outside"},
		"disk big": {func(c *agent.Config) { c.DiskMB = 1 << 40 }, "disk capacity 1099511627776 MB is outside"},
	}
	for name, tc := range cases {
		cfg := base
		tc.edit(&cfg)
		a, err := agent.New(cfg)
		if err == nil {
			_ = a.Close(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want refused saying %q", name, err, tc.says)
		}
	}
	a, err := agent.New(base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Handler("short"); err == nil || !strings.Contains(err.Error(), "at least 16 characters (got 5)") {
		t.Errorf("a 5-character token: %v", err)
	}
	_ = a.Close(context.Background())
}

func TestReserveBeyondTheHostsAvailableMemoryIsRefused(t *testing.T) {
	// The configured capacity (1 TiB) is a lie; the kernel's MemAvailable
	// is not, and the agent must not touch memory the host does not have.
	ta := startAgent(t, func(c *agent.Config) { c.MemoryMB = api.MaxSizeMB })
	ctx := ctxT(t)
	_, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: api.MaxSizeMB - 1})
	if !errors.Is(err, client.ErrOverCapacity) || !strings.Contains(err.Error(), "MB available") {
		t.Fatalf("reserve beyond MemAvailable: %v, want over_capacity naming the available memory", err)
	}
	if m, _ := ta.c.Metrics(ctx); m.ReservedMemMB != 0 || m.Leases != 0 {
		t.Errorf("metrics after the refusal: %+v", m)
	}
}

// With an allocation scale a lease keeps its requested size in every figure
// (lease, metrics, capacity) while only that share is really allocated: a
// demo plays several hosts on one machine without changing what it reports.
func TestAllocScaleAllocatesAShareAndKeepsTheFigures(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.AllocScale = 0.25 })
	ctx := ctxT(t)
	before := rssMB(t)
	l, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "prep-s", App: "app-a", MemoryMB: 128, DiskMB: 64, TTL: time.Minute})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if grown := rssMB(t) - before; grown < 28 || grown > 60 {
		t.Errorf("RSS grew by %.1f MB for 128 MB at scale 0.25, want about 32", grown)
	}
	if l.MemoryMB != 128 || l.DiskMB != 64 {
		t.Errorf("lease sizes %v MB / %v MB, want the requested 128 / 64", l.MemoryMB, l.DiskMB)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(leaseFile(ta.dir, "prep-s"), &st); err != nil {
		t.Fatalf("lease file: %v", err)
	}
	if st.Size != 16<<20 {
		t.Errorf("lease file %d bytes, want 16 MiB (a quarter of 64)", st.Size)
	}
	m, err := ta.c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ReservedMemMB != 128 || m.ReservedDiskMB != 64 {
		t.Errorf("metrics reserve %v / %v MB, want 128 / 64", m.ReservedMemMB, m.ReservedDiskMB)
	}
	if _, err := agent.New(agent.Config{HostID: "h", DataDir: t.TempDir(), AllocScale: 1.5}); err == nil {
		t.Error("an allocation scale of 1.5 was accepted")
	}
}

// A request whose size equals the lease's up to float noise (sizes arrive
// through averages) is served warm; a really larger one still falls back.
func TestClaimToleratesFloatNoiseInSizes(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	for _, id := range []string{"noise", "bigger"} {
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 110.99999999999999, DiskMB: 8, TTL: time.Minute}); err != nil {
			t.Fatalf("Reserve %s: %v", id, err)
		}
	}
	res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", PreparationID: "noise", MemoryMB: 111, DiskMB: 8, FallbackCold: true})
	if err != nil || !res.Warm {
		t.Fatalf("serve of 111 MB on a 110.99999999999999 MB lease: warm=%v err=%v, want warm", res.Warm, err)
	}
	res, err = ta.c.Serve(ctx, client.ServeRequest{RequestID: "r2", App: "app-a", PreparationID: "bigger", MemoryMB: 112, DiskMB: 8, FallbackCold: true})
	if err != nil || res.Warm {
		t.Fatalf("serve of 112 MB on a 111 MB lease: warm=%v err=%v, want a cold fallback", res.Warm, err)
	}
}
