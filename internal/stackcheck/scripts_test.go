package stackcheck

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/internal/testenv"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy/local/up.sh")); err != nil {
		t.Fatalf("deploy/local/up.sh not found from %s: %v", root, err)
	}
	return root
}

func pidOf(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return strings.TrimSpace(string(b))
}

// A second `make up` (up.sh) on a running stack finds everything ready:
// it exits 0, prints nothing, starts nothing and keeps the same processes.
func TestUpIsIdempotent(t *testing.T) {
	testenv.ClickHouse(t)
	testenv.Temporal(t)
	root := repoRoot(t)
	state := filepath.Join(root, ".state")
	before := map[string]string{}
	for _, s := range []string{"clickhouse", "temporal"} {
		before[s] = pidOf(t, filepath.Join(state, s+".pid"))
	}
	list := filepath.Join(t.TempDir(), "started")
	cmd := exec.Command("bash", filepath.Join(root, "deploy/local/up.sh"))
	cmd.Env = append(os.Environ(), "FOREWARM_STARTED_LIST="+list)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("second up.sh failed: %v\n%s", err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("second up.sh printed %q, want nothing", out.String())
	}
	if b, _ := os.ReadFile(list); len(b) != 0 {
		t.Errorf("second up.sh started %q, want nothing", b)
	}
	for s, pid := range before {
		if got := pidOf(t, filepath.Join(state, s+".pid")); got != pid {
			t.Errorf("%s pid changed from %s to %s", s, pid, got)
		}
	}
}

// A service whose port is taken fails with a one-line reason naming the
// port, and a non-zero exit; nothing is left running.
func TestUpFailsClearlyWhenPortTaken(t *testing.T) {
	root := repoRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	state := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "deploy/local/up.sh"), "clickhouse")
	cmd.Env = append(os.Environ(), "FOREWARM_STATE="+state, "CLICKHOUSE_TCP_PORT="+port, "CLICKHOUSE_HTTP_PORT=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("up.sh succeeded on a taken port:\n%s", out)
	}
	first := strings.SplitN(string(out), "\n", 2)[0]
	if !strings.Contains(first, "ClickHouse did not start") || !strings.Contains(first, "port "+port) {
		t.Fatalf("first line %q does not name the service and the taken port; output:\n%s", first, out)
	}
	if _, err := os.Stat(filepath.Join(state, "clickhouse.pid")); err == nil {
		t.Fatalf("a pid file was left behind in %s", state)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// up.sh starts a ClickHouse of its own in a fresh state folder, and down.sh
// really stops it: the port is free again afterwards (the pid file names the
// server itself, not a wrapper shell).
func TestUpDownStopsWhatItStarted(t *testing.T) {
	testenv.ClickHouse(t) // the binary and the scripts' tools are installed
	root := repoRoot(t)
	state := t.TempDir()
	tcp, http := freePort(t), freePort(t)
	env := append(os.Environ(), "FOREWARM_STATE="+state, "CLICKHOUSE_TCP_PORT="+tcp, "CLICKHOUSE_HTTP_PORT="+http)
	run := func(script string) {
		cmd := exec.Command("bash", filepath.Join(root, "deploy/local", script), "clickhouse")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s clickhouse: %v\n%s", script, err, out)
		}
	}
	run("up.sh")
	if err := testenv.Dialable("127.0.0.1:" + tcp); err != nil {
		t.Fatalf("ClickHouse started by up.sh does not answer on %s: %v", tcp, err)
	}
	run("down.sh")
	if err := testenv.Dialable("127.0.0.1:" + tcp); err == nil {
		t.Fatalf("port %s still answers after down.sh: the server was not stopped", tcp)
	}
}
