package samples

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forewarm/forewarm/appspec"
	"github.com/forewarm/forewarm/internal/testenv"
)

// TestSamples builds the samples with build.sh into a temporary copy of
// this folder's layout (specs/, py-heavy/, bin/), loads the specs with
// appspec.Load, and for each application does what a host agent does: it
// starts the command with the spec's environment, port and working folder,
// waits for readiness, sends the shadow request and checks its status,
// latency and body, checks the peak memory against memory_mb, then stops
// the instance with SIGTERM and checks it exits cleanly within stop_grace.
func TestSamples(t *testing.T) {
	if _, err := appspec.Load("specs"); err != nil {
		t.Fatalf("the specs folder does not load: %v", err)
	}

	root := t.TempDir()
	for _, f := range []string{"py-heavy/app.py"} {
		copyFile(t, f, filepath.Join(root, f))
	}
	jsons, err := filepath.Glob("specs/*.json")
	if err != nil || len(jsons) == 0 {
		t.Fatalf("no specs in specs/: %v", err)
	}
	for _, f := range jsons {
		copyFile(t, f, filepath.Join(root, f))
	}
	start := time.Now()
	build := exec.Command("bash", "build.sh", filepath.Join(root, "bin"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Logf("build.sh in %s", time.Since(start).Round(time.Millisecond))

	set, err := appspec.Load(filepath.Join(root, "specs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"sample-go", "sample-py", "sample-trivial"} {
		if _, err := set.Lookup(app, "1"); err != nil {
			t.Error(err)
		}
	}
	apps := make([]string, 0, len(set))
	for app := range set {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		sp := set[app]
		t.Run(app, func(t *testing.T) {
			t.Parallel()
			runInstance(t, sp)
		})
	}
}

// checks are what a plausible shadow answer holds, by application.
var checks = map[string]func(body []byte) error{
	"sample-go": func(body []byte) error {
		var p struct {
			Top []struct {
				Row   int     `json:"row"`
				Score float64 `json:"score"`
			} `json:"top"`
			Candidates int `json:"candidates"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return err
		}
		if len(p.Top) == 0 || p.Candidates < len(p.Top) || p.Top[0].Score <= -1 || p.Top[0].Score > 1.0001 {
			return fmt.Errorf("no plausible prediction: %+v", p)
		}
		return nil
	},
	"sample-py": func(body []byte) error {
		var p struct {
			Category *int    `json:"category"`
			Region   string  `json:"region"`
			Count    *int    `json:"count"`
			AvgPrice float64 `json:"avg_price"`
			Top      []any   `json:"top"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return err
		}
		if p.Category == nil || p.Region == "" || p.Count == nil || *p.Count <= 0 || len(p.Top) == 0 {
			return fmt.Errorf("no plausible query result: %s", body)
		}
		return nil
	},
	"sample-trivial": func(body []byte) error {
		if string(body) != "ok\n" {
			return fmt.Errorf("body %q, want %q", body, "ok\n")
		}
		return nil
	},
}

// instance is one started sample.
type instance struct {
	sp     *appspec.Spec
	cmd    *exec.Cmd
	exited chan error
	base   string
	client *http.Client
	// ready is how long the instance took from its start to its first 2xx
	// answer to the readiness path.
	ready time.Duration
}

// start starts sp as an agent does and waits for its readiness.
func start(t *testing.T, sp *appspec.Spec) *instance {
	t.Helper()
	prog := sp.Program()
	if !strings.Contains(sp.Command[0], "/") {
		p, err := lookPath(prog)
		if err != nil {
			testenv.Missing(t, sp.App+"'s runtime "+prog, err)
		}
		prog = p
	}
	checkReadable(t, sp, prog)

	port := freePort(t)
	env := instanceEnv(sp, port, t.TempDir())
	var logs lockedBuffer
	cmd := exec.Command(prog, sp.Command[1:]...)
	cmd.Dir = sp.WorkDir()
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{
		sp: sp, cmd: cmd, exited: make(chan error, 1),
		base:   "http://127.0.0.1:" + strconv.Itoa(port),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: sp.Concurrency}},
	}
	go func() { in.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s's output:\n%s", sp.App, logs.String())
		}
	})

	// Readiness: GET the path every interval until it answers 2xx.
	deadline := started.Add(sp.Readiness.Timeout.D())
	for {
		select {
		case err := <-in.exited:
			t.Fatalf("exited before it was ready: %v", err)
		default:
		}
		resp, err := in.client.Get(in.base + sp.Readiness.Path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %s (last: %v)", sp.Readiness.Timeout.D(), err)
		}
		time.Sleep(sp.Readiness.Interval.D())
	}
	in.ready = time.Since(started)
	return in
}

// stop sends SIGTERM and checks the instance exits successfully within
// stop_grace.
func (in *instance) stop(t *testing.T) time.Duration {
	t.Helper()
	stopped := time.Now()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-in.exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(in.sp.StopGrace.D()):
		t.Errorf("still running %s after SIGTERM", in.sp.StopGrace.D())
	}
	return time.Since(stopped)
}

// shadowOK sends the shadow request and fails unless it has the expected
// status and a plausible body; it returns the latency.
func (in *instance) shadowOK(t *testing.T) time.Duration {
	t.Helper()
	sp := in.sp
	status, body, took := shadow(t, in.client, in.base, sp)
	if status != sp.Shadow.ExpectStatus {
		t.Fatalf("shadow %s %s: status %d, want %d: %s", sp.Shadow.Method, sp.Shadow.Path, status, sp.Shadow.ExpectStatus, body)
	}
	check := checks[sp.App]
	if check == nil {
		check = func(b []byte) error {
			if len(b) == 0 {
				return errors.New("empty body")
			}
			return nil
		}
	}
	if err := check(body); err != nil {
		t.Fatalf("shadow %s %s: %v", sp.Shadow.Method, sp.Shadow.Path, err)
	}
	return took
}

func runInstance(t *testing.T, sp *appspec.Spec) {
	in := start(t, sp)

	// It listens on 127.0.0.1 only.
	if ip := otherAddr(); ip != "" {
		port := strings.TrimPrefix(in.base, "http://127.0.0.1:")
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("answers on %s too: it must listen on 127.0.0.1 only", ip)
		}
	}

	// The shadow request. A shared, busy test machine can stall one
	// request past its bound, so it gets three tries at the latency (each
	// answer must have the right status and a plausible body).
	var latencies []time.Duration
	for try := 0; ; try++ {
		took := in.shadowOK(t)
		latencies = append(latencies, took)
		if took <= sp.Shadow.MaxLatency.D() {
			break
		}
		if try == 2 {
			t.Fatalf("shadow %s %s took %v, over max_latency %s", sp.Shadow.Method, sp.Shadow.Path, latencies, sp.Shadow.MaxLatency.D())
		}
	}

	// Its peak memory is within memory_mb.
	peak := peakRSS(in.cmd.Process.Pid)
	if peak > int64(sp.MemoryMB*(1<<20)) {
		t.Errorf("peak RSS %d MiB is over memory_mb %g", peak>>20, sp.MemoryMB)
	}
	t.Logf("ready in %s, shadow in %v, peak RSS %.1f MiB (memory_mb %g)",
		in.ready.Round(time.Millisecond), latencies, float64(peak)/(1<<20), sp.MemoryMB)

	// SIGTERM: it exits, successfully, within the grace.
	t.Logf("exited %s after SIGTERM", in.stop(t).Round(time.Millisecond))
}

func shadow(t *testing.T, client *http.Client, base string, sp *appspec.Spec) (int, []byte, time.Duration) {
	t.Helper()
	req, err := shadowRequest(base, sp)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("shadow %s %s: %v", sp.Shadow.Method, sp.Shadow.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("shadow %s %s: %v", sp.Shadow.Method, sp.Shadow.Path, err)
	}
	return resp.StatusCode, b, took
}

// shadowRequest is sp's shadow request to the instance at base.
func shadowRequest(base string, sp *appspec.Spec) (*http.Request, error) {
	var body io.Reader
	if sp.Shadow.Body != "" {
		body = strings.NewReader(sp.Shadow.Body)
	}
	req, err := http.NewRequest(sp.Shadow.Method, base+sp.Shadow.Path, body)
	if err != nil {
		return nil, err
	}
	if sp.Shadow.ContentType != "" {
		req.Header.Set("Content-Type", sp.Shadow.ContentType)
	}
	return req, nil
}

// agentPath is the PATH a host agent gives an instance, and where a
// program named without a slash is found.
const agentPath = "/usr/local/bin:/usr/bin:/bin"

// lookPath finds prog in agentPath.
func lookPath(prog string) (string, error) {
	for _, dir := range filepath.SplitList(agentPath) {
		p := filepath.Join(dir, prog)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q is not in %s", prog, agentPath)
}

// instanceEnv is the environment an agent gives an instance: a minimal
// PATH and HOME, the spec's variables, the port and the agent's own.
func instanceEnv(sp *appspec.Spec, port int, scratch string) []string {
	env := []string{"PATH=" + agentPath, "HOME=" + scratch}
	for k, v := range sp.Env {
		env = append(env, k+"="+v)
	}
	return append(env,
		fmt.Sprintf("%s=%d", sp.PortEnv, port),
		"FOREWARM_SCRATCH="+scratch,
		"FOREWARM_APP="+sp.App,
		"FOREWARM_INSTANCE=test-"+sp.App)
}

// checkReadable fails unless the program and every argument that names a
// file (from the working folder) can be read by everyone, the program run
// by everyone: an agent running as root starts instances as nobody.
func checkReadable(t *testing.T, sp *appspec.Spec, prog string) {
	t.Helper()
	if st, err := os.Stat(prog); err != nil {
		t.Fatalf("program: %v", err)
	} else if st.Mode().Perm()&0o005 != 0o005 {
		t.Errorf("program %s is %v: everyone must be able to read and run it", prog, st.Mode().Perm())
	}
	for _, a := range sp.Command[1:] {
		p := a
		if !filepath.IsAbs(p) {
			p = filepath.Join(sp.WorkDir(), a)
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode().Perm()&0o004 == 0 {
			t.Errorf("%s is %v: everyone must be able to read it", p, st.Mode().Perm())
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// otherAddr is one IPv4 address of this machine other than loopback, or "".
func otherAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// peakRSS is pid's peak resident memory in bytes (VmHWM), or 0 where
// /proc does not tell.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects an instance's output from two writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
