package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// unifiedRoot is where cgroup v2 is mounted (and the v1 controllers'
// folder on a v1 or hybrid host).
const unifiedRoot = "/sys/fs/cgroup"

// Cgroups makes the instances' cgroups of one host agent, all under one
// parent of its own: /forewarm/<host> in each v1 controller (memory, cpu),
// or /forewarm-<host> in the v2 hierarchy. Everything under the parent is
// the agent's, so a restart may kill and remove all of it.
type Cgroups struct {
	version string // "v1" or "v2"
	parent  string // relative to the controller's (or the unified) root
	v1      []cgroup1.Subsystem
}

// NewCgroups finds the host's cgroup mode; it makes nothing (see
// Prepare), so an agent that runs no instances may still reap a previous
// run's cgroups with it.
func NewCgroups(hostID string) (*Cgroups, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return &Cgroups{version: "v2", parent: "/forewarm-" + hostID}, nil
	case cgroups.Legacy, cgroups.Hybrid:
		all, err := cgroup1.Default()
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 controllers: %w", err)
		}
		c := &Cgroups{version: "v1", parent: "/forewarm/" + hostID}
		for _, s := range all {
			if s.Name() == cgroup1.Memory || s.Name() == cgroup1.Cpu {
				c.v1 = append(c.v1, s)
			}
		}
		if !c.hasV1(cgroup1.Memory) {
			return nil, errors.New("cgroup v1 has no memory controller mounted")
		}
		return c, nil
	}
	return nil, errors.New("no cgroup file system is mounted at " + unifiedRoot)
}

// Prepare makes the parent. It fails, saying why, where this process may
// not create cgroups (not root, a read-only /sys/fs/cgroup): instances then
// run without limits.
func (c *Cgroups) Prepare() error {
	if c.version == "v2" {
		if _, err := cgroup2.NewManager(unifiedRoot, c.parent, v2Resources(0, 0)); err != nil {
			return fmt.Errorf("cgroup v2 %s: %w", filepath.Join(unifiedRoot, c.parent), err)
		}
		return nil
	}
	for _, d := range c.v1Dirs(c.parent) {
		var err error
		// Another host's agent may be removing the shared /forewarm folder
		// (empty) just as this one is made: try again.
		for range 5 {
			if err = os.MkdirAll(d, 0o755); !errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("cgroup v1 %s: %w", d, err)
		}
	}
	return nil
}

func (c *Cgroups) hasV1(n cgroup1.Name) bool {
	for _, s := range c.v1 {
		if s.Name() == n {
			return true
		}
	}
	return false
}

// Version is "v1" or "v2".
func (c *Cgroups) Version() string { return c.version }

func (c *Cgroups) hierarchy() ([]cgroup1.Subsystem, error) { return c.v1, nil }

// v1Dirs are the parent's folders, one per controller.
func (c *Cgroups) v1Dirs(rel string) []string {
	var out []string
	for _, s := range c.v1 {
		out = append(out, s.(interface{ Path(string) string }).Path(rel))
	}
	return out
}

// cgroup is one instance's cgroup.
type cgroup struct {
	version string
	rel     string   // path relative to the hierarchy's root
	dirs    []string // its folders (one per v1 controller, one in v2)
	memDir  string   // where the memory files are
	v1      cgroup1.Cgroup
	v2      *cgroup2.Manager
}

// create makes the cgroup of instance id with memory limit memBytes (no
// swap) and a CPU quota of cpuMilli millicores.
func (c *Cgroups) create(id string, memBytes, cpuMilli int64) (*cgroup, error) {
	rel := c.parent + "/" + id
	period := uint64(100_000)
	quota := max(1000, cpuMilli*100) // µs per period; the kernel's floor is 1 ms
	if c.version == "v2" {
		res := v2Resources(memBytes, quota)
		if _, err := os.Stat(filepath.Join(unifiedRoot, c.parent, "memory.swap.max")); err != nil {
			res.Memory.Swap = nil // no swap accounting here: nothing to forbid
		}
		m, err := cgroup2.NewManager(unifiedRoot, rel, res)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(unifiedRoot, rel)
		return &cgroup{version: "v2", rel: rel, dirs: []string{dir}, memDir: dir, v2: m}, nil
	}
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &memBytes},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}
	memRoot := c.v1Dirs("/")[0]
	for _, s := range c.v1 {
		if s.Name() == cgroup1.Memory {
			memRoot = s.(interface{ Path(string) string }).Path("/")
		}
	}
	if _, err := os.Stat(filepath.Join(memRoot, "memory.memsw.limit_in_bytes")); err == nil {
		res.Memory.Swap = &memBytes // memory+swap = memory: no swapping out of the limit
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(rel), res, cgroup1.WithHierarchy(c.hierarchy))
	if err != nil {
		for _, d := range c.v1Dirs(rel) {
			_ = os.Remove(d)
		}
		return nil, err
	}
	return &cgroup{version: "v1", rel: rel, dirs: c.v1Dirs(rel), memDir: filepath.Join(memRoot, rel), v1: cg}, nil
}

func v2Resources(memBytes, quota int64) *cgroup2.Resources {
	r := &cgroup2.Resources{Memory: &cgroup2.Memory{}, CPU: &cgroup2.CPU{}}
	if memBytes > 0 {
		var noSwap int64
		r.Memory.Max, r.Memory.Swap = &memBytes, &noSwap
	}
	if quota > 0 {
		period := uint64(100_000)
		r.CPU.Max = cgroup2.NewCPUMax(&quota, &period)
	}
	return r
}

// add moves pid into the cgroup.
func (g *cgroup) add(pid int) error {
	if g.v2 != nil {
		return g.v2.AddProc(uint64(pid))
	}
	return g.v1.AddProc(uint64(pid))
}

// pids lists every process in the cgroup (in any of its folders).
func (g *cgroup) pids() []int {
	return pidsIn(g.dirs)
}

func pidsIn(dirs []string) []int {
	seen := map[int]bool{}
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	return out
}

// memory is the cgroup's memory use now and the most it has used.
func (g *cgroup) memory() (cur, peak int64, err error) {
	if g.version == "v2" {
		cur, err = ReadBytes(filepath.Join(g.memDir, "memory.current"))
		peak, _ = ReadBytes(filepath.Join(g.memDir, "memory.peak")) // kernels ≥ 5.19
		return cur, max(cur, peak), err
	}
	cur, err = ReadBytes(filepath.Join(g.memDir, "memory.usage_in_bytes"))
	peak, _ = ReadBytes(filepath.Join(g.memDir, "memory.max_usage_in_bytes"))
	return cur, max(cur, peak), err
}

// oomKills is how many processes the kernel killed in the cgroup for
// exceeding its memory limit.
func (g *cgroup) oomKills() int64 {
	file := "memory.oom_control"
	if g.version == "v2" {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(g.memDir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// destroy kills whatever still runs in the cgroup and removes it.
func (g *cgroup) destroy() error {
	return destroyDirs(g.dirs)
}

// destroyDirs SIGKILLs every process in the cgroup folders, waits for them
// to leave, and removes the folders (children first).
func destroyDirs(dirs []string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsIn(dirs)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still holds processes %v after SIGKILL", dirs[0], pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var errs []error
	for _, d := range dirs {
		if err := rmdirRetry(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup folder: its own files are not real, so
// rmdir alone does it; the kernel may answer EBUSY for a moment after the
// last process left.
func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// reap removes every cgroup under the parent (a previous run's), killing
// what runs in them; it returns their names.
func (c *Cgroups) reap() ([]string, error) {
	var parents []string
	if c.version == "v2" {
		parents = []string{filepath.Join(unifiedRoot, c.parent)}
	} else {
		parents = c.v1Dirs(c.parent)
	}
	names := map[string][]string{}
	var order []string
	for _, p := range parents {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			if _, ok := names[e.Name()]; !ok {
				order = append(order, e.Name())
			}
			names[e.Name()] = append(names[e.Name()], filepath.Join(p, e.Name()))
		}
	}
	var errs []error
	for _, n := range order {
		if err := destroyTree(names[n]); err != nil {
			errs = append(errs, err)
		}
	}
	return order, errors.Join(errs...)
}

// destroyTree destroys cgroup folders and any sub-cgroups an instance made
// in them (deepest first).
func destroyTree(dirs []string) error {
	var all []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
	}
	// Kill everything first (any depth), then remove deepest first.
	for i := len(all) - 1; i >= 0; i-- {
		for _, pid := range pidsIn([]string{all[i]}) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	var errs []error
	for i := len(all) - 1; i >= 0; i-- {
		if err := destroyDirs([]string{all[i]}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close removes the agent's parent cgroups when they are empty (and the
// shared /forewarm folder of v1 when no other host's is left).
func (c *Cgroups) Close() {
	if c.version == "v2" {
		_ = unix.Rmdir(filepath.Join(unifiedRoot, c.parent))
		return
	}
	for _, d := range c.v1Dirs(c.parent) {
		_ = unix.Rmdir(d)
		_ = unix.Rmdir(filepath.Dir(d))
	}
}

// inCgroup says whether pid's cgroup (of the memory controller, or v2's)
// is under rel.
func (c *Cgroups) holds(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if c.version == "v2" && parts[0] != "0" {
			continue
		}
		if c.version == "v1" && !strings.Contains(","+parts[1]+",", ",memory,") {
			continue
		}
		if strings.HasPrefix(parts[2], c.parent+"/") {
			return true
		}
	}
	return false
}

// ReadBytes reads a cgroup file holding a byte count, or "max" (-1); an
// error names the file.
func ReadBytes(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a byte count", path, s)
	}
	return n, nil
}
