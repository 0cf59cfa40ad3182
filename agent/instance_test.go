package agent_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/agent/api"
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
