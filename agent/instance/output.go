package instance

import (
	"io"
	"os"
	"slices"
	"strings"
	"sync"
)

// MaxLogBytes caps an instance's log file; what it writes beyond is
// dropped (and counted), so a chatty or hostile instance cannot fill the
// disk.
const MaxLogBytes = 4 << 20

// headBytes and tailBytes are how much of the first and latest output is
// kept for error messages: the first lines usually say what went wrong
// (a usage error, a panic), the last ones what happened at the end.
const (
	headBytes = 1 << 10
	tailBytes = 1 << 10
)

// output copies an instance's stdout and stderr (one pipe) to its log
// file, up to MaxLogBytes, and keeps the last bytes for error messages.
type output struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	dropped int64
	total   int64
	head    []byte
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
	o.total += int64(len(p))
	if room := headBytes - len(o.head); room > 0 {
		o.head = append(o.head, p[:min(room, len(p))]...)
	}
	o.tail = append(o.tail, p...)
	if len(o.tail) > tailBytes {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailBytes:]...)
	}
}

// text is the output for a message: all of it when short, else its
// beginning and its end; lines joined with " | ", control characters made
// visible; "" when there was none.
func (o *output) text() string {
	o.mu.Lock()
	var s string
	if o.total <= headBytes+tailBytes {
		s = string(o.head) + string(o.tail[max(0, len(o.tail)-int(o.total-int64(len(o.head)))):])
	} else {
		s = string(o.head) + "\n…\n" + string(o.tail)
	}
	o.mu.Unlock()
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range ls {
		ls[i] = strings.TrimSpace(ls[i])
	}
	s = strings.Join(slices.DeleteFunc(ls, func(l string) bool { return l == "" }), " | ")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
