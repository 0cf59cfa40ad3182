package instance

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forewarm/forewarm/agent/api"
)

// Reap removes what a previous run of this host's agent left: every cgroup
// under its parent (killing what runs in it) and every instance folder in
// dataDir. A process is killed only when it is in the agent's cgroup, or
// when the pid file names it (same start time) and its environment carries
// the instance's marks (FOREWARM_INSTANCE and FOREWARM_SCRATCH of that
// folder): never an unrelated process that happens to reuse a pid. cg may
// be nil (no cgroups here). Run it before starting any instance.
func Reap(dataDir string, cg *Cgroups, log *slog.Logger) error {
	var errs []error
	if cg != nil {
		names, err := cg.reap()
		for _, n := range names {
			log.Info("removed a previous run's instance cgroup", "cgroup", cg.parent+"/"+n)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read data folder %s: %w", dataDir, err))...)
	}
	left := map[string]string{} // id → folder
	for _, e := range entries {
		id, ok := strings.CutPrefix(e.Name(), FolderPrefix)
		if !ok || !e.IsDir() || api.CheckID("instance", id) != nil {
			continue
		}
		left[id] = filepath.Join(dataDir, e.Name())
	}
	if len(left) == 0 {
		return errors.Join(errs...)
	}
	killed := killLeftovers(left, cg)
	for id, folder := range left {
		if err := os.RemoveAll(folder); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover instance folder %s: %w", folder, err))
			continue
		}
		log.Info("removed a previous run's instance folder", "path", folder, "killed", killed[id])
	}
	return errors.Join(errs...)
}

// killLeftovers SIGKILLs the processes of the leftover instances and
// waits for them to end; it returns the pids killed per instance.
func killLeftovers(left map[string]string, cg *Cgroups) map[string][]int {
	killed := map[string][]int{}
	for id, folder := range left {
		pid, start, ok := readPidFile(folder)
		if !ok {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.startTime != start {
			continue // gone, or another process has its pid now
		}
		if !environHas(pid, marks(folder, id)...) && (cg == nil || !cg.holds(pid)) {
			continue
		}
		if st.pgrp == pid {
			_ = unix.Kill(-pid, unix.SIGKILL)
		} else {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		killed[id] = append(killed[id], pid)
	}
	// Children that left the group (setsid) still carry the marks.
	byMark := map[string]string{}
	for id, folder := range left {
		byMark["FOREWARM_INSTANCE="+id] = "FOREWARM_SCRATCH=" + ScratchDir(folder)
	}
	for pid, id := range scanMarked(byMark) {
		_ = unix.Kill(pid, unix.SIGKILL)
		killed[id] = append(killed[id], pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pids := range killed {
		for _, pid := range pids {
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return killed
}

// scanMarked finds the processes whose environment holds one of the
// instance marks (key) together with its scratch mark (value); it returns
// pid → instance ID.
func scanMarked(byMark map[string]string) map[int]string {
	out := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		var inst, scratch string
		for _, kv := range bytes.Split(b, []byte{0}) {
			s := string(kv)
			switch {
			case strings.HasPrefix(s, "FOREWARM_INSTANCE="):
				inst = s
			case strings.HasPrefix(s, "FOREWARM_SCRATCH="):
				scratch = s
			}
		}
		if want, ok := byMark[inst]; ok && want == scratch && alive(pid) {
			out[pid] = strings.TrimPrefix(inst, "FOREWARM_INSTANCE=")
		}
	}
	return out
}

func readPidFile(folder string) (pid int, start uint64, ok bool) {
	b, err := os.ReadFile(filepath.Join(folder, pidFile))
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return 0, 0, false
	}
	return pid, start, true
}
