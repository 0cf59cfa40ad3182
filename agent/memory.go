package agent

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = os.Getpagesize()

// region is anonymous memory outside the Go heap: mmap'd, every page
// written once so the kernel really backs it, and munmap'd on free so the
// resident set shrinks at once instead of whenever the GC and scavenger
// get round to it.
type region struct {
	mem []byte
}

// allocRegion maps size bytes (rounded up to whole pages) and touches every
// page. size 0 gives an empty region.
func allocRegion(size int64) (*region, error) {
	if size <= 0 {
		return &region{}, nil
	}
	n := roundUp(size, int64(pageSize))
	mem, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	r := &region{mem: mem}
	r.touch(1)
	return r, nil
}

// touch writes one byte in every page (a non-zero value, so the kernel
// cannot keep sharing its zero page) and returns how many pages it wrote.
func (r *region) touch(v byte) int {
	if v == 0 {
		v = 1
	}
	pages := 0
	for i := 0; i < len(r.mem); i += pageSize {
		r.mem[i] = v
		pages++
	}
	return pages
}

// residentBytes asks the kernel (mincore) how much of the region is
// resident in RAM.
func (r *region) residentBytes() (int64, error) {
	if len(r.mem) == 0 {
		return 0, nil
	}
	pages := (len(r.mem) + pageSize - 1) / pageSize
	vec := make([]byte, pages)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE,
		uintptr(unsafe.Pointer(&r.mem[0])), uintptr(len(r.mem)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return 0, fmt.Errorf("mincore: %w", errno)
	}
	var resident int64
	for _, b := range vec {
		if b&1 != 0 {
			resident++
		}
	}
	return resident * int64(pageSize), nil
}

func (r *region) size() int64 { return int64(len(r.mem)) }

// free unmaps the region; it is safe to call twice.
func (r *region) free() error {
	if r == nil || r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	if err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// mbToBytes converts a size in MiB to bytes, rounding up to a whole page.
func mbToBytes(mb float64) int64 {
	if mb <= 0 {
		return 0
	}
	return roundUp(int64(mb*(1<<20)+0.5), int64(pageSize))
}
