package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultDataDir is where an agent keeps its lease files when it is told
// nothing else: a folder of its own outside the shared temporary folder,
// $XDG_STATE_HOME/forewarm-agent/<host> or ~/.local/state/forewarm-agent/<host>,
// else /var/lib/forewarm-agent/<host>.
func DefaultDataDir(hostID string) string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "forewarm-agent", hostID)
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) && h != "/" {
		return filepath.Join(h, ".local", "state", "forewarm-agent", hostID)
	}
	return filepath.Join("/var/lib/forewarm-agent", hostID)
}

// prepareDataDir creates dir (0700, parents too) if missing, and refuses a
// folder someone else could have planted or can write into: the path
// itself (a symbolic link included) and the folder it leads to must belong
// to this process's user, and the folder must not be writable by group or
// others. Lease files are then created exclusively and never through a
// symbolic link.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	uid := uint32(os.Geteuid())
	li, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if owner := ownerOf(li); owner != uid {
		return fmt.Errorf("data folder %s belongs to uid %d, not to this agent's uid %d: refusing a folder someone else created; remove it or give --data-dir", dir, owner, uid)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data folder %s is not a folder", dir)
	}
	if owner := ownerOf(fi); owner != uid {
		return fmt.Errorf("data folder %s leads to a folder of uid %d, not this agent's uid %d: refusing it", dir, owner, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("data folder %s is writable by group or others (mode %04o): chmod 700 it", dir, perm)
	}
	return nil
}

func ownerOf(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}
