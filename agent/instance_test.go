package agent_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forewarm/forewarm/agent"
	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/agent/client"
)

func TestInstanceStartsServesAndStops(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "echo", nil))
	l := ia.reserveApp(t, "p1", "echo")
	requireCgroup(t, l)
	in := l.Instance
	if l.MemoryMB != 64 || l.CPUMilli != 500 || l.DiskMB != 4 || l.MaxConcurrent != 2 || l.State != api.StateReady {
		t.Errorf("lease sizes = %g MB, %d mc, %g MB disk, conc %d, %s; want the spec's 64, 500, 4, 2, ready", l.MemoryMB, l.CPUMilli, l.DiskMB, l.MaxConcurrent, l.State)
	}
	if in.PID <= 0 || in.Port <= 0 || in.SpecVersion != "1" || in.ShadowCode != 200 || in.SpawnMS <= 0 || in.ReadyMS <= 0 || in.ShadowMS <= 0 || in.ScratchMS <= 0 {
		t.Errorf("instance = %+v; want pid, port, phases and shadow 200", in)
	}
	t.Logf("instance: %+v", *in)
	if in.MemoryMB < 1 || l.DiskAllocatedMB < 3.9 {
		t.Errorf("memory %g MB, disk allocated %g MB; want real figures", in.MemoryMB, l.DiskAllocatedMB)
	}
	// Limits in the kernel.
	dirs := cgroupDirs(l)
	if in.CgroupVersion == "v1" {
		if got := readTrim(t, filepath.Join(dirs[0], "memory.limit_in_bytes")); got != "67108864" {
			t.Errorf("memory.limit_in_bytes = %s, want 64 MB", got)
		}
		if got := readTrim(t, filepath.Join(dirs[1], "cpu.cfs_quota_us")); got != "50000" {
			t.Errorf("cpu.cfs_quota_us = %s, want 50000 (500 millicores)", got)
		}
		if got := readTrim(t, filepath.Join(dirs[0], "cgroup.procs")); !strings.Contains(got, itoa(in.PID)) {
			t.Errorf("cgroup.procs = %q, want pid %d", got, in.PID)
		}
	}

	// Served through the agent: who it runs as, its environment.
	resp, body := ia.do(t, http.MethodGet, "p1", "/whoami", "")
	if resp.StatusCode != 200 || resp.Header.Get(api.HeaderLease) != "p1" || resp.Header.Get(api.HeaderHost) != ia.hostID || resp.Header.Get(api.HeaderInstanceMS) == "" {
		t.Fatalf("whoami: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	var who struct {
		UID      int    `json:"uid"`
		Scratch  string `json:"scratch"`
		App      string `json:"app"`
		Instance string `json:"instance"`
		Port     string `json:"port"`
		Greeting string `json:"greeting"`
		Home     string `json:"home"`
		PGID     int    `json:"pgid"`
	}
	if err := json.Unmarshal(body, &who); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(ia.dataDir, "fw-inst-p1", "scratch")
	if who.Scratch != scratch || who.App != "echo" || who.Instance != "p1" || who.Port != itoa(in.Port) || who.Greeting != "hello" || who.Home != scratch || who.PGID != in.PID {
		t.Errorf("instance environment = %+v", who)
	}
	if os.Geteuid() == 0 && who.UID != 65534 {
		t.Errorf("instance runs as uid %d; want nobody (65534) under a root agent", who.UID)
	}
	if resp, body := ia.do(t, http.MethodPost, "p1", "/write", ""); resp.StatusCode != 200 {
		t.Errorf("writing into the scratch folder: %d %s", resp.StatusCode, body)
	}

	// Method, escaped path, query and body pass; the token does not.
	resp, body = ia.do(t, http.MethodPut, "p1", "/echo/a%2Fb c?x=1&y=%20", "payload")
	if resp.StatusCode != 200 || string(body) != "payload" || resp.Header.Get("X-Echo-Method") != "PUT" ||
		resp.Header.Get("X-Echo-Path") != "/echo/a/b c" || resp.Header.Get("X-Echo-Query") != "x=1&y=%20" ||
		resp.Header.Get("X-Saw-Authorization") != "false" {
		t.Errorf("echo: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// The instance's own errors are its answers, not the agent's.
	resp, body = ia.do(t, http.MethodGet, "p1", "/status?code=404", "")
	if resp.StatusCode != 404 || resp.Header.Get(api.HeaderLease) != "p1" || string(body) != "status 404 from the instance" {
		t.Errorf("instance 404: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// Shadow again, on demand.
	sh, err := ia.c.Shadow(ctxT(t), clientShadow("p1"))
	if err != nil || sh.TotalMS <= 0 {
		t.Errorf("shadow: %+v, %v", sh, err)
	}
	v, err := ia.c.Lease(ctxT(t), "p1")
	if err != nil || v.RequestsServed != 4 || v.Shadows != 1 || v.Instance == nil || v.Instance.MemoryMB <= 0 || v.Instance.PeakMemoryMB < v.Instance.MemoryMB {
		t.Errorf("lease after serving: %+v %+v, %v", v, v.Instance, err)
	}
	apps, err := ia.c.Apps(ctxT(t))
	if err != nil || len(apps) != 1 || apps[0].App != "echo" || apps[0].Concurrency != 2 || apps[0].MemoryMB != 64 {
		t.Errorf("apps = %+v, %v", apps, err)
	}

	res, err := ia.c.ReleaseLease(ctxT(t), "p1")
	if err != nil || !res.Released || res.Instance == nil || res.Instance.Exit != "stopped" || res.RequestsServed != 4 {
		t.Errorf("release: %+v %+v, %v", res, res.Instance, err)
	}
	assertNothingLeft(t, ia.dataDir, l)
	if m := ia.Metrics(); m.ReservedMemMB != 0 || m.ReservedCPUMilli != 0 || m.ReservedDiskMB != 0 {
		t.Errorf("capacity not returned: %+v", m)
	}
}

func TestInstanceConcurrencyLimitAndQueue(t *testing.T) {
	ia := startInstanceAgent(t, func(c *agent.Config) { c.QueueWait = 300 * time.Millisecond },
		appSpec(t, "one", func(m map[string]any) { m["concurrency"] = 1 }))
	l := ia.reserveApp(t, "p1", "one")
	requireCgroup(t, l)
	if l.MaxConcurrent != 1 {
		t.Fatalf("max concurrent = %d, want the spec's 1", l.MaxConcurrent)
	}

	// A request holds the only slot for a second: another waits the queue
	// time, then is refused lease_busy, never having reached the instance.
	slow := make(chan int, 1)
	go func() {
		resp, _ := ia.do(t, http.MethodGet, "p1", "/sleep?ms=1000", "")
		slow <- resp.StatusCode
	}()
	eventually(t, "the slow request in flight", func() bool { v, _ := ia.Lease("p1"); return v.InFlight == 1 })
	start := time.Now()
	resp, body := ia.do(t, http.MethodGet, "p1", "/echo/x", "")
	waited := time.Since(start)
	e := refusal(t, resp, body)
	if e.Status != http.StatusConflict || e.Code != api.CodeLeaseBusy || resp.Header.Get(api.HeaderSent) != "0" || resp.Header.Get(api.HeaderLease) != "" {
		t.Errorf("busy refusal = %+v, headers %v", e, resp.Header)
	}
	if waited < 250*time.Millisecond || waited > 2*time.Second {
		t.Errorf("the busy request waited %s; want about the queue wait (300ms)", waited)
	}
	if code := <-slow; code != 200 {
		t.Errorf("slow request: %d", code)
	}

	// A short request: the next one waits for its slot and is served.
	go func() {
		resp, _ := ia.do(t, http.MethodGet, "p1", "/sleep?ms=100", "")
		slow <- resp.StatusCode
	}()
	eventually(t, "the short request in flight", func() bool { v, _ := ia.Lease("p1"); return v.InFlight == 1 })
	if resp, body := ia.do(t, http.MethodGet, "p1", "/echo/y", ""); resp.StatusCode != 200 || resp.Header.Get(api.HeaderLease) != "p1" {
		t.Errorf("queued request: %d %s", resp.StatusCode, body)
	}
	<-slow
	v, _ := ia.Lease("p1")
	if v.RequestsServed != 3 || v.InFlight != 0 || v.BusyMBs <= 64*0.9 {
		t.Errorf("use = %+v; want 3 served (the refused one not counted) and over a second busy", v.LeaseUse)
	}
}

func TestInstanceKilledForExceedingItsMemoryLimit(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "hungry", nil))
	l := ia.reserveApp(t, "p1", "hungry")
	requireCgroup(t, l)
	resp, body := ia.do(t, http.MethodGet, "p1", "/alloc?mb=200", "")
	e := refusal(t, resp, body)
	t.Logf("answer: %v", e)
	if e.Status != http.StatusBadGateway || e.Code != api.CodeInstanceDown || resp.Header.Get(api.HeaderSent) != "1" ||
		!strings.Contains(e.Message, "killed: memory limit 64 MB") {
		t.Errorf("answer to the allocation = %+v, headers %v", e, resp.Header)
	}
	eventually(t, "the lease to fail", func() bool { _, err := ia.Lease("p1"); return agent.CodeOf(err) == api.CodeGone })
	_, err := ia.c.Lease(ctxT(t), "p1")
	if client.Code(err) != api.CodeGone || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "killed: memory limit 64 MB") {
		t.Errorf("lease after the kill: %v", err)
	}
	assertNothingLeft(t, ia.dataDir, l)
	res, err := ia.c.ReleaseLease(ctxT(t), "p1")
	if err != nil || res.Released || res.State != api.StateFailed || res.Note != "killed: memory limit 64 MB" ||
		res.Instance == nil || res.Instance.Exit != "killed: memory limit 64 MB" || res.Instance.PeakMemoryMB < 32 ||
		res.EndedAt.IsZero() || time.Since(res.EndedAt) > time.Minute {
		t.Errorf("release after the kill: %+v %+v, %v", res, res.Instance, err)
	}
	eventually(t, "the capacity to return", func() bool { m := ia.Metrics(); return m.ReservedMemMB == 0 && m.Leases == 0 })
	if got := promValue(t, ia.url, `forewarm_agent_instances_failed_total{host="`+ia.hostID+`",reason="oom"}`); got != 1 {
		t.Errorf("instances_failed_total{reason=oom} = %g, want 1", got)
	}
}

func TestInstanceCrashMidRequest(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "crashy", nil))
	l := ia.reserveApp(t, "p1", "crashy")
	resp, body := ia.do(t, http.MethodPost, "p1", "/exit?code=2", "")
	e := refusal(t, resp, body)
	if e.Status != http.StatusBadGateway || e.Code != api.CodeInstanceDown || resp.Header.Get(api.HeaderSent) != "1" ||
		!strings.Contains(e.Message, "exit status 2") || resp.Header.Get(api.HeaderLease) != "" {
		t.Errorf("answer to the crash = %+v, headers %v", e, resp.Header)
	}
	eventually(t, "the lease to fail", func() bool { _, err := ia.Lease("p1"); return agent.CodeOf(err) == api.CodeGone })
	assertNothingLeft(t, ia.dataDir, l)
	// The next request is refused as gone, with the reason.
	resp, body = ia.do(t, http.MethodGet, "p1", "/echo/x", "")
	if e := refusal(t, resp, body); e.Code != api.CodeGone || !strings.Contains(e.Message, "exit status 2") || resp.Header.Get(api.HeaderSent) != "0" {
		t.Errorf("request after the crash = %+v", e)
	}
	if got := promValue(t, ia.url, `forewarm_agent_instances_failed_total{host="`+ia.hostID+`",reason="exit"}`); got != 1 {
		t.Errorf("instances_failed_total{reason=exit} = %g, want 1", got)
	}
}

func TestInstanceStartFailuresLeaveNothing(t *testing.T) {
	slow := appSpec(t, "slow", func(m map[string]any) {
		m["command"] = []string{instapp(t), "--start-delay", "10s"}
		m["readiness"] = map[string]any{"path": "/healthz", "timeout": "300ms", "interval": "20ms"}
	})
	wrong := appSpec(t, "wrong", func(m map[string]any) { m["command"] = []string{instapp(t), "--shadow-status", "500"} })
	dies := appSpec(t, "dies", func(m map[string]any) { m["command"] = []string{instapp(t), "--no-such-flag"} })
	missing := appSpec(t, "missing", func(m map[string]any) { m["command"] = []string{"/nonexistent/program"} })
	ia := startInstanceAgent(t, nil, slow, wrong, dies, missing)
	for _, c := range []struct{ app, want string }{
		{"slow", "readiness: /healthz not ready within 300ms"},
		{"wrong", "shadow: POST /shadow answered 500, want 200"},
		{"dies", "readiness: the process ended (exit status 2) before /healthz answered; last output: "},
		{"missing", "spawn: "},
	} {
		t.Run(c.app, func(t *testing.T) {
			id := "p-" + c.app
			_, err := ia.c.Reserve(ctxT(t), client.ReserveRequest{PreparationID: id, App: c.app})
			t.Logf("%s: %v", c.app, err)
			if client.Code(err) != api.CodeStartFailed || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "application "+c.app) {
				t.Fatalf("reserve: %v; want start_failed with %q", err, c.want)
			}
			if c.app == "dies" && !strings.Contains(err.Error(), "flag provided but not defined") {
				t.Errorf("the failure does not show the program's output: %v", err)
			}
			assertNothingLeft(t, ia.dataDir, api.Lease{PreparationID: id})
			if ds := cgroupLeftovers(ia.hostID); len(ds) != 0 {
				t.Errorf("cgroups left: %v", ds)
			}
			if _, err := ia.c.Lease(ctxT(t), id); client.Code(err) != api.CodeNotFound {
				t.Errorf("lease after a failed start: %v, want not_found (a retry may start again)", err)
			}
		})
	}
	if m := ia.Metrics(); m.ReservedMemMB != 0 || m.ReservedCPUMilli != 0 || m.Leases != 0 {
		t.Errorf("capacity not returned: %+v", m)
	}
	if got := promValue(t, ia.url, `forewarm_agent_instance_starts_failed_total{host="`+ia.hostID+`"}`); got != 4 {
		t.Errorf("instance_starts_failed_total = %g, want 4", got)
	}
}

func TestInstanceStopEscalatesToKillAndTakesItsChildren(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "stubborn", func(m map[string]any) {
		m["command"] = []string{instapp(t), "--ignore-term"}
		m["stop_grace"] = "400ms"
	}))
	l := ia.reserveApp(t, "p1", "stubborn")
	requireCgroup(t, l)
	// A child in a session of its own: out of the process group, still in
	// the cgroup.
	resp, body := ia.do(t, http.MethodPost, "p1", "/spawn", "")
	child, err := strconv.Atoi(string(body))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("spawn: %d %s", resp.StatusCode, body)
	}
	start := time.Now()
	if _, err := ia.c.ReleaseLease(ctxT(t), "p1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("release took %s; want the grace (400ms) then SIGKILL", took)
	}
	if !processGone(l.Instance.PID) || !processGone(child) {
		t.Errorf("still running after release: instance %v, child %v", !processGone(l.Instance.PID), !processGone(child))
	}
	assertNothingLeft(t, ia.dataDir, l)
}

func TestInstanceSpecVersionsAndKinds(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "echo", nil))
	ctx := ctxT(t)
	for _, r := range []client.ReserveRequest{
		{PreparationID: "v2", App: "echo", SpecVersion: "2"},
		{PreparationID: "nospec", App: "other", SpecVersion: "1", MemoryMB: 8},
	} {
		_, err := ia.c.Reserve(ctx, r)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != api.CodeUnknownSpec || ce.Status != http.StatusNotFound {
			t.Errorf("reserve %+v: %v; want unknown_spec 404", r, err)
		}
	}
	if ls, _ := ia.c.Leases(ctx); len(ls) != 0 {
		t.Errorf("an unknown spec left leases: %+v", ls)
	}
	// An application without a spec still gets a memory reservation.
	mem, err := ia.c.Reserve(ctx, client.ReserveRequest{PreparationID: "mem", App: "other", MemoryMB: 8})
	if err != nil || mem.Instance != nil || mem.ResidentMB < 7.9 {
		t.Fatalf("memory lease: %+v, %v", mem, err)
	}
	resp, body := ia.do(t, http.MethodGet, "mem", "/x", "")
	if e := refusal(t, resp, body); e.Code != api.CodeNoInstance || e.Status != http.StatusConflict {
		t.Errorf("instance request on a memory lease: %+v", e)
	}
	resp, body = ia.do(t, http.MethodGet, "nope", "/x", "")
	if e := refusal(t, resp, body); e.Code != api.CodeNotFound || resp.Header.Get(api.HeaderSent) != "0" {
		t.Errorf("instance request on an unknown lease: %+v", e)
	}
	// A process lease: sizes given override the spec's; a repeat is the
	// same lease; a synthetic serve on it is refused.
	l, err := ia.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "echo", MemoryMB: 96})
	if err != nil || l.Instance == nil || l.MemoryMB != 96 || l.CPUMilli != 500 {
		t.Fatalf("process lease: %+v, %v", l, err)
	}
	if again, err := ia.c.Reserve(ctx, client.ReserveRequest{PreparationID: "p1", App: "echo", MemoryMB: 96, SpecVersion: "1"}); err != nil || !again.Existing || again.Instance.PID != l.Instance.PID {
		t.Errorf("repeat reserve: %+v, %v", again, err)
	}
	if _, err := ia.c.Serve(ctx, api.ServeRequest{RequestID: "r1", App: "echo", PreparationID: "p1", MemoryMB: 1}); client.Code(err) != api.CodeConflict {
		t.Errorf("synthetic serve on a process lease: %v, want conflict", err)
	}
	if l.Instance.Cgroup != "" && l.Instance.CgroupVersion == "v1" {
		if got := readTrim(t, filepath.Join(cgroupDirs(l)[0], "memory.limit_in_bytes")); got != "100663296" {
			t.Errorf("memory limit = %s, want the lease's 96 MB", got)
		}
	}
}

func TestBadSpecFolderFailsStartAndReloadKeepsTheOldSpecs(t *testing.T) {
	dir := writeSpecs(t, appSpec(t, "echo", nil))
	bad := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(bad, []byte(`{"app": "broken", "version": "1", "command": ["x"], "memory_mb": 1,
		"readiness": {"path": "/h"}, "shadow": {"path": "/s", "max_latency": "1s"}, "cpu_milli": 100, "concurrency": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := agent.New(agent.Config{HostID: "bad-specs", DataDir: t.TempDir(), SpecDir: dir, MemoryMB: 64, DefaultTTL: time.Minute})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "memory_mb") {
		t.Fatalf("New with a bad spec: %v; want an error naming %s and memory_mb", err, bad)
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	// Good specs, but a data folder the instance user cannot reach (under
	// t.TempDir's 0700 folder): refused, and nothing made is left.
	if os.Geteuid() == 0 {
		_, err = agent.New(agent.Config{HostID: "closed-data", DataDir: t.TempDir(), SpecDir: dir, MemoryMB: 64, DefaultTTL: time.Minute})
		if err == nil || !strings.Contains(err.Error(), "cannot enter") {
			t.Errorf("New with a data folder nobody can enter: %v", err)
		}
		assertNoCgroupParent(t, "closed-data")
	}
	dataDir := filepath.Join(openTempDir(t), "data")
	ia := &instAgent{testAgent: startAgent(t, func(c *agent.Config) { c.HostID, c.SpecDir, c.DataDir = "reload-"+randHex(4), dir, dataDir })}
	if err := os.WriteFile(filepath.Join(dir, "echo.json"), []byte(`{"app": "echo"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ia.ReloadSpecs(); err == nil || !strings.Contains(err.Error(), "echo.json") {
		t.Errorf("reload of a bad folder: %v", err)
	}
	if apps := ia.Apps(); len(apps) != 1 || apps[0].App != "echo" || apps[0].Version != "1" {
		t.Errorf("apps after a bad reload = %+v; want the old set", apps)
	}
	b, _ := json.Marshal(appSpec(t, "echo", func(m map[string]any) { m["version"] = "2" }))
	if err := os.WriteFile(filepath.Join(dir, "echo.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ia.ReloadSpecs(); err != nil {
		t.Fatal(err)
	}
	if apps, err := ia.c.Apps(ctxT(t)); err != nil || len(apps) != 1 || apps[0].Version != "2" {
		t.Errorf("apps after a good reload = %+v, %v", apps, err)
	}
}

func TestInstancesOfAnAbandonedAgentAreReapedAtStart(t *testing.T) {
	spec := appSpec(t, "echo", nil)
	ia := startInstanceAgent(t, nil, spec)
	l := ia.reserveApp(t, "p1", "echo")
	requireCgroup(t, l)
	resp, body := ia.do(t, http.MethodPost, "p1", "/spawn", "")
	child, err := strconv.Atoi(string(body))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("spawn: %d %s", resp.StatusCode, body)
	}
	// A planted process that only looks like it (another instance ID in
	// its environment) must survive.
	decoy := exec.Command(instapp(t), "--child")
	decoy.Env = []string{"FOREWARM_INSTANCE=other", "FOREWARM_SCRATCH=" + filepath.Join(ia.dataDir, "fw-inst-p1", "scratch")}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = decoy.Process.Kill(); _ = decoy.Wait() }()

	// The first agent is abandoned as it is (a crash would leave the same:
	// its cgroup, folder and the child; the process itself dies with it by
	// Pdeathsig). A new agent of the same host reaps before serving.
	second, err := agent.New(agent.Config{HostID: ia.hostID, DataDir: ia.dataDir, MemoryMB: 1024, DefaultTTL: time.Minute, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctxT(t))
	if !processGone(l.Instance.PID) || !processGone(child) {
		t.Errorf("after the restart: instance running %v, its child running %v", !processGone(l.Instance.PID), !processGone(child))
	}
	for _, d := range cgroupDirs(l) {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s survived the restart", d)
		}
	}
	if _, err := os.Stat(filepath.Join(ia.dataDir, "fw-inst-p1")); !os.IsNotExist(err) {
		t.Errorf("the instance folder survived the restart: %v", err)
	}
	if processGone(decoy.Process.Pid) {
		t.Error("a process that is not the instance's was killed")
	}
	// The abandoned agent notices its instance is gone.
	eventually(t, "the abandoned agent's lease to fail", func() bool { _, err := ia.Lease("p1"); return agent.CodeOf(err) == api.CodeGone })
}

func TestExpiredInstanceIsStopped(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "echo", nil))
	l, err := ia.c.Reserve(ctxT(t), client.ReserveRequest{PreparationID: "p1", App: "echo", TTL: time.Second})
	if err != nil || l.Instance == nil {
		t.Fatalf("reserve: %+v, %v", l, err)
	}
	eventually(t, "the lease to expire", func() bool { _, err := ia.Lease("p1"); return agent.CodeOf(err) == api.CodeGone })
	assertNothingLeft(t, ia.dataDir, l)
	eventually(t, "the capacity to return", func() bool { return ia.Metrics().ReservedMemMB == 0 })
	res, err := ia.c.ReleaseLease(ctxT(t), "p1")
	if err != nil || res.State != api.StateExpired || res.Instance == nil || res.Instance.Exit != "stopped" {
		t.Errorf("release after expiry: %+v %+v, %v", res, res.Instance, err)
	}
}

func TestReleaseWhileStartingStopsTheStart(t *testing.T) {
	ia := startInstanceAgent(t, nil, appSpec(t, "slow", func(m map[string]any) {
		m["command"] = []string{instapp(t), "--start-delay", "20s"}
		m["readiness"] = map[string]any{"path": "/healthz", "timeout": "30s", "interval": "20ms"}
	}))
	done := make(chan error, 1)
	go func() {
		_, err := ia.c.Reserve(ctxT(t), client.ReserveRequest{PreparationID: "p1", App: "slow"})
		done <- err
	}()
	eventually(t, "the instance to be starting", func() bool { return len(instanceProcesses("p1")) == 1 })
	start := time.Now()
	if res, err := ia.c.ReleaseLease(ctxT(t), "p1"); err != nil || !res.Released {
		t.Fatalf("release: %+v, %v", res, err)
	}
	select {
	case err := <-done:
		if client.Code(err) != api.CodeGone {
			t.Errorf("reserve released while starting: %v, want gone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start went on after its release")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the start took %s to stop", took)
	}
	assertNothingLeft(t, ia.dataDir, api.Lease{PreparationID: "p1"})
	if ds := cgroupLeftovers(ia.hostID); len(ds) != 0 {
		t.Errorf("cgroups left: %v", ds)
	}
}

// A program named without a slash is looked up in the instance's PATH
// (the spec's), not the agent's.
func TestProgramIsFoundInTheInstancesPath(t *testing.T) {
	bin := instapp(t)
	ia := startInstanceAgent(t, nil,
		appSpec(t, "bypath", func(m map[string]any) {
			m["command"] = []string{filepath.Base(bin)}
			m["env"] = map[string]string{"PATH": filepath.Dir(bin) + ":/usr/bin:/bin"}
		}),
		appSpec(t, "nopath", func(m map[string]any) { m["command"] = []string{filepath.Base(bin)} }))
	l := ia.reserveApp(t, "p1", "bypath")
	if l.Instance.PID <= 0 {
		t.Fatalf("instance = %+v", l.Instance)
	}
	_, err := ia.c.Reserve(ctxT(t), client.ReserveRequest{PreparationID: "p2", App: "nopath"})
	if client.Code(err) != api.CodeStartFailed || !strings.Contains(err.Error(), "is not in the instance's PATH /usr/local/bin:/usr/bin:/bin") {
		t.Errorf("reserve of a program outside the instance's PATH: %v", err)
	}
}

// A host starts at most MaxStarting instances at once: the second start
// waits for the first, and says how long; a reserve never gets a smaller
// instance than its spec.
func TestStartsTakeTurnsAndLeasesAreNeverBelowTheirSpec(t *testing.T) {
	ia := startInstanceAgent(t, func(c *agent.Config) { c.MaxStarting = 1 },
		appSpec(t, "slow", func(m map[string]any) { m["command"] = []string{instapp(t), "--start-delay", "400ms"} }))
	leases := make(chan api.Lease, 2)
	for _, id := range []string{"s1", "s2"} {
		go func() {
			l, _, err := ia.Reserve(ctxT(t), api.ReserveRequest{PreparationID: id, App: "slow", MemoryMB: 8})
			if err != nil {
				t.Error(err)
			}
			leases <- l
		}()
	}
	a, b := <-leases, <-leases
	if a.Instance == nil || b.Instance == nil {
		t.Fatalf("no instances: %+v %+v", a, b)
	}
	waited := max(a.Instance.StartWaitMS, b.Instance.StartWaitMS)
	if waited < 300 || min(a.Instance.StartWaitMS, b.Instance.StartWaitMS) > 100 {
		t.Errorf("start waits %.0f and %.0f ms; want one about the other's start (400 ms) and one none", a.Instance.StartWaitMS, b.Instance.StartWaitMS)
	}
	if a.MemoryMB != 64 || b.MemoryMB != 64 {
		t.Errorf("memory %g and %g MB; a reserve of 8 MB gets the spec's 64", a.MemoryMB, b.MemoryMB)
	}
}
