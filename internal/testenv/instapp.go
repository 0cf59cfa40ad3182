package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The host agent's test application (agent/testdata/instapp), built once
// per test binary into a folder every user may enter: instances run as
// nobody when the tests run as root.
var (
	instOnce sync.Once
	instDir  string
	instBin  string
	instErr  error
)

// InstApp returns the path of the built test application.
func InstApp(t testing.TB) string {
	t.Helper()
	instOnce.Do(func() {
		if instDir, instErr = os.MkdirTemp("", "forewarm-instapp-"); instErr != nil {
			return
		}
		if instErr = os.Chmod(instDir, 0o755); instErr != nil {
			return
		}
		instBin = filepath.Join(instDir, "instapp")
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", instBin, "github.com/forewarm/forewarm/agent/testdata/instapp").CombinedOutput()
		if err != nil {
			instErr = fmt.Errorf("build agent/testdata/instapp: %v\n%s", err, out)
		}
	})
	if instErr != nil {
		t.Fatal(instErr)
	}
	return instBin
}

// RemoveInstApp removes what InstApp built; a TestMain calls it last.
func RemoveInstApp() {
	if instDir != "" {
		os.RemoveAll(instDir)
	}
}
