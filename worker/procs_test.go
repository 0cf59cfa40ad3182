package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/internal/testenv"
)

// The real host agent as a process (the hostagent binary, built once per
// test run), for tests that measure what the process holds or kill it.

var (
	hostagentOnce sync.Once
	hostagentBin  string
	hostagentErr  error
	hostagentDir  string
)

// hostagentBinary builds ./hostagent once into a temporary folder that
// TestMain removes.
func hostagentBinary(t testing.TB) string {
	hostagentOnce.Do(func() {
		hostagentDir, hostagentErr = os.MkdirTemp("", "forewarm-hostagent-")
		if hostagentErr != nil {
			return
		}
		hostagentBin = filepath.Join(hostagentDir, "hostagent")
		out, err := exec.Command("go", "build", "-o", hostagentBin, "github.com/forewarm/forewarm/hostagent").CombinedOutput()
		if err != nil {
			hostagentErr = fmt.Errorf("go build ./hostagent: %v\n%s", err, out)
		}
	})
	require.NoError(t, hostagentErr)
	return hostagentBin
}

// procAgent is a hostagent process.
type procAgent struct {
	cmd *exec.Cmd
	url string
}

// rssMB is the process's resident memory (VmRSS), MB.
func (p *procAgent) rssMB(t testing.TB) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			require.NoError(t, err)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// startAgentProcess runs a hostagent process that registers itself in the
// stack's database; leasesOn and stopAgent address it like an in-process
// agent.
func (k *stack) startAgentProcess(id string, memMB int64, setupMSPerMB float64) *procAgent {
	t := k.t
	bin := hostagentBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(hostToken(id)), 0o600))
	cfg := testenv.ClickHouse(t)
	cmd := exec.Command(bin, "--host-id", id, "--listen", addr, "--advertise-url", "http://"+addr,
		"--memory-mb", strconv.FormatInt(memMB, 10), "--disk-mb", "4096", "--cpu-milli", "4000",
		"--setup-ms-per-mb", strconv.FormatFloat(setupMSPerMB, 'f', -1, 64), "--sleep-work",
		"--data-dir", filepath.Join(dir, "data"), "--token-file", tokenFile, "--report-every", "1s", "--log-level", "warn",
		"--clickhouse-addr", cfg.Addr, "--clickhouse-database", k.st.Database())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	p := &procAgent{cmd: cmd, url: "http://" + addr}
	k.agents[id] = &testAgent{url: p.url, cancel: func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }}
	t.Cleanup(func() { k.stopAgent(id) })
	k.waitFor("the agent process "+id+" to answer", 30*time.Second, func() bool { return testenv.Dialable(addr) == nil })
	return p
}
