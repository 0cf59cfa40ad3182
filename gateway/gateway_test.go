package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
)

const rootSecret = "gateway-test-root-secret-0123456789"

// openDir is a temporary folder the instance user may enter (t.TempDir's
// parent is private to root).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gateway-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// instApp writes a spec running the agent's test application for each
// app, into a folder the unprivileged instance user can read.
func instApp(t *testing.T, apps ...string) string {
	t.Helper()
	dir := openDir(t)
	bin := testenv.InstApp(t)
	for _, app := range apps {
		spec := fmt.Sprintf(`{"app": %q, "version": "1", "command": [%q, "--start-delay", "150ms"],
		  "readiness": {"path": "/healthz", "timeout": "20s"},
		  "shadow": {"method": "POST", "path": "/shadow", "body": "{}", "max_latency": "2s"},
		  "memory_mb": 64, "cpu_milli": 500, "concurrency": 4, "stop_grace": "1s"}`, app, bin)
		require.NoError(t, os.WriteFile(filepath.Join(dir, app+".json"), []byte(spec), 0o644))
	}
	return dir
}

// startAgent runs a real host agent serving process instances of the specs
// in specDir.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveInstApp()
	os.Exit(code)
}

func startAgent(t *testing.T, id, specDir string) gateway.Host {
	t.Helper()
	a, err := agent.New(agent.Config{HostID: id, DataDir: filepath.Join(openDir(t), "data"), SpecDir: specDir,
		MemoryMB: 2048, DiskMB: 2048, CPUMilli: 8000, Speed: 1, DefaultTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	h, err := a.Handler(api.DeriveToken([]byte(rootSecret), id))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, a.Close(ctx))
	})
	return gateway.Host{ID: id, URL: srv.URL}
}

type kept struct {
	mu sync.Mutex
	ks []gateway.Kept
}

func (k *kept) add(_ context.Context, x gateway.Kept) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ks = append(k.ks, x)
	return nil
}

func startGateway(t *testing.T, st *store.Store, k *kept, hosts ...gateway.Host) (*gateway.Gateway, string) {
	t.Helper()
	return startGatewayWith(t, st, k, nil, hosts...)
}

// startGatewayWith starts a gateway whose test settings adjust changes.
func startGatewayWith(t *testing.T, st *store.Store, k *kept, adjust func(*gateway.Config), hosts ...gateway.Host) (*gateway.Gateway, string) {
	t.Helper()
	trust, err := client.NewTrust(client.TrustConfig{RootSecret: []byte(rootSecret)})
	require.NoError(t, err)
	cfg := gateway.Config{ID: "gw-test", Hosts: gateway.Fixed(hosts), Trust: trust,
		Bin: time.Second, RefreshEvery: 100 * time.Millisecond, KeepTTL: time.Minute,
		Arrivals: st.RecordArrivals, Outcomes: st.RecordGatewayRequests, OnKept: k.add, OutcomeEvery: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if adjust != nil {
		adjust(&cfg)
	}
	g, err := gateway.New(context.Background(), cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func send(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// The request path end to end on real agents and real processes: a cold
// start shared by the requests that arrive during it, warm requests after,
// a stale entry retried, an instance that dies, unknown applications, and
// every count and record in the store.
func TestGatewayServesRealInstances(t *testing.T) {
	st := storetest.New(t)
	specs := instApp(t, "echo", "crashy")
	h1 := startAgent(t, "gw-h1", specs)
	h2 := startAgent(t, "gw-h2", specs)
	var k kept
	// The table is read once, at start: the stale entry below must still
	// be in it when the request comes, whatever the machine's speed.
	g, url := startGatewayWith(t, st, &k, func(c *gateway.Config) { c.RefreshEvery = time.Hour }, h1, h2)
	began := time.Now()
	sent := map[string]int{}

	// Unknown application: a 404 that names it; nothing counted.
	resp, body := send(t, "GET", url+"/nosuch/x", "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	var eb gateway.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(body), &eb))
	require.Equal(t, gateway.CodeUnknownApp, eb.Code)
	require.Equal(t, "nosuch", eb.App)

	// Three requests at once with no instance (one takes four at a time):
	// one start, shared.
	var wg sync.WaitGroup
	outcomes := make([]string, 3)
	for i := range outcomes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := send(t, "POST", url+"/echo/echo/a?q=1", fmt.Sprintf("req-%d", i))
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Equal(t, fmt.Sprintf("req-%d", i), body)
			require.Equal(t, "/echo/a", resp.Header.Get("X-Echo-Path"))
			require.Equal(t, "q=1", resp.Header.Get("X-Echo-Query"))
			require.Equal(t, "false", resp.Header.Get("X-Saw-Authorization"), "the agent's credential never reaches the instance")
			outcomes[i] = resp.Header.Get(gateway.HeaderOutcome)
		}()
	}
	wg.Wait()
	sent["echo"] += len(outcomes)
	cold, joined := 0, 0
	for _, o := range outcomes {
		switch o {
		case records.GatewayCold:
			cold++
		case records.GatewayColdJoined:
			joined++
		}
	}
	require.Equal(t, 1, cold, "one start: %v", outcomes)
	require.Equal(t, 2, joined, "the others waited for it: %v", outcomes)
	k.mu.Lock()
	require.Len(t, k.ks, 1, "the loop is told of the instance")
	started := k.ks[0]
	k.mu.Unlock()
	require.Equal(t, "echo", started.App)
	require.NotNil(t, started.Lease.Instance)

	// Then warm, without a store or Temporal round trip.
	resp, _ = send(t, "GET", url+"/echo/echo/b", "")
	require.Equal(t, records.GatewayWarm, resp.Header.Get(gateway.HeaderOutcome))
	sent["echo"]++

	// Released behind the gateway's back: the stale entry costs one retry,
	// served by a new instance.
	hc := client.New(hostURL(started.Host, h1, h2), api.DeriveToken([]byte(rootSecret), started.Host))
	_, err := hc.ReleaseLease(context.Background(), started.Lease.PreparationID)
	require.NoError(t, err)
	resp, body = send(t, "GET", url+"/echo/echo/c", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, records.GatewayCold, resp.Header.Get(gateway.HeaderOutcome))
	sent["echo"]++

	// An instance that dies while serving: the client gets a clear 502.
	resp, _ = send(t, "GET", url+"/crashy/echo/warmup", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = send(t, "GET", url+"/crashy/exit?code=3", "")
	require.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
	require.NoError(t, json.Unmarshal([]byte(body), &eb))
	require.Equal(t, gateway.CodeInstanceDown, eb.Code, body)
	// The next request starts a new instance.
	resp, body = send(t, "GET", url+"/crashy/echo/again", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	sent["crashy"] += 3

	// Close writes the open bin: every request counted once, and recorded.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Close(ctx))
	busy, err := st.BusyBins(ctx, began.Add(-time.Second), time.Now().Add(time.Second), time.Hour)
	require.NoError(t, err)
	for app, n := range sent {
		var total uint64
		for _, c := range busy[app].Counts {
			total += c
		}
		require.EqualValues(t, n, total, "arrivals of %s", app)
	}
	rows, err := st.GatewayRequests(ctx, began.Add(-time.Second), time.Now().Add(time.Second))
	require.NoError(t, err)
	require.Len(t, rows, sent["echo"]+sent["crashy"])
	var retried, failed int
	for _, r := range rows {
		if r.Retried {
			retried++
		}
		if r.Outcome == records.GatewayFailed {
			failed++
			require.Contains(t, r.Error, "instance_failed")
		}
		if r.Outcome == records.GatewayCold {
			require.Greater(t, r.StartMS, 100.0, "a real start (the app waits 150 ms before it listens)")
		}
		require.NotEmpty(t, r.Host)
	}
	require.Equal(t, 1, retried, "the stale entry")
	require.Equal(t, 1, failed, "the instance that died")
}

// A request that finds its application's instance still being prepared
// (a loop preparing ahead of its bin) waits for that one: no second start.
func TestGatewayWaitsForAPreparationUnderWay(t *testing.T) {
	st := storetest.New(t)
	specs := instApp(t, "echo")
	slow := strings.Replace(mustRead(t, filepath.Join(specs, "echo.json")), `"150ms"`, `"1500ms"`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(specs, "echo.json"), []byte(slow), 0o644))
	h := startAgent(t, "gw-p1", specs)
	var k kept
	_, url := startGateway(t, st, &k, h)
	hc := client.New(h.URL, api.DeriveToken([]byte(rootSecret), h.ID))
	prepared := make(chan error, 1)
	go func() {
		_, err := hc.Reserve(context.Background(), client.ReserveRequest{PreparationID: "loop-prep-1", App: "echo", TTL: time.Minute})
		prepared <- err
	}()
	require.Eventually(t, func() bool {
		ls, err := hc.Leases(context.Background())
		return err == nil && len(ls) == 1 && ls[0].State == api.StatePreparing
	}, 5*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // the gateway's table is read every 100 ms
	resp, body := send(t, "GET", url+"/echo/echo/x", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "loop-prep-1", resp.Header.Get(api.HeaderLease), "served by the instance being prepared")
	require.NoError(t, <-prepared)
	ls, err := hc.Leases(context.Background())
	require.NoError(t, err)
	require.Len(t, ls, 1, "no second instance")
	k.mu.Lock()
	require.Empty(t, k.ks, "nothing kept: the instance is the loop's")
	k.mu.Unlock()
}

// With a host suffix, the host name names the application and the path
// goes to it unchanged; the path prefix still works.
func TestGatewayRoutesByHostName(t *testing.T) {
	st := storetest.New(t)
	h := startAgent(t, "gw-n1", instApp(t, "echo"))
	var k kept
	_, url := startGatewayWith(t, st, &k, func(c *gateway.Config) { c.HostSuffix = ".apps.test" }, h)
	req, err := http.NewRequest("GET", url+"/echo/by-host?x=1", nil)
	require.NoError(t, err)
	req.Host = "echo.apps.test:8080"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "/echo/by-host", resp.Header.Get("X-Echo-Path"), "the whole path reaches the instance")
	resp, _ = send(t, "GET", url+"/echo/echo/by-path", "")
	require.Equal(t, "/echo/by-path", resp.Header.Get("X-Echo-Path"))
	req.Host = "other.apps.test"
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "an application no host runs")
}

// Two gateways behind one load balancer: each writes its own batches, and
// the store adds them up, every request once.
func TestTwoGatewaysCountEveryRequestOnce(t *testing.T) {
	st := storetest.New(t)
	h := startAgent(t, "gw-two", instApp(t, "echo"))
	trust, err := client.NewTrust(client.TrustConfig{RootSecret: []byte(rootSecret)})
	require.NoError(t, err)
	began := time.Now()
	var gws []*gateway.Gateway
	var urls []string
	for _, id := range []string{"gw-a", "gw-b"} {
		g, err := gateway.New(context.Background(), gateway.Config{ID: id, Hosts: gateway.Fixed{h}, Trust: trust, Bin: time.Second,
			RefreshEvery: 100 * time.Millisecond, Arrivals: st.RecordArrivals, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		srv := httptest.NewServer(g)
		t.Cleanup(srv.Close)
		gws, urls = append(gws, g), append(urls, srv.URL)
	}
	const n = 40
	for i := range n {
		resp, body := send(t, "GET", urls[i%2]+"/echo/echo/x", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		if i%10 == 0 {
			time.Sleep(time.Second) // requests spread over several bins
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, g := range gws {
		require.NoError(t, g.Close(ctx))
	}
	busy, err := st.BusyBins(ctx, began.Add(-time.Second), time.Now().Add(time.Second), time.Hour)
	require.NoError(t, err)
	var total uint64
	for _, c := range busy["echo"].Counts {
		total += c
	}
	require.EqualValues(t, n, total)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func hostURL(id string, hs ...gateway.Host) string {
	for _, h := range hs {
		if h.ID == id {
			return h.URL
		}
	}
	return ""
}
