package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/forewarm/forewarm/agent/instance"
)

// CgroupRoot is where the agent finds its own cgroup's memory files: in a
// container (cgroup namespace on v2, the runtime's mount on v1) they are
// the container's.
const CgroupRoot = "/sys/fs/cgroup"

// unlimited: v1 writes "no limit" as its largest page count
// (9223372036854771712 with 4 KiB pages); no machine has this much.
const unlimited = 1 << 60

// CgroupMemory is the memory limit and use of the agent's own cgroup.
type CgroupMemory struct {
	Version int   // 2 or 1; 0: no memory controller found
	Limit   int64 // bytes; 0: no limit
	// Usage is the cgroup's usage less its inactive page cache (the
	// kubelet's working set: what an OOM kill or eviction counts).
	Usage int64
}

// ReadCgroupMemory reads the memory files under root: cgroup v2's
// memory.max and memory.current, else v1's memory/memory.limit_in_bytes
// and memory.usage_in_bytes. "max" or a huge value is no limit.
func ReadCgroupMemory(root string) (CgroupMemory, error) {
	if cg, err := readCgroupMemory(2, root, "memory.max", "memory.current", "memory.stat", "inactive_file"); !errors.Is(err, fs.ErrNotExist) {
		return cg, err
	}
	v1 := filepath.Join(root, "memory")
	cg, err := readCgroupMemory(1, v1, "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file")
	if errors.Is(err, fs.ErrNotExist) {
		return CgroupMemory{}, nil // no memory controller: no limit
	}
	return cg, err
}

func readCgroupMemory(version int, dir, limitFile, usageFile, statFile, inactiveKey string) (CgroupMemory, error) {
	limit, err := instance.ReadBytes(filepath.Join(dir, limitFile))
	if err != nil {
		return CgroupMemory{}, err
	}
	cg := CgroupMemory{Version: version}
	if limit <= 0 || limit >= unlimited {
		return cg, nil
	}
	cg.Limit = limit
	if cg.Usage, err = instance.ReadBytes(filepath.Join(dir, usageFile)); err != nil {
		return cg, err
	}
	// Page cache the kernel drops before it OOM-kills is not in use; a
	// missing stat file leaves the usage as is.
	if b, err := os.ReadFile(filepath.Join(dir, statFile)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, _ := strings.Cut(sc.Text(), " "); k == inactiveKey {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					cg.Usage = max(cg.Usage-n, 0)
				}
			}
		}
	}
	return cg, nil
}

// CapacityMB is the memory the agent may hand out in its cgroup: the
// limit less overheadMB for the agent itself (its heap, buffers, page
// cache of lease files).
func (cg CgroupMemory) CapacityMB(overheadMB int64) (int64, error) {
	if cg.Limit == 0 {
		return 0, errors.New("the agent's cgroup has no memory limit: give the capacity in MB instead")
	}
	limitMB := cg.Limit >> 20
	if overheadMB < 0 || overheadMB >= limitMB {
		return 0, fmt.Errorf("memory overhead %d MB is outside 0..%d (the cgroup limit is %d MB)", overheadMB, limitMB-1, limitMB)
	}
	return limitMB - overheadMB, nil
}

// limitTo narrows the node's memory (MemTotal, MemAvailable) to the
// cgroup's: total the lower of the two, available what the cgroup has
// left when its limit is the lower.
func (cg CgroupMemory) limitTo(totalMB, availMB float64) (float64, float64) {
	limitMB := mbOf(cg.Limit)
	if cg.Limit == 0 || limitMB >= totalMB {
		return totalMB, availMB
	}
	return limitMB, max(min(availMB, limitMB-mbOf(cg.Usage)), 0)
}
