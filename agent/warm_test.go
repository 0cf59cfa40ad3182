package agent_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// A lease is a warm instance: it serves request after request of its
// application, and every figure of it (per lease, in the list, in the host
// metrics JSON and in Prometheus) counts them.
func TestOneLeaseServesManyRequests(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 32, DiskMB: 16, CPUMilli: 1000}); err != nil {
		t.Fatal(err)
	}
	before := rssMB(t)
	const n = 40
	for i := range n {
		res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: fmt.Sprintf("r%d", i), App: "app-a", PreparationID: "p1",
			MemoryMB: 24, DiskMB: 16, ReadRatio: 0.7, WorkMS: 1, FallbackCold: true})
		if err != nil || !res.Warm || res.PreparationID != "p1" {
			t.Fatalf("request %d = %+v, %v; want warm on p1", i, res, err)
		}
	}
	// Nothing was allocated for the requests: they ran on the lease.
	if grown := rssMB(t) - before; grown > 16 {
		t.Errorf("RSS grew by %.1f MB over %d warm requests on a 32 MB lease, want ~0", grown, n)
	}
	l, err := ta.c.Lease(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	age := time.Since(l.Created).Seconds()
	if l.State != api.StateReady || l.RequestsServed != n || l.InFlight != 0 || l.MaxConcurrent != 1 || l.ResidentMB < 31.9 ||
		l.BusyMBs <= 0 || l.IdleMBs <= 0 || l.BusyMBs+l.IdleMBs > 32*age || l.LastServed.IsZero() ||
		l.FallbackConcurrency != 0 || l.FallbackOversize != 0 {
		t.Errorf("lease after %d requests = %+v", n, l)
	}
	ls, err := ta.c.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].RequestsServed != n {
		t.Errorf("list = %+v, %v", ls, err)
	}
	m, err := ta.c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ServedWarm != n || m.ServedCold != 0 || m.ReservedMemMB != 32 || m.Leases != 1 ||
		len(m.LeaseUse) != 1 || m.LeaseUse[0].PreparationID != "p1" || m.LeaseUse[0].RequestsServed != n ||
		m.LeaseBusyMBs < m.LeaseUse[0].BusyMBs || m.LeaseIdleMBs <= 0 {
		t.Errorf("metrics = %+v", m)
	}
	body := getText(t, ta.url+api.PathPrometheus, testToken)
	for _, want := range []string{
		fmt.Sprintf(`forewarm_agent_served_warm_total{host="test-host"} %d`, n),
		`forewarm_agent_lease_busy_byte_seconds_total{host="test-host"}`,
		`forewarm_agent_lease_requests_in_flight{host="test-host"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("Prometheus text lacks %q", want)
		}
	}
	// Per-lease figures are in the JSON API only: series labelled by lease
	// or application would come and go with every lease.
	for _, label := range []string{`lease="`, `app="`} {
		if strings.Contains(body, label) {
			t.Errorf("Prometheus text has a per-lease or per-application series (%s)", label)
		}
	}
	// Its release reports the lease's final use; then the series are gone.
	rel, err := ta.c.ReleaseLease(ctx, "p1")
	if err != nil || !rel.Released || rel.RequestsServed != n || rel.BusyMBs < l.BusyMBs || rel.IdleMBs < l.IdleMBs {
		t.Errorf("release = %+v, %v; want released with %d requests and the memory-time", rel, err, n)
	}
	again, err := ta.c.ReleaseLease(ctx, "p1")
	if err != nil || again.Released || again.RequestsServed != n {
		t.Errorf("second release = %+v, %v; want the ended lease's figures", again, err)
	}
	if m, _ := ta.c.Metrics(ctx); m.LeaseBusyMBs < rel.BusyMBs || m.LeaseIdleMBs < rel.IdleMBs {
		t.Errorf("host memory-time %.1f/%.1f lost the released lease's %.1f/%.1f", m.LeaseBusyMBs, m.LeaseIdleMBs, rel.BusyMBs, rel.IdleMBs)
	}
}

// Extending a lease sets its expiry in place: the same lease (creation
// time, file, memory), no new reservation, no new shadow.
func TestExtendInPlace(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	first, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 16, DiskMB: 8, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: "p1", ReadRatio: 0.5}); err != nil {
		t.Fatal(err)
	}
	ext, err := ta.c.Extend(ctx, "p1", time.Minute, "app-a")
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Created.Equal(first.Created) || !ext.Expires.After(first.Expires.Add(50*time.Second)) || ext.Shadows != 1 || ext.Extensions != 1 {
		t.Errorf("extended lease = %+v (was %+v): want the same lease, one shadow, a minute more", ext, first)
	}
	// Past the first expiry the lease is still there, and still the one.
	time.Sleep(time.Until(first.Expires) + 300*time.Millisecond)
	l, err := ta.c.Lease(ctx, "p1")
	if err != nil || l.State != api.StateReady || !l.Created.Equal(first.Created) || l.Shadows != 1 || l.ResidentMB < 15.9 {
		t.Fatalf("lease past its first expiry = %+v, %v", l, err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.Leases != 1 || m.ReservedMemMB != 16 || m.LeasesExtended != 1 || m.LeasesExpired != 0 {
		t.Errorf("metrics after the extension = %+v", m)
	}
	if files := dataFiles(t, ta.dir); !slices.Equal(files, []string{"fw-lease-p1.dat"}) {
		t.Errorf("files = %v", files)
	}
	// Shortening is an extension too: the reaper then ends it.
	if _, err := ta.c.Extend(ctx, "p1", time.Second, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shortened lease to expire", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.Leases == 0 && m.LeasesExpired == 1 && m.ReservedMemMB == 0
	})
}

func TestExtendRefusals(t *testing.T) {
	// 10 ms per MB: a 64 MB preparation takes ~0.6 s, long enough to be
	// caught preparing.
	ta := startAgent(t, func(c *agent.Config) { c.SetupPerMB = 10 * time.Millisecond })
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "slow", App: "app-a", MemoryMB: 32, DiskMB: 32})
		done <- err
	}()
	eventually(t, "the lease to be preparing", func() bool {
		l, err := ta.c.Lease(ctx, "slow")
		return err == nil && l.State == api.StatePreparing
	})
	_, err := ta.c.Extend(ctx, "slow", time.Minute, "")
	if !errors.Is(err, client.ErrNotReady) || !client.IsPermanent(err) || !strings.Contains(err.Error(), "lease slow is preparing") {
		t.Errorf("extend while preparing: %v, want not_ready", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Extend(ctx, "p1", time.Minute, "app-b"); !errors.Is(err, client.ErrWrongApp) {
		t.Errorf("extend naming another app: %v, want wrong_app", err)
	}
	if _, err := ta.c.Extend(ctx, "never", time.Minute, ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("extend of an unknown lease: %v, want not_found", err)
	}
	if _, err := ta.c.Extend(ctx, "p1", 100*time.Hour, ""); !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "ttl_seconds 360000 is outside") {
		t.Errorf("extend by 100 h: %v, want bad_request naming ttl_seconds", err)
	}
	if err := ta.c.Release(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Extend(ctx, "p1", time.Minute, ""); !errors.Is(err, client.ErrGone) || !strings.Contains(err.Error(), "already ended (released") {
		t.Errorf("extend of a released lease: %v, want gone", err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.LeasesExtended != 0 {
		t.Errorf("%d extensions counted, want 0: every one was refused", m.LeasesExtended)
	}
}

// A request larger than its lease runs cold on resources of its own; the
// lease stays ready and usable, and the miss is counted.
func TestOversizedRequestIsServedColdAndTheLeaseStays(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "small", App: "app-a", MemoryMB: 16, DiskMB: 8}); err != nil {
		t.Fatal(err)
	}
	big := client.ServeRequest{RequestID: "big", App: "app-a", PreparationID: "small", MemoryMB: 64, DiskMB: 8, FallbackCold: true}
	res, err := ta.c.Serve(ctx, big)
	if err != nil || res.Warm || res.FallbackCode != api.CodeLeaseTooSmall || !strings.Contains(res.FallbackReason, "lease small holds 16 MB") {
		t.Fatalf("oversized request = %+v, %v; want cold with lease_too_small", res, err)
	}
	// Without the fallback it is refused, and that is not counted.
	big.RequestID, big.FallbackCold = "big-strict", false
	if _, err := ta.c.Serve(ctx, big); !errors.Is(err, client.ErrLeaseTooSmall) || !client.IsPermanent(err) {
		t.Errorf("oversized request without fallback: %v, want lease_too_small", err)
	}
	l, err := ta.c.Lease(ctx, "small")
	if err != nil || l.State != api.StateReady || l.FallbackOversize != 1 || l.RequestsServed != 0 || l.ResidentMB < 15.9 {
		t.Fatalf("lease after the oversized request = %+v, %v; want ready with one oversize fallback", l, err)
	}
	fits, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "fits", App: "app-a", PreparationID: "small", MemoryMB: 16, DiskMB: 8, FallbackCold: true})
	if err != nil || !fits.Warm {
		t.Errorf("a fitting request after the oversized one = %+v, %v; want warm", fits, err)
	}
	eventually(t, "the cold request's memory to be freed", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ReservedMemMB == 16 && m.ServingCold == 0
	})
	m, _ := ta.c.Metrics(ctx)
	if m.FallbackOversize != 1 || m.FallbackConcurrency != 0 || m.ServedCold != 1 || m.ServedWarm != 1 || m.Leases != 1 {
		t.Errorf("metrics = %+v", m)
	}
	if body := getText(t, ta.url+api.PathPrometheus, testToken); !strings.Contains(body, `forewarm_agent_fallback_oversize_total{host="test-host"} 1`) {
		t.Error("Prometheus text lacks the oversize fallback count")
	}
	// The lease's own count is in the JSON API.
	if len(m.LeaseUse) != 1 || m.LeaseUse[0].PreparationID != "small" || m.LeaseUse[0].FallbackOversize != 1 {
		t.Errorf("lease use = %+v; want the oversize fallback on lease small", m.LeaseUse)
	}
}

// At most max(1, ceil(cpu/1000)) requests run on a lease at once; one more
// falls back cold (counted) or, without the fallback, is refused busy.
func TestConcurrencyBeyondTheLeaseFallsBackColdAndIsCounted(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.SleepWork = true })
	ctx := ctxT(t)
	for _, tc := range []struct {
		cpu  int64
		want int
	}{{0, 1}, {1000, 1}, {1001, 2}, {2000, 2}, {2500, 3}} {
		if got := api.MaxConcurrent(tc.cpu); got != tc.want {
			t.Errorf("MaxConcurrent(%d) = %d, want %d", tc.cpu, got, tc.want)
		}
	}
	l, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p2", App: "app-a", MemoryMB: 8, DiskMB: 4, CPUMilli: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxConcurrent != 2 {
		t.Fatalf("a 2000-millicore lease allows %d requests at once, want 2", l.MaxConcurrent)
	}
	long := func(id string) client.ServeRequest {
		return client.ServeRequest{RequestID: id, App: "app-a", PreparationID: "p2", MemoryMB: 8, DiskMB: 4, WorkMS: 4000, FallbackCold: true}
	}
	results := make(chan client.ServeResult, 2)
	for _, id := range []string{"long-1", "long-2"} {
		go func() {
			res, err := ta.c.Serve(ctx, long(id))
			if err != nil {
				t.Errorf("%s: %v", id, err)
			}
			results <- res
		}()
	}
	eventually(t, "two requests in flight on the lease", func() bool {
		l, err := ta.c.Lease(ctx, "p2")
		return err == nil && l.InFlight == 2
	})
	third := long("third")
	third.WorkMS = 0
	res, err := ta.c.Serve(ctx, third)
	if err != nil || res.Warm || res.FallbackCode != api.CodeLeaseBusy || !strings.Contains(res.FallbackReason, "already serves 2 requests") {
		t.Errorf("a third request on a full lease = %+v, %v; want cold with lease_busy", res, err)
	}
	strict := third
	strict.RequestID, strict.FallbackCold = "strict", false
	if _, err := ta.c.Serve(ctx, strict); !errors.Is(err, client.ErrLeaseBusy) || !client.IsPermanent(err) {
		t.Errorf("a request on a full lease without fallback: %v, want lease_busy", err)
	}
	for range 2 {
		if r := <-results; !r.Warm {
			t.Errorf("a long request = %+v, want warm", r)
		}
	}
	l, err = ta.c.Lease(ctx, "p2")
	if err != nil || l.State != api.StateReady || l.RequestsServed != 2 || l.InFlight != 0 || l.FallbackConcurrency != 1 ||
		l.BusyMBs < 8*3.9 {
		t.Errorf("lease after the overflow = %+v, %v; want ready, 2 served, 1 concurrency fallback, ≥ 4 s busy", l, err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.FallbackConcurrency != 1 || m.FallbackOversize != 0 || m.ServedWarm != 2 || m.ServedCold != 1 {
		t.Errorf("metrics = %+v", m)
	}
	// Room again: the next request is warm.
	if res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "after", App: "app-a", PreparationID: "p2", MemoryMB: 8}); err != nil || !res.Warm {
		t.Errorf("a request after the long ones = %+v, %v; want warm", res, err)
	}
}

// A request served cold may keep its instance as a new lease: ready, of
// the larger of its size and the keep size, serving the next request warm.
func TestKeepAfterServeCreatesALease(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.MemoryMB = 200 })
	ctx := ctxT(t)
	before := rssMB(t)
	res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", MemoryMB: 32, DiskMB: 8, CPUMilli: 1500,
		KeepID: "k1", KeepTTLSeconds: 30, KeepMemoryMB: 48})
	if err != nil {
		t.Fatal(err)
	}
	if res.Warm || !res.Kept || res.KeptID != "k1" || res.KeepRefused != "" || time.Until(res.KeptExpires) < 25*time.Second {
		t.Fatalf("serve with keep = %+v; want cold, kept as k1 for 30 s", res)
	}
	l, err := ta.c.Lease(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != api.StateReady || l.App != "app-a" || l.MemoryMB != 48 || l.DiskMB != 8 || l.CPUMilli != 1500 ||
		l.MaxConcurrent != 2 || l.KeptFrom != "r1" || l.ResidentMB < 47.9 || l.DiskAllocatedMB < 8 {
		t.Errorf("kept lease = %+v", l)
	}
	if grown := rssMB(t) - before; grown < 44 {
		t.Errorf("RSS grew by %.1f MB with a 48 MB instance kept, want ≥ 44", grown)
	}
	warm, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r2", App: "app-a", PreparationID: "k1", MemoryMB: 40, DiskMB: 8})
	if err != nil || !warm.Warm {
		t.Errorf("a request on the kept lease = %+v, %v; want warm", warm, err)
	}
	// A reserve of the same ID and sizes is the same lease.
	same, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "k1", App: "app-a", MemoryMB: 48, DiskMB: 8, CPUMilli: 1500})
	if err != nil || !same.Existing || !same.Created.Equal(l.Created) {
		t.Errorf("reserve of the kept ID = %+v, %v; want the existing lease", same, err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.LeasesKept != 1 || m.Leases != 1 || m.ReservedMemMB != 48 || m.ServedCold != 1 || m.ServedWarm != 1 {
		t.Errorf("metrics = %+v", m)
	}

	// Keeping is admitted like a reserve: what does not fit is served
	// but not kept, and the answer says why.
	for _, tc := range []struct {
		name   string
		req    client.ServeRequest
		reason string
	}{
		{"too big to keep", client.ServeRequest{RequestID: "r3", App: "app-a", MemoryMB: 32, KeepID: "k2", KeepTTLSeconds: 30, KeepMemoryMB: 190},
			"over_capacity: memory: need 190.0 MB, 152.0 MB free"},
		{"live ID", client.ServeRequest{RequestID: "r4", App: "app-a", MemoryMB: 8, KeepID: "k1", KeepTTLSeconds: 30}, "conflict: lease k1 already exists"},
	} {
		res, err := ta.c.Serve(ctx, tc.req)
		if err != nil || res.Warm || res.Kept || !strings.Contains(res.KeepRefused, tc.reason) {
			t.Errorf("%s: %+v, %v; want served cold, not kept, saying %q", tc.name, res, err, tc.reason)
		}
	}
	if err := ta.c.Release(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	res, err = ta.c.Serve(ctx, client.ServeRequest{RequestID: "r5", App: "app-a", MemoryMB: 8, KeepID: "k1", KeepTTLSeconds: 30})
	if err != nil || res.Kept || !strings.Contains(res.KeepRefused, "gone: preparation k1 already ended (released") {
		t.Errorf("keep under a released ID = %+v, %v; want served, not kept, gone", res, err)
	}
	eventually(t, "every cold request's memory to be freed", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ReservedMemMB == 0 && m.Leases == 0 && m.ServingCold == 0 && len(dataFiles(t, ta.dir)) == 0
	})
	if m, _ := ta.c.Metrics(ctx); m.LeasesKept != 1 {
		t.Errorf("%d leases kept, want 1", m.LeasesKept)
	}
}

// The lease a cold request is keeping exists (preparing) while the request
// runs: a release then wins, and nothing is left behind.
func TestReleaseWhileKeepingFreesTheInstance(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.SleepWork = true })
	ctx := ctxT(t)
	done := make(chan client.ServeResult, 1)
	go func() {
		res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", MemoryMB: 16, DiskMB: 8, WorkMS: 1000,
			KeepID: "k1", KeepTTLSeconds: 30})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	eventually(t, "the kept lease to exist", func() bool {
		l, err := ta.c.Lease(ctx, "k1")
		return err == nil && l.State == api.StatePreparing
	})
	if rel, err := ta.c.ReleaseLease(ctx, "k1"); err != nil || !rel.Released {
		t.Fatalf("release of a lease being kept = %+v, %v", rel, err)
	}
	res := <-done
	if res.Kept || !strings.Contains(res.KeepRefused, "released while it was being prepared") {
		t.Errorf("serve whose keep was released = %+v", res)
	}
	eventually(t, "the instance to be freed", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ReservedMemMB == 0 && m.Leases == 0 && len(dataFiles(t, ta.dir)) == 0
	})
}

// Release of a lease while requests run on it: they finish on its memory,
// and its resources return after them.
func TestReleaseWithRequestsInFlight(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.SleepWork = true })
	ctx := ctxT(t)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 16, DiskMB: 8}); err != nil {
		t.Fatal(err)
	}
	done := make(chan client.ServeResult, 1)
	go func() {
		res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r1", App: "app-a", PreparationID: "p1", MemoryMB: 16, WorkMS: 1000})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	eventually(t, "the request on the lease", func() bool {
		l, err := ta.c.Lease(ctx, "p1")
		return err == nil && l.InFlight == 1
	})
	rel, err := ta.c.ReleaseLease(ctx, "p1")
	if err != nil || !rel.Released || rel.InFlight != 1 || rel.RequestsServed != 1 {
		t.Fatalf("release with a request in flight = %+v, %v", rel, err)
	}
	if res := <-done; !res.Warm {
		t.Errorf("the request on the released lease = %+v, want warm (it had started)", res)
	}
	eventually(t, "the lease's resources to return", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ReservedMemMB == 0 && m.Leases == 0 && len(dataFiles(t, ta.dir)) == 0
	})
	if _, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r2", App: "app-a", PreparationID: "p1", MemoryMB: 16}); !errors.Is(err, client.ErrGone) {
		t.Errorf("a request on the released lease: %v, want gone", err)
	}
}

// sameMS compares two latencies reported in JSON.
func sameMS(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// With a queue, a request that finds its lease busy waits for a slot and
// is served warm; one that waits longer than the queue allows is served
// cold and counted once.
func TestBusyLeaseQueuesBeforeFallingBackCold(t *testing.T) {
	ctx := ctxT(t)
	ta := startAgent(t, func(c *agent.Config) { c.QueueWait, c.SleepWork = 2*time.Second, true })
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "q", App: "app-q", MemoryMB: 8, DiskMB: 4, CPUMilli: 1000}); err != nil {
		t.Fatal(err)
	}
	req := func(id string, workMS float64) client.ServeRequest {
		return client.ServeRequest{RequestID: id, App: "app-q", PreparationID: "q", MemoryMB: 8, DiskMB: 4, WorkMS: workMS, FallbackCold: true}
	}
	first := make(chan client.ServeResult, 1)
	go func() {
		res, err := ta.c.Serve(ctx, req("first", 300))
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	eventually(t, "the first request on the lease", func() bool {
		l, err := ta.c.Lease(ctx, "q")
		return err == nil && l.InFlight == 1
	})
	res, err := ta.c.Serve(ctx, req("queued", 0))
	if err != nil || !res.Warm {
		t.Errorf("a request queued behind a 300 ms one = %+v, %v; want warm after waiting", res, err)
	}
	if r := <-first; !r.Warm {
		t.Errorf("first = %+v", r)
	}
	l, err := ta.c.Lease(ctx, "q")
	if err != nil || l.RequestsServed != 2 || l.FallbackConcurrency != 0 {
		t.Errorf("lease %+v, %v: want 2 served warm and no fallback", l, err)
	}

	short := startAgent(t, func(c *agent.Config) { c.QueueWait, c.SleepWork = 20*time.Millisecond, true })
	if _, err := short.c.Reserve(ctx, client.ReserveRequest{PreparationID: "q", App: "app-q", MemoryMB: 8, DiskMB: 4, CPUMilli: 1000}); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = short.c.Serve(ctx, req("long", 2000)) }()
	eventually(t, "the long request on the lease", func() bool {
		l, err := short.c.Lease(ctx, "q")
		return err == nil && l.InFlight == 1
	})
	res, err = short.c.Serve(ctx, req("impatient", 0))
	if err != nil || res.Warm || res.FallbackCode != api.CodeLeaseBusy {
		t.Errorf("a request that waited 20 ms for a 2 s one = %+v, %v; want cold with lease_busy", res, err)
	}
	if l, err := short.c.Lease(ctx, "q"); err != nil || l.FallbackConcurrency != 1 {
		t.Errorf("lease %+v, %v: want the fallback counted once", l, err)
	}
}

// A queued request waits for its lease's slot to free, and tries the
// lease again then: not every millisecond under the agent's lock.
func TestQueuedRequestWaitsForTheSlotWithoutPolling(t *testing.T) {
	ctx := ctxT(t)
	ta := startAgent(t, func(c *agent.Config) { c.QueueWait, c.SleepWork = 2*time.Second, true })
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "q", App: "app-q", MemoryMB: 8, DiskMB: 4, CPUMilli: 1000}); err != nil {
		t.Fatal(err)
	}
	req := func(id string, workMS float64) client.ServeRequest {
		return client.ServeRequest{RequestID: id, App: "app-q", PreparationID: "q", MemoryMB: 8, DiskMB: 4, WorkMS: workMS, FallbackCold: true}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := ta.c.Serve(ctx, req("first", 300)); err != nil {
			t.Error(err)
		}
	}()
	eventually(t, "the first request on the lease", func() bool {
		l, err := ta.c.Lease(ctx, "q")
		return err == nil && l.InFlight == 1
	})
	res, err := ta.c.Serve(ctx, req("queued", 0))
	<-done
	if err != nil || !res.Warm {
		t.Fatalf("queued = %+v, %v; want warm", res, err)
	}
	if n := agent.QueueTries(ta.Agent); n > 2 {
		t.Errorf("the queued request tried its lease %d more times in 300 ms; want it to wait for the slot (at most 2)", n)
	}
}
