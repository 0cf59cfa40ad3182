package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

// Files the agent creates in its data folder. Start-up removes whatever
// matches ownFile (a previous run's leftovers) and nothing else, so the
// folder may be shared with other things without risk.
const (
	leaseFilePrefix = "fw-lease-"
	coldFilePrefix  = "fw-cold-"
	probeFilePrefix = "fw-probe-"
	fileSuffix      = ".dat"
)

var ownFile = regexp.MustCompile(`^fw-(lease|cold|probe)-[A-Za-z0-9._-]+\.dat$`)

// storage is a pre-allocated file.
type storage struct {
	path string
	f    *os.File
	size int64
}

// allocStorage creates path and pre-allocates size bytes: fallocate(2)
// gives real blocks without writing them; where the file system does not
// support it, zeros are written instead.
func allocStorage(path string, size int64) (*storage, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create storage file: %w", err)
	}
	s := &storage{path: path, f: f, size: size}
	if size > 0 {
		if err := preallocate(f, size); err != nil {
			_ = s.free()
			return nil, fmt.Errorf("pre-allocate %d bytes in %s: %w", size, path, err)
		}
	}
	return s, nil
}

func preallocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("fallocate: %w", err)
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("write zeros: %w", err)
		}
	}
	return f.Sync()
}

// allocatedBytes is the space the file system really holds for the file
// (st_blocks), which for a sparse file would be far below its size.
func (s *storage) allocatedBytes() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("fstat %s: %w", s.path, err)
	}
	return st.Blocks * 512, nil
}

// free closes and removes the file; it is safe to call twice.
func (s *storage) free() error {
	if s == nil || s.f == nil {
		return nil
	}
	errClose := s.f.Close()
	s.f = nil
	errRemove := os.Remove(s.path)
	if errors.Is(errRemove, os.ErrNotExist) {
		errRemove = nil
	}
	return errors.Join(errClose, errRemove)
}

const ioChunk = 64 << 10

// ioResult says what a sample of file I/O did.
type ioResult struct {
	readBytes, writeBytes int64
}

// sampleIO reads and writes sampleBytes of the file in 64 KiB chunks spread
// evenly over it, readRatio of the chunks being reads. Writes go to the
// page cache (no fsync): that is what a request's writes cost.
func (s *storage) sampleIO(sampleBytes int64, readRatio float64, buf []byte) (ioResult, error) {
	var res ioResult
	if s == nil || s.f == nil || s.size < ioChunk || sampleBytes <= 0 {
		return res, nil
	}
	sampleBytes = min(sampleBytes, s.size)
	chunks := max(sampleBytes/ioChunk, 1)
	slots := s.size / ioChunk
	stride := max(slots/chunks, 1)
	reads := int64(float64(chunks)*readRatio + 0.5)
	buf = buf[:ioChunk]
	for i := int64(0); i < chunks; i++ {
		off := (i * stride % slots) * ioChunk
		// Interleave reads and writes in the asked proportion.
		if (i+1)*reads/chunks > i*reads/chunks {
			if _, err := s.f.ReadAt(buf, off); err != nil {
				return res, fmt.Errorf("read %s at %d: %w", s.path, off, err)
			}
			res.readBytes += ioChunk
		} else {
			buf[0]++
			if _, err := s.f.WriteAt(buf, off); err != nil {
				return res, fmt.Errorf("write %s at %d: %w", s.path, off, err)
			}
			res.writeBytes += ioChunk
		}
	}
	return res, nil
}

func leaseFile(dir, prepID string) string {
	return filepath.Join(dir, leaseFilePrefix+prepID+fileSuffix)
}

// coldFile names a cold request's file; the random part keeps two
// requests with the same ID apart.
func coldFile(dir, requestID string) string {
	return filepath.Join(dir, coldFilePrefix+requestID+"-"+randomHex(4)+fileSuffix)
}

// probeFile names a fresh I/O probe file.
func probeFile(dir string) string {
	return filepath.Join(dir, probeFilePrefix+randomHex(8)+fileSuffix)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// removeLeftovers deletes the agent's own files from a previous run. Only
// regular files matching ownFile are touched.
func removeLeftovers(dir string, log *slog.Logger) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read data folder %s: %w", dir, err)
	}
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !ownFile.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("remove leftover %s: %w", p, err)
		}
		log.Info("removed leftover file from a previous run", "path", p)
		removed++
	}
	return removed, nil
}
