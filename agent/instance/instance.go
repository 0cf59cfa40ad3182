// Package instance runs an application's process as a warm instance on a
// host agent: in its own process group and cgroup (memory limit, CPU
// quota), as an unprivileged user when the agent is root, on a loopback
// port the agent picked, with its output in a capped log file. Start
// returns once the process answers its readiness check and its shadow
// request; Stop ends it (SIGTERM to the group, SIGKILL after the grace)
// and removes its cgroup. Reap removes what a crashed agent left.
//
// The caller (package agent) owns the instance's folder and scratch
// storage; this package owns the process and the cgroup.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/appspec"
)

// FolderPrefix starts the name of every instance folder in the agent's
// data folder: <data>/fw-inst-<lease id>/ holds the pid file, the log and
// the scratch folder.
const FolderPrefix = "fw-inst-"

const (
	pidFile = "pid"
	logFile = "output.log"
)

// Folder is the folder of instance id in dataDir.
func Folder(dataDir, id string) string { return filepath.Join(dataDir, FolderPrefix+id) }

// ScratchDir is the instance's own writable folder ($FOREWARM_SCRATCH).
func ScratchDir(folder string) string { return filepath.Join(folder, "scratch") }

// User is who an instance runs as.
type User struct {
	Name     string
	UID, GID uint32
}

// LookupUser finds a user by name or numeric ID.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil, fmt.Errorf("instance user %q: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("instance user %q: %w", name, err)
	}
	return &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}, nil
}

// Config is one instance to start.
type Config struct {
	// ID is the lease's; HostID the agent's.
	ID, HostID string
	Spec       *appspec.Spec
	// MemoryMB is the cgroup's memory limit, CPUMilli its CPU quota.
	MemoryMB float64
	CPUMilli int64
	// Folder exists and holds ScratchDir(Folder), which User may write.
	Folder string
	// User runs the process; nil: the agent's own user.
	User *User
	// Cgroups makes the instance's cgroup; nil: none (limits not enforced).
	Cgroups *Cgroups
}

// StartError says which phase of a start failed and why.
type StartError struct {
	Phase string // cgroup, spawn, readiness, shadow
	Msg   string
}

func (e *StartError) Error() string { return e.Phase + ": " + e.Msg }

// Instance is a started process.
type Instance struct {
	cfg       Config
	spec      *appspec.Spec
	pid       int
	port      int
	addr      string
	cg        *cgroup
	out       *output
	transport *http.Transport
	client    *http.Client
	oomBase   int64

	spawnMS, readyMS, shadowMS float64
	shadowCode                 int

	done     chan struct{} // closed once the process has exited and been reaped
	exit     string        // how it ended; set before done is closed
	reason   string        // exit, signal, oom, stopped
	stopping atomic.Bool
	stopOnce sync.Once
	stopErr  error

	memCur, memPeak atomic.Int64
}

// Start runs the process and returns when it is ready and has answered its
// shadow request. On failure everything started is stopped and removed
// (the folder is the caller's) and the error is a *StartError; ctx ending
// stops the start too.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	s := cfg.Spec
	in := &Instance{cfg: cfg, spec: s, done: make(chan struct{})}
	in.transport = newTransport(s.Concurrency)
	in.client = &http.Client{Transport: in.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	port, err := freePort()
	if err != nil {
		return nil, &StartError{"spawn", fmt.Sprintf("no free loopback port: %v", err)}
	}
	in.port, in.addr = port, "127.0.0.1:"+strconv.Itoa(port)

	if cfg.Cgroups != nil {
		cg, err := cfg.Cgroups.create(cfg.ID, int64(cfg.MemoryMB*(1<<20)), cfg.CPUMilli)
		if err != nil {
			return nil, &StartError{"cgroup", err.Error()}
		}
		in.cg = cg
		in.oomBase = cg.oomKills()
	}
	start := time.Now()
	if err := in.spawn(); err != nil {
		in.abort()
		return nil, err
	}
	in.spawnMS = msOf(time.Since(start))

	readyStart := time.Now()
	if err := in.waitReady(ctx); err != nil {
		in.abort()
		return nil, err
	}
	in.readyMS = msOf(time.Since(readyStart))

	code, took, err := in.Shadow(ctx)
	in.shadowCode, in.shadowMS = code, msOf(took)
	if err != nil {
		in.abort()
		return nil, &StartError{"shadow", in.withOutput(err.Error())}
	}
	in.Memory()
	return in, nil
}

func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback only: never through a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: max(16, min(concurrency, 1024)),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // the answer goes on as the instance sent it
		ForceAttemptHTTP2:   false,
	}
}

// freePort asks the kernel for a loopback port nobody uses now. Another
// process could take it before the instance binds it; the readiness check
// then fails and the start says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// env is the instance's environment: a minimal PATH and HOME, the spec's
// variables, then the agent's own (which the spec may not set).
func (in *Instance) env() []string {
	s, scratch := in.spec, ScratchDir(in.cfg.Folder)
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + scratch}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+s.Env[k])
	}
	return append(env,
		s.PortEnv+"="+strconv.Itoa(in.port),
		"FOREWARM_SCRATCH="+scratch,
		"FOREWARM_APP="+s.App,
		"FOREWARM_INSTANCE="+in.cfg.ID,
	)
}

// lookPath finds a program named without a slash in the instance's own
// PATH (not the agent's: a root agent's PATH may lead where the instance
// user cannot go).
func lookPath(prog string, env []string) (string, error) {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v // the last one is the one the process gets
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue // a relative PATH entry would depend on the working folder
		}
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q is not in the instance's PATH %s", prog, path)
}

// marks are the environment entries that name this instance for good: a
// restarted agent kills a process only when it carries them.
func marks(folder, id string) []string {
	return []string{"FOREWARM_INSTANCE=" + id, "FOREWARM_SCRATCH=" + ScratchDir(folder)}
}

func (in *Instance) spawn() error {
	s := in.spec
	prog := s.Program()
	env := in.env()
	if !strings.Contains(prog, "/") {
		p, err := lookPath(prog, env)
		if err != nil {
			return &StartError{"spawn", err.Error()}
		}
		prog = p
	}
	logf, err := os.OpenFile(filepath.Join(in.cfg.Folder, logFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return &StartError{"spawn", fmt.Sprintf("log file: %v", err)}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return &StartError{"spawn", fmt.Sprintf("output pipe: %v", err)}
	}
	attr := &syscall.SysProcAttr{
		// Its own process group, so a stop reaches its children too, and
		// killed with the agent (Pdeathsig) so a crash leaves less behind.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if u := in.cfg.User; u != nil && os.Geteuid() == 0 {
		attr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
	}
	var cgFD *os.File
	if in.cg != nil && in.cg.version == "v2" {
		// Born in its cgroup (clone3 CLONE_INTO_CGROUP): nothing it does
		// escapes the limits.
		if cgFD, err = os.Open(in.cg.dirs[0]); err == nil {
			attr.UseCgroupFD, attr.CgroupFD = true, int(cgFD.Fd())
		}
	}
	// cgroup v1 cannot start a process inside a cgroup. Traced, the
	// process stops right after exec, before its first instruction, and is
	// moved then: all it ever allocates is charged to its cgroup. Tracing
	// needs the forking thread for the whole time.
	traced := in.cg != nil && in.cg.version == "v1"
	if traced {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	build := func(trace bool) *exec.Cmd {
		a := *attr
		a.Ptrace = trace
		return &exec.Cmd{
			Path: prog, Args: slices.Clone(s.Command), Dir: s.WorkDir(), Env: env,
			Stdout: pw, Stderr: pw, SysProcAttr: &a,
		}
	}
	cmd := build(traced)
	err = cmd.Start()
	if err != nil && traced && errors.Is(err, syscall.EPERM) {
		traced = false // no ptrace here: move it right after start instead
		cmd = build(false)
		err = cmd.Start()
	}
	pw.Close()
	if cgFD != nil {
		cgFD.Close()
	}
	if err != nil {
		pr.Close()
		logf.Close()
		return &StartError{"spawn", in.explainExec(prog, err)}
	}
	in.pid = cmd.Process.Pid
	in.out = newOutput(logf)
	go in.out.copyFrom(pr)
	var addErr error
	if traced {
		var ws unix.WaitStatus
		if _, werr := unix.Wait4(in.pid, &ws, unix.WALL, nil); werr != nil || !ws.Stopped() {
			addErr = fmt.Errorf("the process did not stop after exec (%v, status %v)", werr, ws)
		} else {
			addErr = in.cg.add(in.pid)
			if err := unix.PtraceDetach(in.pid); err != nil {
				addErr = errors.Join(addErr, fmt.Errorf("detach: %w", err))
			}
		}
	} else if in.cg != nil && in.cg.version == "v1" {
		addErr = in.cg.add(in.pid)
	}
	go in.wait(cmd)
	if addErr != nil {
		return &StartError{"cgroup", fmt.Sprintf("put pid %d in %s: %v", in.pid, in.cg.rel, addErr)}
	}
	if st, err := readStat(in.pid); err == nil {
		line := fmt.Sprintf("%d %d\n", in.pid, st.startTime)
		_ = writeFileExcl(filepath.Join(in.cfg.Folder, pidFile), []byte(line))
	}
	return nil
}

func (in *Instance) explainExec(prog string, err error) string {
	u := in.cfg.User
	if errors.Is(err, os.ErrPermission) && u != nil && os.Geteuid() == 0 {
		return fmt.Sprintf("user %s (uid %d) may not run %s in %s: %v (the program, its folder, the working folder and every folder above them must be readable and executable by that user)",
			u.Name, u.UID, prog, in.spec.WorkDir(), err)
	}
	return fmt.Sprintf("start %s: %v", prog, err)
}

func writeFileExcl(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// wait reaps the process and records how it ended. An exit nobody asked
// for kills what is left of the instance (its group and cgroup) at once.
func (in *Instance) wait(cmd *exec.Cmd) {
	err := cmd.Wait()
	in.Memory() // the last figures, while the cgroup still counts them
	note, reason := in.exitNote(cmd.ProcessState, err)
	if !in.stopping.Load() {
		in.killAll()
	} else {
		note, reason = "stopped", "stopped"
	}
	in.exit, in.reason = note, reason
	close(in.done)
}

func (in *Instance) exitNote(ps *os.ProcessState, err error) (string, string) {
	if ps == nil {
		return fmt.Sprintf("wait: %v", err), "exit"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.String(), "exit"
	}
	if ws.Signaled() {
		if ws.Signal() == syscall.SIGKILL && in.cg != nil && in.cg.oomKills() > in.oomBase {
			return fmt.Sprintf("killed: memory limit %g MB", in.cfg.MemoryMB), "oom"
		}
		return "killed by signal " + unix.SignalName(ws.Signal()), "signal"
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus()), "exit"
}

// killAll SIGKILLs the process group and everything in the cgroup.
func (in *Instance) killAll() {
	if in.pid > 0 {
		_ = unix.Kill(-in.pid, unix.SIGKILL)
	}
	if in.cg != nil {
		for _, pid := range in.cg.pids() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// abort ends a start that failed.
func (in *Instance) abort() {
	in.stopping.Store(true)
	if in.pid > 0 {
		in.killAll()
		select {
		case <-in.done:
		case <-time.After(10 * time.Second):
		}
	}
	in.cleanup()
}

// cleanup removes the cgroup and lets go of the connections.
func (in *Instance) cleanup() error {
	var err error
	if in.cg != nil {
		err = in.cg.destroy()
	}
	if in.pid > 0 {
		_ = unix.Kill(-in.pid, unix.SIGKILL) // a member that left neither group nor cgroup cannot exist; this is for no-cgroup hosts
	}
	in.transport.CloseIdleConnections()
	if in.out != nil {
		select {
		case <-in.out.done:
		case <-time.After(2 * time.Second): // a process outside the group still holds the pipe
		}
	}
	return err
}

func (in *Instance) waitReady(ctx context.Context) error {
	r := in.spec.Readiness
	deadline := time.Now().Add(r.Timeout.D())
	url := "http://" + in.addr + r.Path
	last := "no answer"
	for {
		pctx, cancel := context.WithTimeout(ctx, min(2*time.Second, time.Until(deadline)+time.Millisecond))
		req, _ := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
		resp, err := in.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				cancel()
				return nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = shortErr(err)
		}
		cancel()
		select {
		case <-in.done:
			return &StartError{"readiness", in.withOutput(fmt.Sprintf("the process ended (%s) before %s answered", in.exit, r.Path))}
		case <-ctx.Done():
			return &StartError{"readiness", fmt.Sprintf("stopped while waiting for %s: %v", r.Path, context.Cause(ctx))}
		case <-time.After(r.Interval.D()):
		}
		if time.Now().After(deadline) {
			return &StartError{"readiness", in.withOutput(fmt.Sprintf("%s not ready within %s (last: %s)", r.Path, r.Timeout.D(), last))}
		}
	}
}

// shortErr drops the URL from a client error.
func shortErr(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (in *Instance) withOutput(msg string) string {
	if in.out == nil {
		return msg
	}
	select {
	case <-in.done:
		// It has ended: its last words may still be in the pipe.
		select {
		case <-in.out.done:
		case <-time.After(time.Second):
		}
	default:
	}
	if t := in.out.text(); t != "" {
		return msg + "; last output: " + t
	}
	return msg + "; no output"
}

// Shadow sends the spec's shadow request and checks its status and
// latency.
func (in *Instance) Shadow(ctx context.Context) (int, time.Duration, error) {
	sh := in.spec.Shadow
	sctx, cancel := context.WithTimeout(ctx, sh.MaxLatency.D())
	defer cancel()
	var body io.Reader
	if sh.Body != "" {
		body = strings.NewReader(sh.Body)
	}
	req, err := http.NewRequestWithContext(sctx, sh.Method, "http://"+in.addr+sh.Path, body)
	if err != nil {
		return 0, 0, err
	}
	if sh.ContentType != "" {
		req.Header.Set("Content-Type", sh.ContentType)
	}
	start := time.Now()
	resp, err := in.client.Do(req)
	if err != nil {
		took := time.Since(start)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return 0, took, fmt.Errorf("%s %s took longer than %s (max_latency)", sh.Method, sh.Path, sh.MaxLatency.D())
		}
		return 0, took, fmt.Errorf("%s %s: %s", sh.Method, sh.Path, shortErr(err))
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	took := time.Since(start)
	switch {
	case rerr != nil && errors.Is(rerr, context.DeadlineExceeded):
		return resp.StatusCode, took, fmt.Errorf("%s %s took longer than %s (max_latency)", sh.Method, sh.Path, sh.MaxLatency.D())
	case resp.StatusCode != sh.ExpectStatus:
		return resp.StatusCode, took, fmt.Errorf("%s %s answered %d, want %d; body: %.200q", sh.Method, sh.Path, resp.StatusCode, sh.ExpectStatus, b)
	case took > sh.MaxLatency.D():
		return resp.StatusCode, took, fmt.Errorf("%s %s took %s, more than %s (max_latency)", sh.Method, sh.Path, took.Round(time.Millisecond), sh.MaxLatency.D())
	}
	return resp.StatusCode, took, nil
}

// Stop ends the instance: SIGTERM to its process group, SIGKILL after the
// spec's grace, then whatever is left in its cgroup, and the cgroup. It
// returns when all of it is gone; calling it again returns the first
// result.
func (in *Instance) Stop() error {
	in.stopOnce.Do(func() { in.stopErr = in.stop() })
	return in.stopErr
}

func (in *Instance) stop() error {
	in.stopping.Store(true)
	var errs []error
	select {
	case <-in.done:
	default:
		_ = unix.Kill(-in.pid, unix.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(in.spec.StopGrace.D()):
			_ = unix.Kill(-in.pid, unix.SIGKILL)
			select {
			case <-in.done:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("instance %s (pid %d) did not end 10 s after SIGKILL", in.cfg.ID, in.pid))
			}
		}
	}
	if err := in.cleanup(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Done is closed once the process has ended.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Exit says how the process ended and why (exit, signal, oom, stopped);
// empty while it runs.
func (in *Instance) Exit() (note, reason string) {
	select {
	case <-in.done:
		return in.exit, in.reason
	default:
		return "", ""
	}
}

// Addr is the instance's host:port on loopback.
func (in *Instance) Addr() string { return in.addr }

// Transport reaches the instance, keeping connections alive between
// requests.
func (in *Instance) Transport() http.RoundTripper { return in.transport }

// PID is the process (and its group's) ID.
func (in *Instance) PID() int { return in.pid }

// Cgroup is the cgroup's path relative to its hierarchy, "" without one.
func (in *Instance) Cgroup() string {
	if in.cg == nil {
		return ""
	}
	return in.cg.rel
}

// Output is the latest output, for messages.
func (in *Instance) Output() string {
	if in.out == nil {
		return ""
	}
	return in.out.text()
}

// Memory is the instance's memory now and the most seen, in bytes: its
// cgroup's usage, else the resident set of its process group.
func (in *Instance) Memory() (cur, peak int64) {
	select {
	case <-in.done:
		return in.memCur.Load(), in.memPeak.Load()
	default:
	}
	if in.cg != nil {
		c, p, err := in.cg.memory()
		if err == nil {
			cur, peak = c, p
		}
	} else if in.pid > 0 {
		cur = groupRSS(in.pid)
	}
	in.memCur.Store(cur)
	for {
		old := in.memPeak.Load()
		if max(cur, peak) <= old || in.memPeak.CompareAndSwap(old, max(cur, peak)) {
			break
		}
	}
	return cur, in.memPeak.Load()
}

// View describes the instance for the API.
func (in *Instance) View() api.Instance {
	cur, peak := in.Memory()
	v := api.Instance{
		SpecVersion: in.spec.Version, PID: in.pid, Port: in.port, Cgroup: in.Cgroup(),
		SpawnMS: in.spawnMS, ReadyMS: in.readyMS, ShadowMS: in.shadowMS, ShadowCode: in.shadowCode,
		MemoryMB: float64(cur) / (1 << 20), PeakMemoryMB: float64(peak) / (1 << 20),
	}
	if in.cg != nil {
		v.CgroupVersion = in.cg.version
	}
	v.Exit, _ = in.Exit()
	return v
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
