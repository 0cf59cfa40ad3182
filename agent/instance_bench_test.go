package agent_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// BenchmarkInstanceProxy sends the same small POST to a process instance
// directly (its loopback port) and through the agent
// (/v1/instances/{id}/http/...), one at a time, each over kept-alive
// connections: the difference is what the agent adds.
//
//	go test ./agent -run '^$' -bench InstanceProxy
func BenchmarkInstanceProxy(b *testing.B) {
	ia := startInstanceAgent(b, nil, appSpec(b, "bench", func(m map[string]any) { m["concurrency"] = 64; m["cpu_milli"] = 2000 }))
	l := ia.reserveApp(b, "p1", "bench")
	body := strings.Repeat("x", 256)
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	directURL := "http://127.0.0.1:" + itoa(l.Instance.Port) + "/echo/bench?q=1"

	send := func(b *testing.B, do func() (*http.Response, error)) []float64 {
		var lat []float64
		for b.Loop() {
			start := time.Now()
			resp, err := do()
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(body)) {
				b.Fatalf("answer %d, %d bytes", resp.StatusCode, n)
			}
			lat = append(lat, float64(time.Since(start).Microseconds()))
		}
		return lat
	}
	report := func(b *testing.B, lat []float64) {
		slices.Sort(lat)
		b.ReportMetric(median(lat), "p50-µs")
		b.ReportMetric(lat[len(lat)*99/100], "p99-µs")
	}
	b.Run("direct", func(b *testing.B) {
		report(b, send(b, func() (*http.Response, error) {
			return direct.Post(directURL, "text/plain", strings.NewReader(body))
		}))
	})
	b.Run("agent", func(b *testing.B) {
		ctx := ctxT(b)
		report(b, send(b, func() (*http.Response, error) {
			req, err := ia.c.InstanceRequest(ctx, "p1", http.MethodPost, "/echo/bench?q=1", strings.NewReader(body))
			if err != nil {
				return nil, err
			}
			resp, err := ia.c.HTTP().Do(req)
			if err == nil && resp.Header.Get(api.HeaderLease) != "p1" {
				b.Fatalf("answer without %s: %v", api.HeaderLease, resp.Header)
			}
			return resp, err
		}))
	})
}
