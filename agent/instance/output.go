package instance

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
)

// MaxLogBytes caps an instance's log file; what it writes beyond is
// dropped (and counted), so a chatty or hostile instance cannot fill the
// disk.
const MaxLogBytes = 4 << 20

// tailBytes is how much of the latest output is kept for error messages.
const tailBytes = 2 << 10

// output copies an instance's stdout and stderr (one pipe) to its log
// file, up to MaxLogBytes, and keeps the last bytes for error messages.
type output struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	dropped int64
	tail    []byte
	done    chan struct{}
}

func newOutput(f *os.File) *output {
	return &output{f: f, done: make(chan struct{})}
}

// copyFrom drains r until EOF (every writer closed its end).
func (o *output) copyFrom(r io.ReadCloser) {
	defer close(o.done)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			o.write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.f.Close()
}

func (o *output) write(p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := MaxLogBytes - o.written; room > 0 {
		n := min(int64(len(p)), room)
		w, _ := o.f.Write(p[:n])
		o.written += int64(w)
		o.dropped += int64(len(p)) - int64(w)
	} else {
		o.dropped += int64(len(p))
	}
	o.tail = append(o.tail, p...)
	if len(o.tail) > tailBytes {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailBytes:]...)
	}
}

// last is the latest output: its last lines, at most tailBytes, with
// control characters made visible; "" when there was none.
func (o *output) last(lines int) string {
	o.mu.Lock()
	t := bytes.TrimRight(o.tail, "\n")
	o.mu.Unlock()
	ls := strings.Split(string(t), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	s := strings.Join(ls, " | ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
