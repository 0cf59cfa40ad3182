package agent_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// A cold serve holds CPU like a lease's request (its cpu_milli, at least
// one core), through the same admission: on a one-core host whose core is
// promised to a lease, a burst of cold serves is refused with over_capacity
// naming the CPU rather than run on the lease's core, and the lease's own
// requests are served warm; a request that finds its lease busy waits for
// it rather than take a core nobody has.
func TestColdServesTakeCPUThroughAdmission(t *testing.T) {
	ctx := ctxT(t)
	ta := startAgent(t, func(c *agent.Config) { c.CPUMilli, c.SleepWork = 1000, true })

	// No lease: one core, so one cold serve at a time.
	const n = 4
	burst := func(prefix string) (served int, refusals []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: fmt.Sprintf("%s-%d", prefix, i), App: "app-c", MemoryMB: 4, DiskMB: 1, WorkMS: 1500})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refusals = append(refusals, err)
				} else {
					served++
				}
			})
		}
		wg.Wait()
		return served, refusals
	}
	served, refusals := burst("free")
	if served < 1 || len(refusals) < 1 {
		t.Errorf("%d concurrent 1.5 s cold serves on a one-core host: %d served, %d refused; want at least one of each (one core, one at a time)", n, served, len(refusals))
	}
	for _, err := range refusals {
		if !errors.Is(err, client.ErrOverCapacity) || !strings.Contains(err.Error(), "CPU: need 1000 millicores") {
			t.Errorf("a cold serve beyond the core: %v, want over_capacity naming the CPU", err)
		}
	}
	eventually(t, "the cold serves to end", func() bool {
		m, err := ta.c.Metrics(ctx)
		return err == nil && m.ServingCold == 0 && m.ReservedCPUMilli == 0
	})

	// The core promised to a lease stays the lease's.
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "l1", App: "app-w", MemoryMB: 8, DiskMB: 4, CPUMilli: 1000}); err != nil {
		t.Fatal(err)
	}
	served, refusals = burst("promised")
	if served != 0 || len(refusals) != n {
		t.Errorf("cold serves on a host whose only core is promised to a lease: %d served, %d refused; want all refused", served, len(refusals))
	}
	if res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "warm-1", App: "app-w", PreparationID: "l1", MemoryMB: 8, WorkMS: 10, FallbackCold: true}); err != nil || !res.Warm {
		t.Errorf("a request on the lease = %+v, %v; want warm", res, err)
	}

	// Its lease busy and no core for a cold instance: the request waits
	// for the lease (warm, no fallback counted) instead of running cold.
	first := make(chan error, 1)
	go func() {
		_, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "long", App: "app-w", PreparationID: "l1", MemoryMB: 8, WorkMS: 500, FallbackCold: true})
		first <- err
	}()
	eventually(t, "the long request on the lease", func() bool {
		l, err := ta.c.Lease(ctx, "l1")
		return err == nil && l.InFlight == 1
	})
	res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "next", App: "app-w", PreparationID: "l1", MemoryMB: 8, WorkMS: 10, FallbackCold: true})
	if err != nil || !res.Warm || res.FallbackCode != "" {
		t.Errorf("a request finding its lease busy on a host with no free core = %+v, %v; want warm after waiting", res, err)
	}
	if err := <-first; err != nil {
		t.Error(err)
	}
	l, err := ta.c.Lease(ctx, "l1")
	if err != nil || l.RequestsServed != 3 || l.FallbackConcurrency != 0 {
		t.Errorf("lease %+v, %v: want 3 served warm, no fallback", l, err)
	}
	m, err := ta.c.Metrics(ctx)
	if err != nil || m.ReservedCPUMilli != 1000 || m.FallbackConcurrency != 0 {
		t.Errorf("metrics %+v, %v: want the lease's core reserved and no fallback", m, err)
	}
	if api.MaxConcurrent(1000) != 1 {
		t.Fatal("a one-core lease runs one request at a time")
	}
}
