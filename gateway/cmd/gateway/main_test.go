package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
)

const rootSecret = "gateway-kill-test-root-secret-0123456789"

// The test binary is the gateway too: run with $GATEWAY_TEST_MAIN=1 it is
// main, so the test can SIGKILL a real gateway process.
func TestMain(m *testing.M) {
	if os.Getenv("GATEWAY_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	testenv.RemoveInstApp()
	os.Exit(code)
}

// openDir is a temporary folder the instance user may enter.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gateway-kill-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startAgent runs a real host agent with the test application as app.
func startAgent(t *testing.T, id, app string) string {
	t.Helper()
	specs := openDir(t)
	spec := fmt.Sprintf(`{"app": %q, "version": "1", "command": [%q],
	  "readiness": {"path": "/healthz", "timeout": "20s"},
	  "shadow": {"method": "POST", "path": "/shadow", "body": "{}", "max_latency": "2s"},
	  "memory_mb": 64, "cpu_milli": 500, "concurrency": 16, "stop_grace": "1s"}`, app, testenv.InstApp(t))
	require.NoError(t, os.WriteFile(filepath.Join(specs, app+".json"), []byte(spec), 0o644))
	a, err := agent.New(agent.Config{HostID: id, DataDir: filepath.Join(openDir(t), "data"), SpecDir: specs,
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
	return srv.URL
}

// gatewayProc starts the gateway as a process of its own, logging to log.
func gatewayProc(t *testing.T, log io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GATEWAY_TEST_MAIN=1", "FOREWARM_AGENT_ROOT_SECRET="+rootSecret)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r, err := http.Get(url + "/_forewarm/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// A gateway SIGKILLed under load and started again on the same spool: every
// request answered is counted in the store exactly once; a request whose
// connection the kill cut may or may not be (it was spooled, or not yet):
// answered <= counted <= sent.
func TestGatewayKilledLosesNoCount(t *testing.T) {
	cfg := storetest.Config(t)
	ctx := context.Background()
	st, err := store.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	const app = "killtest"
	agentURL := startAgent(t, "kill-h1", app)
	addr := freeAddr(t)
	url := "http://" + addr
	spool := filepath.Join(t.TempDir(), "spool")
	args := []string{"--listen", addr, "--id", "gw-kill", "--agent", "kill-h1=" + agentURL, "--bin", "1s",
		"--spool", spool, "--clickhouse-addr", cfg.Addr, "--clickhouse-database", cfg.Database, "--log-level", "info"}
	var logs [2]strings.Builder
	began := time.Now()
	first := gatewayProc(t, &logs[0], args...)
	waitReady(t, url)

	var sent, answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				r, err := hc.Get(url + "/" + app + "/healthz")
				if err != nil {
					time.Sleep(5 * time.Millisecond) // the gateway is down
					continue
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode == http.StatusOK {
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(2500 * time.Millisecond) // two bins ended, one open
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	atKill := answered.Load()
	second := gatewayProc(t, &logs[1], args...)
	waitReady(t, url)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	require.NoError(t, second.Wait(), logs[1].String())

	busy, err := st.BusyBins(ctx, began.Add(-2*time.Second), time.Now().Add(2*time.Second), time.Second)
	require.NoError(t, err)
	var counted int64
	for _, n := range busy[app].Counts {
		counted += int64(n)
	}
	t.Logf("sent %d, answered %d (%d before the kill), counted %d", sent.Load(), answered.Load(), atKill, counted)
	require.Greater(t, atKill, int64(0))
	require.GreaterOrEqual(t, counted, answered.Load(), "an answered request was not counted")
	require.LessOrEqual(t, counted, sent.Load(), "a request was counted twice")
	require.Contains(t, logs[1].String(), "spool: replaying a previous run")
	left, err := os.ReadDir(spool)
	require.NoError(t, err)
	require.Empty(t, left, "the spool is empty once every batch is written")
}
