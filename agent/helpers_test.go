package agent_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/client"
)

const testToken = "test-token-0123456789abcdef"

// testAgent is a real agent behind a real HTTP server on loopback.
type testAgent struct {
	*agent.Agent
	dir string
	url string
	c   *client.Client
	srv *httptest.Server
}

// startAgent runs an agent with modest capacity in a temp data folder;
// edit adjusts the config first.
func startAgent(t testing.TB, edit func(*agent.Config)) *testAgent {
	t.Helper()
	dir := t.TempDir()
	cfg := agent.Config{
		HostID: "test-host", DataDir: dir,
		MemoryMB: 1024, DiskMB: 1024, CPUMilli: 4000,
		DefaultTTL: time.Minute, ReapEvery: 50 * time.Millisecond, SampleEvery: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	h, err := a.Handler(testToken)
	if err != nil {
		t.Fatalf("Handler: %v", err)
	}
	srv := httptest.NewServer(h)
	ta := &testAgent{Agent: a, dir: dir, url: srv.URL, c: client.New(srv.URL, testToken), srv: srv}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ta
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rssMB is this process's resident set from /proc/self/status.
func rssMB(t testing.TB) float64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// dataFiles lists the file names in dir.
func dataFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "fw-probe-") {
			continue // the I/O probe's file exists for microseconds at a time
		}
		names = append(names, e.Name())
	}
	return names
}

func leaseFile(dir, id string) string { return filepath.Join(dir, "fw-lease-"+id+".dat") }

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
