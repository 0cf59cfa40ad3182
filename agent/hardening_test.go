package agent_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

// A release that reaches the host before its reserve leaves a tombstone:
// the late reserve is refused instead of creating a lease nobody releases.
func TestReleaseOfAnUnknownIDRefusesALateReserve(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	_, err := ta.c.ReleaseLease(ctx, "late")
	if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "remembered as released") {
		t.Fatalf("release of an unknown ID: %v, want not_found", err)
	}
	_, err = ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "late", App: "app-a", MemoryMB: 8})
	if !errors.Is(err, client.ErrGone) || !client.IsPermanent(err) || !strings.Contains(err.Error(), "released before it was reserved") {
		t.Errorf("the late reserve: %v, want gone", err)
	}
	// A second release says it had ended; nothing was ever held.
	if rel, err := ta.c.ReleaseLease(ctx, "late"); err != nil || rel.Released || rel.State != api.StateReleased {
		t.Errorf("second release = %+v, %v", rel, err)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.Leases != 0 || m.ReservedMemMB != 0 || m.Tombstones != 1 || len(dataFiles(t, ta.dir)) != 0 {
		t.Errorf("after the refused late reserve: %+v, files %v", m, dataFiles(t, ta.dir))
	}
}

// Tombstones are bounded in number (oldest forgotten first) and in time.
func TestTombstonesAreBounded(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.MaxTombstones = 3 })
	ctx := ctxT(t)
	for i := range 5 {
		_ = ta.c.Release(ctx, fmt.Sprintf("t%d", i))
	}
	if m, _ := ta.c.Metrics(ctx); m.Tombstones != 3 {
		t.Errorf("%d tombstones after 5 releases with a limit of 3", m.Tombstones)
	}
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "t4", App: "app-a", MemoryMB: 1}); !errors.Is(err, client.ErrGone) {
		t.Errorf("reserve of the newest tombstoned ID: %v, want gone", err)
	}
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "t0", App: "app-a", MemoryMB: 1}); err != nil {
		t.Errorf("reserve of the forgotten oldest ID: %v, want it reserved", err)
	}

	short := startAgent(t, func(c *agent.Config) { c.TombstoneTTL = 200 * time.Millisecond })
	for i := range 4 {
		_ = short.c.Release(ctx, fmt.Sprintf("t%d", i))
	}
	if m, _ := short.c.Metrics(ctx); m.Tombstones != 4 {
		t.Fatalf("%d tombstones, want 4", m.Tombstones)
	}
	eventually(t, "the tombstones to expire", func() bool {
		m, err := short.c.Metrics(ctx)
		return err == nil && m.Tombstones == 0
	})
}

// A retried serve (same request ID) returns the first result and does not
// run again, also when the retry arrives while the first still runs.
func TestServeIsIdempotentByRequestID(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.SleepWork = true })
	ctx := ctxT(t)
	req := client.ServeRequest{RequestID: "r1", App: "app-a", MemoryMB: 16, DiskMB: 8, WorkMS: 20}
	first, err := ta.c.Serve(ctx, req)
	if err != nil || first.Replayed {
		t.Fatalf("first serve = %+v, %v", first, err)
	}
	again, err := ta.c.Serve(ctx, req)
	if err != nil || !again.Replayed || !sameMS(again.TotalMS, first.TotalMS) || !sameMS(again.SetupMS, first.SetupMS) {
		t.Errorf("retry = %+v, %v; want the first result %+v, replayed", again, err, first)
	}
	m, _ := ta.c.Metrics(ctx)
	if m.ServedCold != 1 || m.ServedReplayed != 1 {
		t.Errorf("served cold %d, replayed %d; want 1 and 1", m.ServedCold, m.ServedReplayed)
	}

	// Concurrent duplicates while the first runs: it runs once.
	const n = 6
	var wg sync.WaitGroup
	res := make([]client.ServeResult, n)
	errs := make([]error, n)
	long := client.ServeRequest{RequestID: "r2", App: "app-a", MemoryMB: 8, WorkMS: 500}
	for i := range n {
		wg.Go(func() { res[i], errs[i] = ta.c.Serve(ctx, long) })
	}
	wg.Wait()
	replays := 0
	for i := range n {
		if errs[i] != nil || !sameMS(res[i].TotalMS, res[0].TotalMS) {
			t.Errorf("duplicate %d = %+v, %v; want the one result", i, res[i], errs[i])
		}
		if res[i].Replayed {
			replays++
		}
	}
	if m, _ := ta.c.Metrics(ctx); m.ServedCold != 2 || replays != n-1 {
		t.Errorf("served cold %d (want 2), %d of %d duplicates replayed (want %d)", m.ServedCold, replays, n, n-1)
	}

	// Warm: a retry does not count a second request on the lease.
	if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "app-a", MemoryMB: 8}); err != nil {
		t.Fatal(err)
	}
	warm := client.ServeRequest{RequestID: "r3", App: "app-a", PreparationID: "p1", MemoryMB: 8}
	for range 3 {
		if r, err := ta.c.Serve(ctx, warm); err != nil || !r.Warm {
			t.Fatalf("warm serve = %+v, %v", r, err)
		}
	}
	if l, _ := ta.c.Lease(ctx, "p1"); l.RequestsServed != 1 {
		t.Errorf("lease served %d requests after three tries of one, want 1", l.RequestsServed)
	}
	// The same request ID for another application is a conflict.
	other := req
	other.App = "app-b"
	if _, err := ta.c.Serve(ctx, other); !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "request r1 was already served for application app-a") {
		t.Errorf("request ID reused by another app: %v, want conflict", err)
	}
	// A refused serve is not remembered: its retry runs.
	tooBig := client.ServeRequest{RequestID: "r4", App: "app-a", MemoryMB: 4096}
	if _, err := ta.c.Serve(ctx, tooBig); !errors.Is(err, client.ErrOverCapacity) {
		t.Fatalf("oversized cold serve: %v", err)
	}
	tooBig.MemoryMB = 8
	if r, err := ta.c.Serve(ctx, tooBig); err != nil || r.Replayed {
		t.Errorf("retry of a refused serve = %+v, %v; want it served", r, err)
	}
}

func TestServeMemoryIsBounded(t *testing.T) {
	ta := startAgent(t, func(c *agent.Config) { c.MaxServeMemory = 2 })
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := ta.c.Serve(ctx, client.ServeRequest{RequestID: id, App: "app-a", MemoryMB: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := ta.c.Serve(ctx, client.ServeRequest{RequestID: "c", App: "app-a", MemoryMB: 1}); !r.Replayed {
		t.Error("the newest request was forgotten")
	}
	if r, _ := ta.c.Serve(ctx, client.ServeRequest{RequestID: "a", App: "app-a", MemoryMB: 1}); r.Replayed {
		t.Error("the oldest of three requests is still remembered with room for two")
	}
}

// The data folder must be the agent's own: another user's folder (or a
// link to one), or one others can write into, is refused.
func TestDataFolderOfSomeoneElseIsRefused(t *testing.T) {
	base := agent.Config{HostID: "h", MemoryMB: 1, DefaultTTL: time.Minute}
	try := func(dir string) error {
		cfg := base
		cfg.DataDir = dir
		a, err := agent.New(cfg)
		if err == nil {
			_ = a.Close(ctxT(t))
		}
		return err
	}
	// A folder owned by another user: root can make one; anyone else finds
	// one in the root-owned system temp folder.
	foreign := os.TempDir()
	if os.Geteuid() == 0 {
		foreign = filepath.Join(t.TempDir(), "foreign")
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := try(foreign); err == nil || !strings.Contains(err.Error(), "belongs to uid") {
		t.Errorf("another user's folder: %v, want refused naming its owner", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(foreign, link); err != nil {
		t.Fatal(err)
	}
	if err := try(link); err == nil || !strings.Contains(err.Error(), "leads to a folder of uid") {
		t.Errorf("a link to another user's folder: %v, want refused", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := try(open); err == nil || !strings.Contains(err.Error(), "writable by group or others (mode 0777)") {
		t.Errorf("a world-writable folder: %v, want refused", err)
	}
	// A folder the agent creates is its own, 0700.
	fresh := filepath.Join(t.TempDir(), "a", "b")
	if err := try(fresh); err != nil {
		t.Fatalf("a fresh folder: %v", err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created folder mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

func TestDefaultDataFolderIsNotInTheSharedTempFolder(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	if got, want := agent.DefaultDataDir("h1"), filepath.Join(state, "forewarm-agent", "h1"); got != want {
		t.Errorf("with $XDG_STATE_HOME: %s, want %s", got, want)
	}
	home := t.TempDir()
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", home)
	if got, want := agent.DefaultDataDir("h1"), filepath.Join(home, ".local", "state", "forewarm-agent", "h1"); got != want {
		t.Errorf("with $HOME: %s, want %s", got, want)
	}
	t.Setenv("HOME", "")
	if got := agent.DefaultDataDir("h1"); got != "/var/lib/forewarm-agent/h1" {
		t.Errorf("without a home: %s", got)
	}
}

// A flood of calls with a wrong token is answered 401 each time but logged
// once per interval, the next line counting the ones not logged.
func TestUnauthorizedCallsAreLoggedAtAMeasuredRate(t *testing.T) {
	var buf syncBuffer
	ta := startAgent(t, func(c *agent.Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	for range 50 {
		if status, eb := call(t, "GET", ta.url+api.PathInfo, "wrong-token", ""); status != http.StatusUnauthorized || eb.Code != api.CodeUnauthorized {
			t.Fatalf("wrong token: %d %+v", status, eb)
		}
	}
	if n := strings.Count(buf.String(), "unauthorized call"); n != 1 {
		t.Errorf("%d log lines for 50 unauthorized calls within the interval, want 1:\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reads of leases and metrics while leases are reserved, shadowed, served,
// extended and released: the race detector checks no field is read outside
// its lock (go test -race).
func TestConcurrentReadsWhileLeasesChange(t *testing.T) {
	ta := startAgent(t, nil)
	ctx := ctxT(t)
	var current atomic.Pointer[string]
	first := "c0"
	current.Store(&first)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = ta.Lease(*current.Load())
				_ = ta.Leases()
				_ = ta.Metrics()
			}
		})
	}
	for i := range 20 {
		id := fmt.Sprintf("c%d", i)
		current.Store(&id)
		if _, err := ta.c.Reserve(ctx, client.ReserveRequest{PreparationID: id, App: "app-a", MemoryMB: 16, DiskMB: 8, CPUMilli: 2000}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { _, _ = ta.c.Shadow(ctx, client.ShadowRequest{PreparationID: id}) })
		}
		wg.Go(func() {
			_, _ = ta.c.Serve(ctx, client.ServeRequest{RequestID: "r" + id, App: "app-a", PreparationID: id, MemoryMB: 16, FallbackCold: true})
		})
		wg.Go(func() { _, _ = ta.c.Extend(ctx, id, time.Minute, "") })
		wg.Wait()
		if err := ta.c.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	readers.Wait()
	eventually(t, "every lease freed", func() bool {
		m := ta.Metrics()
		return m.Leases == 0 && m.ReservedMemMB == 0
	})
}
