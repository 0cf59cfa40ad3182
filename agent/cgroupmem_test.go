package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles creates root/name with content for each entry.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const gib = 1 << 30

func TestReadCgroupMemory(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  CgroupMemory
	}{
		{"v2 limited", map[string]string{
			"memory.max":     "2147483648\n",
			"memory.current": "1073741824\n",
			"memory.stat":    "anon 900000000\ninactive_file 268435456\nactive_file 1000\n",
		}, CgroupMemory{Version: 2, Limit: 2 * gib, Usage: gib - 256<<20}},
		{"v2 no limit", map[string]string{"memory.max": "max\n", "memory.current": "5\n"}, CgroupMemory{Version: 2}},
		{"v1 limited", map[string]string{
			"memory/memory.limit_in_bytes": "4294967296\n",
			"memory/memory.usage_in_bytes": "3221225472\n",
			"memory/memory.stat":           "cache 10\ninactive_file 1\ntotal_inactive_file 1073741824\n",
		}, CgroupMemory{Version: 1, Limit: 4 * gib, Usage: 2 * gib}},
		{"v1 no limit", map[string]string{
			"memory/memory.limit_in_bytes": "9223372036854771712\n",
			"memory/memory.usage_in_bytes": "3221225472\n",
		}, CgroupMemory{Version: 1}},
		// v2 wins where both are mounted (the unified hierarchy is the container's).
		{"v2 before v1", map[string]string{
			"memory.max": "1073741824", "memory.current": "1048576",
			"memory/memory.limit_in_bytes": "4294967296", "memory/memory.usage_in_bytes": "1",
		}, CgroupMemory{Version: 2, Limit: gib, Usage: 1 << 20}},
		{"v2 without memory.stat", map[string]string{"memory.max": "1073741824", "memory.current": "1048576"},
			CgroupMemory{Version: 2, Limit: gib, Usage: 1 << 20}},
		{"no memory controller", map[string]string{"cpu.max": "max 100000"}, CgroupMemory{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, c.files)
			got, err := ReadCgroupMemory(root)
			if err != nil || got != c.want {
				t.Errorf("ReadCgroupMemory = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	// A file that is not a byte count is an error naming the file.
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"memory.max": "1073741824", "memory.current": "lots"})
	if _, err := ReadCgroupMemory(root); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "memory.current")) {
		t.Errorf("bad memory.current: %v, want an error naming it", err)
	}
}

func TestCgroupCapacity(t *testing.T) {
	cg := CgroupMemory{Version: 2, Limit: 8704 << 20}
	if mb, err := cg.CapacityMB(512); err != nil || mb != 8192 {
		t.Errorf("CapacityMB(512) of 8704 MB = %d, %v; want 8192", mb, err)
	}
	if _, err := cg.CapacityMB(8704); err == nil || !strings.Contains(err.Error(), "overhead 8704 MB") {
		t.Errorf("an overhead as large as the limit: %v", err)
	}
	if _, err := (CgroupMemory{Version: 1}).CapacityMB(256); err == nil || !strings.Contains(err.Error(), "no memory limit") {
		t.Errorf("no limit: %v", err)
	}
}

// The sampler's memory is the lower of the node's and the cgroup's, with
// the cgroup's usage when its limit is the lower; the node's without one.
func TestSamplerMemoryFromCgroup(t *testing.T) {
	proc := t.TempDir()
	writeFiles(t, proc, map[string]string{"meminfo": "MemTotal:       16777216 kB\nMemFree:         1000000 kB\nMemAvailable:   12582912 kB\n"})
	cases := []struct {
		name             string
		cgroup           map[string]string
		wantTotal, wantA float64
	}{
		{"v2 limit below the node", map[string]string{"memory.max": "4294967296", "memory.current": "1610612736", "memory.stat": "inactive_file 536870912\n"}, 4096, 3072},
		{"v1 limit below the node", map[string]string{"memory/memory.limit_in_bytes": "2147483648", "memory/memory.usage_in_bytes": "536870912"}, 2048, 1536},
		{"no limit: /proc/meminfo", map[string]string{"memory.max": "max"}, 16384, 12288},
		{"v1 unlimited: /proc/meminfo", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": "1"}, 16384, 12288},
		{"limit above the node: /proc/meminfo", map[string]string{"memory.max": "34359738368", "memory.current": "1"}, 16384, 12288},
		// The node's available memory still bounds the cgroup's.
		{"node has less left than the cgroup", map[string]string{"memory.max": "15032385536", "memory.current": "0"}, 14336, 12288},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cg := t.TempDir()
			writeFiles(t, cg, c.cgroup)
			s := &sampler{dataDir: t.TempDir(), procRoot: proc, cgroupRoot: cg}
			err := s.sample() // the fake /proc has no stat file: that part fails alone
			if err == nil || !strings.Contains(err.Error(), "/proc/stat") || strings.Contains(err.Error(), "cgroup") {
				t.Errorf("sample: %v, want only the /proc/stat error", err)
			}
			h := s.latest()
			if h.memTotalMB != c.wantTotal || h.memAvailMB != c.wantA {
				t.Errorf("total %g MB, available %g MB; want %g, %g", h.memTotalMB, h.memAvailMB, c.wantTotal, c.wantA)
			}
		})
	}
}
