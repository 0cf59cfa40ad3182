package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
	"github.com/forewarm/forewarm/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveInstApp()
	os.Exit(code)
}

func instapp(t testing.TB) string { return testenv.InstApp(t) }

// openTempDir is a fresh folder that every user may enter (t.TempDir's
// parent is 0700, which an instance user could not pass).
func openTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "forewarm-inst-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// appSpec is a spec of the test application; edit adjusts it.
func appSpec(t testing.TB, app string, edit func(m map[string]any)) map[string]any {
	m := map[string]any{
		"app": app, "version": "1",
		"command":   []string{instapp(t), "--start-delay", "20ms"},
		"env":       map[string]string{"GREETING": "hello"},
		"readiness": map[string]any{"path": "/healthz", "timeout": "10s", "interval": "10ms"},
		"shadow": map[string]any{"method": "POST", "path": "/shadow", "body": `{"x":1}`, "content_type": "application/json",
			"expect_status": 200, "max_latency": "5s"},
		"memory_mb": 64, "cpu_milli": 500, "scratch_mb": 4, "concurrency": 2, "stop_grace": "2s",
	}
	if edit != nil {
		edit(m)
	}
	return m
}

// writeSpecs writes one <app>.json per spec into a fresh open folder.
func writeSpecs(t testing.TB, specs ...map[string]any) string {
	t.Helper()
	dir := filepath.Join(openTempDir(t), "specs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s["app"].(string)+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type instAgent struct {
	*testAgent
	hostID, dataDir string
}

// startInstanceAgent runs an agent with the specs given, a host ID of its
// own (its cgroups' parent) and a data folder instances can enter.
func startInstanceAgent(t testing.TB, edit func(*agent.Config), specs ...map[string]any) *instAgent {
	t.Helper()
	specDir := writeSpecs(t, specs...)
	hostID := "inst-" + randHex(4)
	dataDir := filepath.Join(openTempDir(t), "data")
	// Runs after the agent's Close (cleanups run last first).
	t.Cleanup(func() { assertNoCgroupParent(t, hostID) })
	ta := startAgent(t, func(c *agent.Config) {
		c.HostID, c.DataDir, c.SpecDir = hostID, dataDir, specDir
		if edit != nil {
			edit(c)
		}
	})
	return &instAgent{testAgent: ta, hostID: hostID, dataDir: dataDir}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requireCgroup fails (skips only with FOREWARM_ALLOW_SKIP=1 outside CI)
// when the instance got no cgroup: limits are part of what is tested.
func requireCgroup(t testing.TB, l api.Lease) {
	t.Helper()
	if l.Instance == nil {
		t.Fatalf("lease %s has no instance", l.PreparationID)
	}
	if l.Instance.Cgroup == "" {
		testenv.Missing(t, "cgroups (run as root with a writable /sys/fs/cgroup)", fmt.Errorf("instance %s started without one (euid %d)", l.PreparationID, os.Geteuid()))
	}
}

// cgroupDirs are the instance's cgroup folders.
func cgroupDirs(l api.Lease) []string {
	if l.Instance == nil || l.Instance.Cgroup == "" {
		return nil
	}
	if l.Instance.CgroupVersion == "v2" {
		return []string{filepath.Join("/sys/fs/cgroup", l.Instance.Cgroup)}
	}
	return []string{filepath.Join("/sys/fs/cgroup/memory", l.Instance.Cgroup), filepath.Join("/sys/fs/cgroup/cpu", l.Instance.Cgroup)}
}

func readTrim(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// instGet sends a request to the instance of lease id through the agent.
func (ia *instAgent) do(t testing.TB, method, id, path string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := ia.c.InstanceRequest(ctxT(t), id, method, path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ia.c.HTTP().Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s on %s: read: %v", method, path, id, err)
	}
	return resp, b
}

// refusal reads an agent refusal of an instance request, failing when the
// answer is the instance's own.
func refusal(t testing.TB, resp *http.Response, body []byte) *client.Error {
	t.Helper()
	e := client.ErrorOf(resp, body, "instance", "agent")
	if e == nil {
		t.Fatalf("answer %d %q is not an agent refusal (headers %v)", resp.StatusCode, body, resp.Header)
	}
	return e
}

// processGone says whether pid has ended (a zombie counts as ended).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// instanceProcesses lists the processes carrying FOREWARM_INSTANCE=id.
func instanceProcesses(id string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || processGone(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == "FOREWARM_INSTANCE="+id {
				out = append(out, pid)
			}
		}
	}
	return out
}

// assertNothingLeft checks that the instance's processes, cgroup and
// folder are gone.
func assertNothingLeft(t testing.TB, dataDir string, l api.Lease) {
	t.Helper()
	eventually(t, "the instance's processes to end", func() bool { return len(instanceProcesses(l.PreparationID)) == 0 })
	for _, d := range cgroupDirs(l) {
		eventually(t, "cgroup "+d+" removed", func() bool { _, err := os.Stat(d); return os.IsNotExist(err) })
	}
	folder := filepath.Join(dataDir, "fw-inst-"+l.PreparationID)
	eventually(t, "folder "+folder+" removed", func() bool { _, err := os.Stat(folder); return os.IsNotExist(err) })
}

// reserveApp reserves a process lease of app with the spec's sizes.
func (ia *instAgent) reserveApp(t testing.TB, id, app string) api.Lease {
	t.Helper()
	l, err := ia.c.Reserve(ctxT(t), client.ReserveRequest{PreparationID: id, App: app, SpecVersion: "1"})
	if err != nil {
		t.Fatalf("reserve %s: %v", app, err)
	}
	if l.Instance == nil {
		t.Fatalf("lease %s of %s has no instance: %+v", id, app, l)
	}
	return l
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func itoa(n int) string { return strconv.Itoa(n) }

func clientShadow(id string) client.ShadowRequest { return client.ShadowRequest{PreparationID: id} }

// cgroupLeftovers lists the cgroups under a host's parent.
func cgroupLeftovers(hostID string) []string {
	var out []string
	for _, p := range []string{"/sys/fs/cgroup/memory/forewarm/" + hostID, "/sys/fs/cgroup/cpu/forewarm/" + hostID, "/sys/fs/cgroup/forewarm-" + hostID} {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out
}

// promValue scrapes one series from the agent's /metrics.
func promValue(t testing.TB, url, series string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// assertNoCgroupParent checks that a closed agent left no cgroup of its
// host, not even the empty parent.
func assertNoCgroupParent(t testing.TB, hostID string) {
	t.Helper()
	for _, p := range []string{"/sys/fs/cgroup/memory/forewarm/" + hostID, "/sys/fs/cgroup/cpu/forewarm/" + hostID, "/sys/fs/cgroup/forewarm-" + hostID} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("cgroup %s is left (%v)", p, err)
		}
	}
}
