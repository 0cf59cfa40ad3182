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

// BenchmarkServeWarmVsCold serves a 512 MB memory + 256 MB storage request
// cold and warm (on a lease prepared outside the timer) in each iteration.
func BenchmarkServeWarmVsCold(b *testing.B) {
	ta := bigAgent(b)
	ctx := ctxT(b)
	var warmTotal, coldTotal, warmSetup, coldSetup, warmRTT, coldRTT []float64
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		prep := fmt.Sprintf("bench-%d", i)
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: prep, App: "app-a", MemoryMB: 512, DiskMB: 256}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		held := 512.0                                     // the lease, until the warm request has used it
		for _, warm := range []bool{i%2 == 0, i%2 != 0} { // alternate the order
			req := client.ServeRequest{RequestID: fmt.Sprintf("r-%d-%v", i, warm), App: "app-a", MemoryMB: 512, DiskMB: 256, ReadRatio: 0.7}
			if warm {
				req.PreparationID = prep
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
			if warm {
				held = 0
			}
			b.StopTimer()
			waitIdle(b, ta, held) // the previous request's memory is unmapped in the background
			b.StartTimer()
		}
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
// memory + 1 MB storage, each on its own lease) from 16 concurrent callers.
// Leases are prepared in batches outside the timer.
func BenchmarkServeSmallWarmConcurrent(b *testing.B) {
	ta := bigAgent(b)
	ctx := ctxT(b)
	const batch, workers = 256, 16
	var served atomic.Int64
	var timed time.Duration
	n := 0
	b.StopTimer()
	for done := 0; done < b.N; {
		size := min(batch, b.N-done)
		ids := make(chan string, size)
		var wg sync.WaitGroup
		for k := range size {
			id := fmt.Sprintf("small-%d", n+k)
			ids <- id
			wg.Go(func() {
				if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 1, DiskMB: 1}); err != nil {
					b.Error(err)
				}
			})
		}
		close(ids)
		wg.Wait()
		n += size
		start := time.Now()
		b.StartTimer()
		for range workers {
			wg.Go(func() {
				for id := range ids {
					res, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: "r-" + id, App: "app-a", PreparationID: id, MemoryMB: 1, DiskMB: 1, ReadRatio: 0.7})
					if err != nil || !res.Warm {
						b.Errorf("serve %s: %+v %v", id, res, err)
						return
					}
					served.Add(1)
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		timed += time.Since(start)
		done += size
		waitIdle(b, ta, 0)
	}
	b.ReportMetric(float64(served.Load())/timed.Seconds(), "requests/s")
}
