package main

import (
	"encoding/json"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFlagsAreChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "30s"}, "--duration 30s: must be within [1m30s, 8m] (the faults need room; the soak stays under 10 minutes)"},
		{[]string{"--seed", "abc"}, `--seed "abc": want a non-negative integer`},
		{[]string{"--apps", "2"}, "--apps 2: must be within [3, 64]"},
		{[]string{"--rate", "30"}, "--rate 30: must be within (0, 20] requests per second"},
		{[]string{"--traffic", "carrier-pigeon"}, `--traffic "carrier-pigeon": want gateway or workflows`},
		{[]string{"extra"}, `unexpected argument "extra": soak takes only flags`},
	} {
		_, err := parseFlags(c.args)
		require.EqualError(t, err, c.want, "%v", c.args)
	}
	s, err := parseFlags([]string{"--seed", "42"})
	require.NoError(t, err)
	require.Equal(t, uint64(42), s.Seed)
	require.Equal(t, 3*time.Minute, s.Duration)
	require.Equal(t, "gateway", s.Traffic)
	require.Equal(t, 8.0, s.Rate, "the gateway mode's rate")
	s, err = parseFlags([]string{"--traffic", "workflows"})
	require.NoError(t, err)
	require.Equal(t, 3.0, s.Rate, "the workflows mode's rate")
}

// The applications together send about the asked rate, the same for the
// same seed.
func TestShapesSendTheAskedRate(t *testing.T) {
	for _, rate := range []float64{1, 3, 8} {
		r := mrand.New(mrand.NewPCG(7, 1))
		sh := newShapes(r, "soak", 8, rate)
		tr := sh.trace(r, time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), 3600)
		got := float64(tr.Total()) / 3600
		require.InDelta(t, rate, got, 0.15*rate, "rate %v", rate)
		r2 := mrand.New(mrand.NewPCG(7, 1))
		sh2 := newShapes(r2, "soak", 8, rate)
		require.Equal(t, tr, sh2.trace(r2, tr.Start, 3600), "seeded")
	}
}

// Only a running process counts as killed: one that already exited, or
// none at all, does not.
func TestKillCountsOnlyRunningProcesses(t *testing.T) {
	p := processes{logs: t.TempDir()}
	p.add("sleeper", "sleep", []string{"30"}, nil)
	p.add("quick", "true", nil, nil)
	for _, n := range []string{"sleeper", "quick"} {
		if err := p.start(n); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	quick := p.procs["quick"]
	p.mu.Unlock()
	<-quick.done // `true` has exited
	if !p.kill("sleeper") {
		t.Error("a running process was not counted as killed")
	}
	if p.kill("quick") {
		t.Error("a process that had exited was counted as killed")
	}
	if p.kill("nobody") {
		t.Error("a process never started was counted as killed")
	}
}

// A process running the sample's binary is found by its executable, and
// is not once it has ended.
func TestProcessesLeftFindsTheBinary(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	data, err := os.ReadFile(sleep)
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "sample")
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "30")
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return slices.Contains(processesLeft(bin), cmd.Process.Pid) }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.Empty(t, processesLeft(bin))
}

// The gateway mode prints what it measured even when 0; the workflows
// mode leaves out what it does not measure.
func TestResultLine(t *testing.T) {
	b, err := json.Marshal(Result{Traffic: "workflows", RequestsSent: 3, RequestsRecorded: 3})
	require.NoError(t, err)
	require.NotContains(t, string(b), "processes_left")
	b, err = json.Marshal(Result{Traffic: "gateway", ProcessesLeft: ptr(0), CgroupsLeft: ptr(0), SpoolFilesLeft: ptr(0)})
	require.NoError(t, err)
	require.Contains(t, string(b), `"spool_files_left":0,"processes_left":0,"cgroups_left":0`)
}
