// Command benchgateway measures the gateway's warm path (make
// bench-gateway): a host agent and a gateway, each its own process, one
// warm instance of a trivial application, and then
//
//  1. side by side at --rate requests/s for --duration: every other
//     request goes to the instance directly, the rest through the gateway
//     (and the agent), so both see the same machine at the same moment;
//     the added latency is the gateway's percentile less the direct one;
//  2. as fast as --concurrency clients can for --duration: the gateway's
//     requests per second.
//
// With --spool the gateway appends every request to a spool folder (its
// counts then discarded at each bin's end, there being no store): the
// spool's cost on the warm path.
//
// It prints one JSON line last: requests_per_second, added_latency_p50_ms,
// added_latency_p99_ms, direct_p50_ms, direct_p99_ms, gateway_p50_ms,
// gateway_p99_ms, errors.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/stats"
)

type result struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	AddedP50MS        float64 `json:"added_latency_p50_ms"`
	AddedP99MS        float64 `json:"added_latency_p99_ms"`
	DirectP50MS       float64 `json:"direct_p50_ms"`
	DirectP99MS       float64 `json:"direct_p99_ms"`
	GatewayP50MS      float64 `json:"gateway_p50_ms"`
	GatewayP99MS      float64 `json:"gateway_p99_ms"`
	SideBySide        int     `json:"side_by_side_requests"`
	RatePerSecond     float64 `json:"side_by_side_rate"`
	Concurrency       int     `json:"concurrency"`
	Spool             bool    `json:"spool"`
	Errors            int64   `json:"errors"`
}

func main() {
	bin := flag.String("bin", "bin", "folder holding hostagent and gateway")
	specs := flag.String("spec-dir", "samples/specs", "application specs folder")
	app := flag.String("app", "sample-trivial", "the application to call")
	rate := flag.Float64("rate", 1000, "side-by-side requests per second (half direct, half through the gateway)")
	dur := flag.Duration("duration", 10*time.Second, "length of each phase")
	conc := flag.Int("concurrency", 32, "clients in the throughput phase")
	spool := flag.Bool("spool", false, "the gateway spools every request's count (gateway --spool)")
	flag.Parse()
	res, err := run(*bin, *specs, *app, *rate, *dur, *conc, *spool)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc starts a child process whose output goes to a log file, and stops
// it with SIGTERM.
func proc(ctx context.Context, logDir, name string, args ...string) (func(), error) {
	f, err := os.Create(filepath.Join(logDir, filepath.Base(name)+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		f.Close()
	}, nil
}

func waitHTTP(url string, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, d)
}

func run(bin, specs, app string, rate float64, dur time.Duration, conc int, spool bool) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work, err := os.MkdirTemp("", "benchgateway-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(work)
	_ = os.Chmod(work, 0o755)
	root := "bench-root-secret-0123456789abcdef"
	token := api.DeriveToken([]byte(root), "bench")
	agentPort, err := freePort()
	if err != nil {
		return result{}, err
	}
	gwPort, err := freePort()
	if err != nil {
		return result{}, err
	}
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", agentPort)
	// Each child reads its credential from the environment.
	if err := errors.Join(os.Setenv("HOSTAGENT_TOKEN", token), os.Setenv("FOREWARM_AGENT_ROOT_SECRET", root)); err != nil {
		return result{}, err
	}
	stopAgent, err := proc(ctx, work, filepath.Join(bin, "hostagent"), "--host-id", "bench", "--listen", fmt.Sprintf("127.0.0.1:%d", agentPort),
		"--data-dir", filepath.Join(work, "agent"), "--spec-dir", specs, "--log-level", "warn")
	if err != nil {
		return result{}, err
	}
	defer stopAgent()
	if err := waitHTTP(agentURL+api.PathHealth, 30*time.Second); err != nil {
		return result{}, err
	}
	c := client.New(agentURL, token)
	lease, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: "bench-1", App: app, TTL: time.Hour})
	if err != nil {
		return result{}, fmt.Errorf("start an instance of %s: %w", app, err)
	}
	if lease.Instance == nil {
		return result{}, fmt.Errorf("host has no spec of %s in %s: got a memory lease", app, specs)
	}
	direct := fmt.Sprintf("http://127.0.0.1:%d/", lease.Instance.Port)
	gwArgs := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", gwPort), "--id", "bench",
		"--no-store", "--agent", "bench=" + agentURL, "--bin", "1s", "--log-level", "warn"}
	if spool {
		gwArgs = append(gwArgs, "--spool", filepath.Join(work, "spool"))
	}
	stopGW, err := proc(ctx, work, filepath.Join(bin, "gateway"), gwArgs...)
	if err != nil {
		return result{}, err
	}
	defer stopGW()
	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	if err := waitHTTP(gw+"/_forewarm/readyz", 30*time.Second); err != nil {
		return result{}, err
	}
	via := gw + "/" + app + "/"

	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 512
	hc := &http.Client{Transport: t, Timeout: 10 * time.Second}
	var errs atomic.Int64
	call := func(url string) (time.Duration, bool) {
		t0 := time.Now()
		r, err := hc.Get(url)
		if err != nil {
			errs.Add(1)
			return 0, false
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			errs.Add(1)
			return 0, false
		}
		return time.Since(t0), true
	}
	// Warm both paths' connections.
	for range 200 {
		call(direct)
		call(via)
	}
	errs.Store(0)

	// Phase 1: side by side, open loop at rate.
	var mu sync.Mutex
	var dLat, gLat []float64
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= dur {
			break
		}
		time.Sleep(time.Until(at))
		url, into := direct, &dLat
		if i%2 == 1 {
			url, into = via, &gLat
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, ok := call(url); ok {
				mu.Lock()
				*into = append(*into, float64(d)/float64(time.Millisecond))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res := result{SideBySide: len(dLat) + len(gLat), RatePerSecond: rate, Concurrency: conc, Spool: spool}
	if len(dLat) == 0 || len(gLat) == 0 {
		return res, errors.New("no request succeeded side by side")
	}
	res.DirectP50MS, res.DirectP99MS = stats.Percentile(dLat, 0.5), stats.Percentile(dLat, 0.99)
	res.GatewayP50MS, res.GatewayP99MS = stats.Percentile(gLat, 0.5), stats.Percentile(gLat, 0.99)
	res.AddedP50MS, res.AddedP99MS = res.GatewayP50MS-res.DirectP50MS, res.GatewayP99MS-res.DirectP99MS

	// Phase 2: throughput, closed loop.
	var done atomic.Int64
	end := time.Now().Add(dur)
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if _, ok := call(via); ok {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.RequestsPerSecond = float64(done.Load()) / time.Since(t0).Seconds()
	res.Errors = errs.Load()
	_ = c.Release(context.Background(), lease.PreparationID)
	return res, nil
}
