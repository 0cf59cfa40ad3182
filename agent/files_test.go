package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Files are created exclusively and never through a symbolic link: a link
// planted where a lease file goes is refused and its target left alone.
func TestLeaseFilesNeverFollowOrReuse(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	planted := leaseFile(dir, "p1")
	if err := os.Symlink(victim, planted); err != nil {
		t.Fatal(err)
	}
	if _, err := allocStorage(planted, 1<<20); !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ELOOP) {
		t.Errorf("storage at a planted link: %v, want EEXIST or ELOOP", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target was written: %q", b)
	}
	existing := leaseFile(dir, "p2")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := allocStorage(existing, 1<<20); !errors.Is(err, unix.EEXIST) {
		t.Errorf("storage over an existing file: %v, want EEXIST", err)
	}
}

// The I/O probe uses a fresh name each time, creates it exclusively and
// removes it: concurrent probes do not collide and nothing is left.
func TestIOProbeUsesFreshFilesAndRemovesThem(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = ioProbe(dir) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("probe %d: %v", i, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("probe files left: %v", entries)
	}
	a, b := probeFile(dir), probeFile(dir)
	if a == b || !strings.HasPrefix(filepath.Base(a), "fw-probe-") || !ownFile.MatchString(filepath.Base(a)) {
		t.Errorf("probe names %s and %s: want fresh fw-probe-*.dat names", a, b)
	}
}

// The log limiter lets one line through per interval and reports how many
// it held back.
func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if ok, skipped := l.allow(t0); !ok || skipped != 0 {
		t.Errorf("first: %v %d", ok, skipped)
	}
	for i := 1; i <= 5; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Errorf("line %d within the interval let through", i)
		}
	}
	if ok, skipped := l.allow(t0.Add(10 * time.Second)); !ok || skipped != 5 {
		t.Errorf("after the interval: %v, %d skipped; want true, 5", ok, skipped)
	}
}
