package instance

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOutputKeepsTheBeginningAndTheEnd(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	o := newOutput(f)
	o.write([]byte("first line\nsecond\x1b line\n"))
	if got := o.text(); got != "first line | second? line" {
		t.Errorf("short output = %q", got)
	}
	for i := 0; i < 1000; i++ {
		o.write([]byte(fmt.Sprintf("line %d\n", i)))
	}
	got := o.text()
	if !strings.HasPrefix(got, "first line | second? line | line 0 |") || !strings.HasSuffix(got, "line 998 | line 999") || !strings.Contains(got, " | … | ") {
		t.Errorf("long output = %q", got)
	}
	if len(got) > 2*(headBytes+tailBytes)+10 {
		t.Errorf("long output is %d bytes", len(got))
	}
}

func TestOutputIsCapped(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	o := newOutput(f)
	chunk := []byte(strings.Repeat("x", 64<<10))
	for i := 0; i < MaxLogBytes/len(chunk)+10; i++ {
		o.write(chunk)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != MaxLogBytes || o.dropped != 10*int64(len(chunk)) {
		t.Errorf("log file %v bytes (%v), dropped %d", fi.Size(), err, o.dropped)
	}
}

// A pid file naming a process that does not carry the instance's marks
// (pid reuse, or a forged file) never gets that process killed; the
// leftover folder still goes.
func TestReapNeverKillsAnUnrelatedProcess(t *testing.T) {
	dataDir := t.TempDir()
	other := exec.Command("sleep", "60")
	other.Env = []string{"FOREWARM_INSTANCE=x"} // half the marks
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	st, err := readStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	folder := Folder(dataDir, "x")
	if err := os.MkdirAll(ScratchDir(folder), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, pidFile), []byte(fmt.Sprintf("%d %d\n", other.Process.Pid, st.startTime)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Reap(dataDir, nil, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if !alive(other.Process.Pid) {
		t.Error("an unrelated process named by a pid file was killed")
	}
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Errorf("leftover folder not removed: %v", err)
	}
}

// One that carries both marks is the instance's, wherever its pid file
// says nothing.
func TestReapKillsAMarkedProcess(t *testing.T) {
	dataDir := t.TempDir()
	folder := Folder(dataDir, "y")
	if err := os.MkdirAll(ScratchDir(folder), 0o700); err != nil {
		t.Fatal(err)
	}
	marked := exec.Command("sleep", "60")
	marked.Env = marks(folder, "y")
	if err := marked.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = marked.Wait(); close(done) }()
	if err := Reap(dataDir, nil, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	<-done
	if ws := marked.ProcessState.String(); ws != "signal: killed" {
		t.Errorf("marked process ended with %q, want killed", ws)
	}
}
