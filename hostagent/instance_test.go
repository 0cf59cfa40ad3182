package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/testenv"
)

func instapp(t *testing.T) string { return testenv.InstApp(t) }

// instanceSetup makes an open folder with specs/echo.json (version v) and
// data/ (created by the agent).
func instanceSetup(t *testing.T) (specDir, dataDir string) {
	t.Helper()
	root, err := os.MkdirTemp("", "forewarm-hostagent-inst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	specDir, dataDir = filepath.Join(root, "specs"), filepath.Join(root, "data")
	if err := os.Mkdir(specDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeEchoSpec(t, specDir, "1")
	return specDir, dataDir
}

func writeEchoSpec(t *testing.T, dir, version string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"app": "echo", "version": version, "command": []string{instapp(t)},
		"readiness": map[string]any{"path": "/healthz", "timeout": "10s", "interval": "10ms"},
		"shadow":    map[string]any{"method": "GET", "path": "/healthz", "expect_status": 200, "max_latency": "5s"},
		"memory_mb": 64, "cpu_milli": 500, "scratch_mb": 2, "concurrency": 2, "stop_grace": "1s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "echo.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func instanceCall(t *testing.T, c *client.Client, id, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := c.InstanceRequest(ctxT(t), id, method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

func cgroupPaths(in *api.Instance) []string {
	if in.CgroupVersion == "v2" {
		return []string{filepath.Join("/sys/fs/cgroup", in.Cgroup)}
	}
	return []string{filepath.Join("/sys/fs/cgroup/memory", in.Cgroup), filepath.Join("/sys/fs/cgroup/cpu", in.Cgroup)}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A crashed agent (SIGKILL: no cleanup) leaves its instance's cgroup and
// folder, and a child the instance started in a session of its own
// (Pdeathsig ends only the instance itself). The next start of the same
// host ID kills and removes all of it before serving.
func TestRestartAfterCrashReapsInstances(t *testing.T) {
	specDir, dataDir := instanceSetup(t)
	hostID := "crashy-inst-" + strconv.Itoa(os.Getpid())
	removeCgroupsOf(t, hostID)
	addr := freeAddr(t)
	c := client.New("http://"+addr, token)
	ctx := ctxT(t)
	args := []string{"--data-dir", dataDir, "--host-id", hostID, "--spec-dir", specDir}
	p := start(t, "http", addr, nil, args...)
	l, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "echo", SpecVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Instance == nil || l.Instance.Cgroup == "" {
		testenv.Missing(t, "cgroups (run as root with a writable /sys/fs/cgroup)", fmt.Errorf("lease %+v has no cgroup", l.Instance))
	}
	resp, body := instanceCall(t, c, "p1", http.MethodPost, "/spawn")
	child, err := strconv.Atoi(body)
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("spawn: %d %s", resp.StatusCode, body)
	}
	folder := filepath.Join(dataDir, "fw-inst-p1")

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil // let the cleanup's wait return
	waitFor(t, "the instance to die with its agent (Pdeathsig)", func() bool { return !running(l.Instance.PID) })
	if !running(child) || !exists(folder) || !exists(cgroupPaths(l.Instance)[0]) {
		t.Fatalf("the crash left nothing to reap (child %v, folder %v, cgroup %v); the test proves nothing",
			running(child), exists(folder), exists(cgroupPaths(l.Instance)[0]))
	}

	p2 := start(t, "http", addr, nil, args...)
	if running(child) {
		t.Errorf("the instance's child %d survived the restart", child)
	}
	for _, d := range cgroupPaths(l.Instance) {
		if exists(d) {
			t.Errorf("cgroup %s survived the restart", d)
		}
	}
	if exists(folder) {
		t.Errorf("instance folder %s survived the restart", folder)
	}
	if !strings.Contains(p2.out.String(), "removed a previous run's instance folder") {
		t.Errorf("the restart does not log what it removed:\n%s", p2.out)
	}
	// And it serves instances again, and stops them on SIGTERM.
	l2, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: "p2", App: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	stopAgent(t, p2, syscall.SIGTERM)
	for _, d := range cgroupPaths(l2.Instance) {
		if exists(d) {
			t.Errorf("cgroup %s survived SIGTERM", d)
		}
	}
}

// stopAgent signals the agent and waits for it to exit cleanly.
func stopAgent(t *testing.T, p *proc, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("agent exited with %v after %v\n%s", err, sig, p.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop within 20 s of %v", sig)
	}
}

// removeCgroupsOf is a safety net: whatever a failed test left of host's
// cgroups goes (its processes died with their agent).
func removeCgroupsOf(t *testing.T, hostID string) {
	t.Cleanup(func() {
		for _, root := range []string{"/sys/fs/cgroup/memory/forewarm/" + hostID, "/sys/fs/cgroup/cpu/forewarm/" + hostID, "/sys/fs/cgroup/forewarm-" + hostID} {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := syscall.Rmdir(dirs[i]); err == nil {
					t.Logf("removed leftover cgroup %s", dirs[i])
				}
			}
		}
	})
}

// SIGHUP re-reads the spec folder; a folder that does not load keeps the
// specs in force. SIGTERM stops every instance and removes what it had.
func TestSIGHUPReloadsSpecsAndSIGTERMStopsInstances(t *testing.T) {
	specDir, dataDir := instanceSetup(t)
	hostID := "hup-" + strconv.Itoa(os.Getpid())
	removeCgroupsOf(t, hostID)
	addr := freeAddr(t)
	c := client.New("http://"+addr, token)
	ctx := ctxT(t)
	p := start(t, "http", addr, nil, "--data-dir", dataDir, "--host-id", hostID, "--spec-dir", specDir)
	l, err := c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "echo"})
	if err != nil || l.Instance == nil {
		t.Fatalf("reserve: %+v, %v", l, err)
	}

	writeEchoSpec(t, specDir, "2")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "version 2 after SIGHUP", func() bool {
		apps, err := c.Apps(ctx)
		return err == nil && len(apps) == 1 && apps[0].Version == "2"
	})
	if err := os.WriteFile(filepath.Join(specDir, "bad.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload in the log", func() bool { return strings.Contains(p.out.String(), "reloading application specs failed") })
	if apps, err := c.Apps(ctx); err != nil || len(apps) != 1 || apps[0].Version != "2" {
		t.Errorf("apps after a bad reload = %+v, %v; want version 2 still", apps, err)
	}
	// The running instance keeps its version; new reserves get the new one.
	if v, err := c.Lease(ctx, "p1"); err != nil || v.Instance.SpecVersion != "1" {
		t.Errorf("running instance: %+v, %v", v.Instance, err)
	}

	stopAgent(t, p, syscall.SIGTERM)
	if running(l.Instance.PID) {
		t.Error("the instance survived SIGTERM")
	}
	if exists(filepath.Join(dataDir, "fw-inst-p1")) {
		t.Error("the instance folder survived SIGTERM")
	}
	if l.Instance.Cgroup != "" {
		for _, d := range cgroupPaths(l.Instance) {
			if exists(filepath.Dir(d)) {
				t.Errorf("the host's cgroup parent %s survived SIGTERM", filepath.Dir(d))
			}
		}
	}
}
