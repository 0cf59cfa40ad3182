package instance

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is what the agent reads of /proc/<pid>/stat.
type procStat struct {
	state     byte
	pgrp      int
	startTime uint64 // clock ticks after boot: with the pid, names a process for good
	rssPages  int64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold anything; fields
	// count from after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22
	// (starttime), f[21] field 24 (rss).
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var s procStat
	s.state = f[0][0]
	s.pgrp, _ = strconv.Atoi(f[2])
	s.startTime, _ = strconv.ParseUint(f[19], 10, 64)
	s.rssPages, _ = strconv.ParseInt(f[21], 10, 64)
	return s, nil
}

// groupRSS adds up the resident set of every process in process group
// pgid: an instance's memory where it has no cgroup.
func groupRSS(pgid int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var pages int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil && s.pgrp == pgid {
			pages += s.rssPages
		}
	}
	return pages * int64(os.Getpagesize())
}

// environHas says whether every one of vars ("K=V") is in pid's
// environment.
func environHas(pid int, vars ...string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		have[string(kv)] = true
	}
	for _, v := range vars {
		if !have[v] {
			return false
		}
	}
	return true
}

// pidsWithEnv lists the processes whose environment holds every one of
// vars.
func pidsWithEnv(vars ...string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if environHas(pid, vars...) {
			out = append(out, pid)
		}
	}
	return out
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	s, err := readStat(pid)
	return err == nil && s.state != 'Z' && s.state != 'X'
}
