//go:build cluster

// The scripts' behaviour with the cluster tests' services (ZooKeeper,
// PostgreSQL), which `make test-cluster` installs and runs these tests with.

package stackcheck

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/testenv"
)

// privateDir returns a fresh folder of mode 0700 (as `mktemp -d` makes, as
// /root is), removed at the end of the test.
func privateDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "forewarm-private-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// script runs a deploy/local script with env added to the test's
// environment and returns its combined output.
func script(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "deploy/local", name)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// envValue is the value of NAME once deploy/local/env.sh is sourced with
// env.
func envValue(t *testing.T, env []string, name string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `source "$0"; printf %s "${!1}"`, filepath.Join(repoRoot(t), "deploy/local/env.sh"), name)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("env.sh: %s: %v", name, err)
	}
	return string(out)
}

// leftovers lists the processes (pid and command line) whose command line
// holds dir: what a run with its state there started and did not stop.
func leftovers(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		line := strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		if err != nil || !strings.Contains(line, dir) {
			continue
		}
		pid := filepath.Base(filepath.Dir(p))
		if pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		out = append(out, pid+" "+line)
	}
	return out
}

func requireNothingLeft(t *testing.T, dir string) {
	t.Helper()
	// down.sh waits for each process to end; allow a moment for the rest.
	deadline := time.Now().Add(5 * time.Second)
	for len(leftovers(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if l := leftovers(dir); len(l) > 0 {
		t.Fatalf("processes of this run still running:\n%s", strings.Join(l, "\n"))
	}
}

// A checkout under a private folder (the postgres user cannot enter it)
// still gets its PostgreSQL: up.sh keeps PostgreSQL's folder where the
// server's user can reach it.
func TestPostgreSQLFromACheckoutUnderAPrivateFolder(t *testing.T) {
	state := filepath.Join(privateDir(t), "checkout", ".state")
	env := []string{"FOREWARM_STATE=" + state, "PG_PORT=" + freePort(t)}
	pgDir := envValue(t, env, "PG_DIR")
	t.Cleanup(func() {
		if out, err := script(t, env, "down.sh", "postgresql"); err != nil {
			t.Errorf("down.sh postgresql: %v\n%s", err, out)
		}
		if pgDir != "" && !strings.HasPrefix(pgDir, state) {
			os.RemoveAll(pgDir)
		}
	})
	if out, err := script(t, env, "up.sh", "postgresql"); err != nil {
		t.Fatalf("up.sh postgresql with the state folder %s under a private folder: %v\n%s", state, err, out)
	}
	port := envValue(t, env, "PG_PORT")
	if err := testenv.Dialable("127.0.0.1:" + port); err != nil {
		t.Fatalf("PostgreSQL started by up.sh does not answer on %s: %v", port, err)
	}
	b, err := os.ReadFile(filepath.Join(pgDir, "state-folder"))
	if err != nil || strings.TrimSpace(string(b)) != state {
		t.Errorf("%s/state-folder holds %q (%v), want %s", pgDir, b, err, state)
	}
}

// PostgreSQL's folder is named after the state folder: two checkouts do
// not share a cluster.
func TestPostgreSQLFolderPerStateFolder(t *testing.T) {
	a := envValue(t, []string{"FOREWARM_STATE=/x/a/.state"}, "PG_DIR")
	b := envValue(t, []string{"FOREWARM_STATE=/x/b/.state"}, "PG_DIR")
	if a == b || a == "" {
		t.Fatalf("PG_DIR %q for one state folder, %q for another", a, b)
	}
}

// holdPort listens on a loopback port until the test ends.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// stackEnv is the environment of a with-stack.sh run on a state folder of
// its own, ZooKeeper then PostgreSQL on free ports; the test's end stops
// whatever that run left.
func stackEnv(t *testing.T, pgPort string) ([]string, string) {
	state := filepath.Join(t.TempDir(), ".state")
	env := []string{"FOREWARM_STATE=" + state, "ZK_PORT=" + freePort(t), "PG_PORT=" + pgPort,
		"STACK_SERVICES=zookeeper postgresql", "KEEP=0"}
	pgDir := envValue(t, env, "PG_DIR")
	t.Cleanup(func() {
		script(t, env, "down.sh", "zookeeper", "postgresql")
		if pgDir != "" && !strings.HasPrefix(pgDir, state) {
			os.RemoveAll(pgDir)
		}
	})
	return env, state
}

// When a service fails to start, with-stack.sh (make test, make
// test-cluster) stops the services it had started before the failure.
func TestWithStackStopsWhatItStartedWhenUpFails(t *testing.T) {
	env, state := stackEnv(t, holdPort(t)) // PostgreSQL's port is taken: it cannot start
	out, err := script(t, env, "with-stack.sh", "true")
	if err == nil {
		t.Fatalf("with-stack.sh succeeded with PostgreSQL's port taken:\n%s", out)
	}
	if !strings.Contains(out, "starting ZooKeeper") || !strings.Contains(out, "PostgreSQL did not start") {
		t.Fatalf("expected ZooKeeper to start and PostgreSQL to fail; output:\n%s", out)
	}
	requireNothingLeft(t, state)
}

// The command's failure and a signal stop them too.
func TestWithStackStopsWhatItStartedOnFailureAndSignal(t *testing.T) {
	t.Run("command fails", func(t *testing.T) {
		env, state := stackEnv(t, freePort(t))
		out, err := script(t, env, "with-stack.sh", "false")
		if err == nil {
			t.Fatalf("with-stack.sh false succeeded:\n%s", out)
		}
		requireNothingLeft(t, state)
	})
	// SIGTERM to with-stack.sh alone (a supervisor stopping it), SIGINT to
	// its process group (Ctrl-C in a terminal).
	t.Run("SIGTERM", func(t *testing.T) { stopBySignal(t, syscall.SIGTERM, false) })
	t.Run("SIGINT to the group", func(t *testing.T) { stopBySignal(t, syscall.SIGINT, true) })
}

// stopBySignal runs with-stack.sh on a long command, sends sig once the
// command runs (to the process group with group) and checks that
// with-stack.sh ends, leaving neither a service nor the command.
func stopBySignal(t *testing.T, sig syscall.Signal, group bool) {
	env, state := stackEnv(t, freePort(t))
	// A sleep of its own, to be found among the processes.
	nap := fmt.Sprintf("600.%d", time.Now().UnixNano()%1e9)
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "deploy/local/with-stack.sh"), "sleep", nap)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: group}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait until the stack is up and the command runs.
	deadline := time.Now().Add(2 * time.Minute)
	sleeping := func() bool {
		for _, l := range leftovers(nap) {
			if strings.HasPrefix(strings.SplitN(l, " ", 2)[1], "sleep ") {
				return true
			}
		}
		return false
	}
	for !sleeping() {
		select {
		case err := <-done:
			t.Fatalf("with-stack.sh ended early: %v\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the stack did not come up in 2 minutes:\n%s", out.String())
		}
	}
	pid := cmd.Process.Pid
	if group {
		pid = -pid
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("with-stack.sh exited 0 after %v:\n%s", sig, out.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("with-stack.sh still running a minute after %v:\n%s", sig, out.String())
	}
	requireNothingLeft(t, state)
	requireNothingLeft(t, nap) // nor the command
}
