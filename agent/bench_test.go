package agent_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/client"
)

// Benchmarks go through the real HTTP API on loopback, like the engine.
//
//	go test ./agent -run '^$' -bench . -benchtime 20x
//
// They report medians (the figures the issue asks for) as extra metrics.

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func bigAgent(b *testing.B) *testAgent {
	return startAgent(b, func(c *agent.Config) { c.MemoryMB, c.DiskMB = 4096, 4096 })
}

// waitIdle waits until only held MB of memory (live leases) is reserved.
func waitIdle(b *testing.B, ta *testAgent, held float64) {
	eventually(b, "resources to be freed", func() bool {
		m := ta.Metrics()
		return m.ReservedMemMB <= held && m.ServingCold == 0
	})
}

// BenchmarkServeWarmVsCold serves a 512 MB memory + 256 MB storage
// request cold and warm in each iteration, the warm ones all on one lease
// (a warm instance serving request after request).
func BenchmarkServeWarmVsCold(b *testing.B) {
	ta := bigAgent(b)
	ctx := ctxT(b)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "bench", App: "app-a", MemoryMB: 512, DiskMB: 256, TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	var warmTotal, coldTotal, warmSetup, coldSetup, warmRTT, coldRTT []float64
	i := 0
	for b.Loop() {
		i++
		for _, warm := range []bool{i%2 == 0, i%2 != 0} { // alternate the order
			req := client.ServeRequest{RequestID: fmt.Sprintf("r-%d-%v", i, warm), App: "app-a", MemoryMB: 512, DiskMB: 256, ReadRatio: 0.7}
			if warm {
				req.PreparationID = "bench"
			}
			start := time.Now()
			res, err := ta.c.Serve(ctx, req)
			rtt := float64(time.Since(start)) / 1e6
			if err != nil {
				b.Fatal(err)
			}
			if res.Warm != warm {
				b.Fatalf("warm = %v, want %v", res.Warm, warm)
			}
			if warm {
				warmTotal, warmSetup, warmRTT = append(warmTotal, res.TotalMS), append(warmSetup, res.SetupMS), append(warmRTT, rtt)
			} else {
				coldTotal, coldSetup, coldRTT = append(coldTotal, res.TotalMS), append(coldSetup, res.SetupMS), append(coldRTT, rtt)
			}
			b.StopTimer()
			waitIdle(b, ta, 512) // a cold request's memory is unmapped in the background
			b.StartTimer()
		}
	}
	l, err := ta.c.Lease(ctx, "bench")
	if err != nil || l.RequestsServed != int64(len(warmTotal)) {
		b.Fatalf("lease = %+v, %v; want %d requests served on it", l, err, len(warmTotal))
	}
	b.ReportMetric(median(coldTotal), "cold-median-ms")
	b.ReportMetric(median(warmTotal), "warm-median-ms")
	b.ReportMetric(100*median(warmTotal)/median(coldTotal), "warm/cold-%")
	b.ReportMetric(median(coldSetup), "cold-setup-ms")
	b.ReportMetric(median(warmSetup), "warm-setup-ms")
	b.ReportMetric(median(coldRTT), "cold-rtt-ms")
	b.ReportMetric(median(warmRTT), "warm-rtt-ms")
}

// BenchmarkShadow512 runs shadow requests on a 512 MB + 256 MB lease.
func BenchmarkShadow512(b *testing.B) {
	ta := bigAgent(b)
	ctx := ctxT(b)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "shadow", App: "app-a", MemoryMB: 512, DiskMB: 256}); err != nil {
		b.Fatal(err)
	}
	var total, rtt []float64
	for b.Loop() {
		start := time.Now()
		res, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: "shadow", ReadRatio: 0.7})
		if err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, float64(time.Since(start))/1e6)
		total = append(total, res.TotalMS)
	}
	b.ReportMetric(median(total), "shadow-median-ms")
	b.ReportMetric(median(rtt), "shadow-rtt-median-ms")
}

// BenchmarkServeSmallWarmConcurrent serves many small warm requests (1 MB
// memory + 1 MB storage) from 16 concurrent callers on 8 leases of two
// cores each, so every request finds room on its lease.
func BenchmarkServeSmallWarmConcurrent(b *testing.B) {
	ta := startAgent(b, func(c *agent.Config) { c.MemoryMB, c.DiskMB, c.CPUMilli = 4096, 4096, 16000 })
	ctx := ctxT(b)
	const leases, workers = 8, 16
	for k := range leases {
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: fmt.Sprintf("small-%d", k), App: "app-a",
			MemoryMB: 1, DiskMB: 1, CPUMilli: 2000, TTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
	var next, served atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		lease := fmt.Sprintf("small-%d", w%leases)
		wg.Go(func() {
			for int(next.Add(1)) <= b.N {
				n := served.Add(1)
				res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: fmt.Sprintf("r-%d", n), App: "app-a", PreparationID: lease,
					MemoryMB: 1, DiskMB: 1, ReadRatio: 0.7})
				if err != nil || !res.Warm {
					b.Errorf("serve on %s: %+v %v", lease, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(served.Load())/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkExtendVsPrepare compares keeping a 512 MB + 256 MB lease by
// extending it in place with preparing a new one (reserve and shadow, then
// release), which is what a loop without extension does every horizon.
func BenchmarkExtendVsPrepare(b *testing.B) {
	ta := bigAgent(b)
	ctx := ctxT(b)
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "kept", App: "app-a", MemoryMB: 512, DiskMB: 256, TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	var extend, prepare []float64
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		if _, err := ta.c.Extend(ctx, "kept", time.Hour, "app-a"); err != nil {
			b.Fatal(err)
		}
		extend = append(extend, float64(time.Since(start))/1e6)
		id := fmt.Sprintf("fresh-%d", i)
		start = time.Now()
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 512, DiskMB: 256}); err != nil {
			b.Fatal(err)
		}
		if _, err := ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: id, ReadRatio: 0.7}); err != nil {
			b.Fatal(err)
		}
		prepare = append(prepare, float64(time.Since(start))/1e6)
		b.StopTimer()
		if err := ta.c.Release(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	if l, err := ta.c.Lease(ctx, "kept"); err != nil || l.Shadows != 0 || l.Extensions != len(extend) {
		b.Fatalf("kept lease = %+v, %v", l, err)
	}
	b.ReportMetric(median(extend), "extend-median-ms")
	b.ReportMetric(median(prepare), "prepare-median-ms")
}
