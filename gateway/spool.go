package gateway

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forewarm/forewarm/store"
)

// The spool (Config.SpoolDir) keeps the arrival counts through a process
// kill. Every counted request is appended to the run's current segment
// file, one small record written with one unbuffered write(2) under the
// lock that guards the in-memory counts, before the request is forwarded;
// the cut of a bin into its batch (with the batch's name) and the store's
// acknowledgement of the batch are appended too. A segment is removed
// once every bin counted in it (and in every older segment) is written.
//
// A run holds an exclusive flock(2) on <run>.lock for its life; the kernel
// drops it when the process dies, however it dies. At start a gateway
// replays the segments of every run whose lock it can take: it rebuilds
// their per-bin counts and writes each bin not acknowledged as the batch
// the dead run wrote or would have written (same router, same name, same
// rows), so a batch the dead run had written but not yet marked counts
// once. A kill therefore loses nothing; a machine crash can lose what the
// kernel had not yet written to disk (the spool does not fsync per
// request). A record cut short by a kill mid-write is skipped and logged.
//
// Files: <run>.lock, and <run>.<seq>.spool starting with a header record.
// Record: CRC-32 (Castagnoli) of the payload, payload length (uint16),
// payload; a payload is a kind byte and its fields.
const (
	recHeader  = 'H' // JSON spoolHeader
	recCount   = 'C' // varint bin (Unix ns), app: one request
	recCut     = 'K' // varint bin, batch name: the bin's batch, about to be written
	recWritten = 'W' // varint bin: the store acknowledged the bin's batch
)

// Segments are rotated at this size, and sooner (at an acknowledgement)
// from segmentAfterAck on when everything in them is written, so a
// written segment is removed soon.
const (
	segmentMax      = 16 << 20
	segmentAfterAck = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type spoolHeader struct {
	Router string `json:"router"`
	Run    string `json:"run"`
	BinNS  int64  `json:"bin_ns"`
	Seq    int    `json:"seq"`
}

// spool is one run's writer. Its methods are called under arrivals.mu.
type spool struct {
	dir, router, run string
	bin              time.Duration
	log              *slog.Logger
	lock             *os.File
	f                *os.File
	size             int64
	segs             []*segment // oldest first; the last is f's
	pay, rec         []byte     // reused: no allocation per record
	failing          bool       // the last write failed (logged once per failure spell)
}

// segment is one file and the bins counted in it not yet acknowledged.
type segment struct {
	path    string
	seq     int
	pending map[int64]bool
}

// openSpool creates dir if needed, takes the run's lock and opens its
// first segment; an unwritable folder is an error naming it.
func openSpool(dir, router, run string, bin time.Duration, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool folder %s: %w", dir, err)
	}
	lock, err := lockRun(dir, run, true)
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, router: router, run: run, bin: bin, log: log, lock: lock}
	if err := s.rotate(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// lockRun opens (or, when create, creates exclusively) <run>.lock and
// takes its flock without waiting; errWouldBlock: a live run holds it.
func lockRun(dir, run string, create bool) (*os.File, error) {
	path := filepath.Join(dir, run+".lock")
	flags := os.O_RDWR | os.O_CREATE
	if create {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errWouldBlock
		}
		return nil, fmt.Errorf("spool lock %s: %w", path, err)
	}
	return f, nil
}

var errWouldBlock = errors.New("spool run locked by a live gateway")

func segmentPath(dir, run string, seq int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%06d.spool", run, seq))
}

// rotate closes the current segment and starts the next one.
func (s *spool) rotate() error {
	seq := 0
	if n := len(s.segs); n > 0 {
		seq = s.segs[n-1].seq + 1
	}
	path := segmentPath(s.dir, s.run, seq)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool folder %s: %w", s.dir, err)
	}
	h, _ := json.Marshal(spoolHeader{Router: s.router, Run: s.run, BinNS: int64(s.bin), Seq: seq})
	if _, err := f.Write(frame(nil, append([]byte{recHeader}, h...))); err != nil {
		f.Close()
		_ = os.Remove(path) // its sequence number is tried again
		return fmt.Errorf("spool segment %s: %w", path, err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.size = f, 0
	s.segs = append(s.segs, &segment{path: path, seq: seq, pending: map[int64]bool{}})
	s.removeWritten()
	return nil
}

// frame appends the framed record of payload to dst.
func frame(dst, payload []byte) []byte {
	var h [6]byte
	binary.LittleEndian.PutUint32(h[:4], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint16(h[4:], uint16(len(payload)))
	return append(append(dst, h[:]...), payload...)
}

// append writes one record in one write(2). After a failed write the
// next record goes to a new segment: a record written short (a full disk)
// is then always its segment's last, which replay skips.
func (s *spool) append(kind byte, bin int64, text string) error {
	if s.failing {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	s.pay = append(s.pay[:0], kind)
	s.pay = binary.AppendVarint(s.pay, bin)
	s.pay = append(s.pay, text...)
	if len(s.pay) > 0xffff {
		return fmt.Errorf("spool record of %d bytes", len(s.pay))
	}
	s.rec = frame(s.rec[:0], s.pay)
	n, err := s.f.Write(s.rec)
	s.size += int64(n)
	s.report(err)
	return err
}

// report logs the first failed write of a spell and the recovery: a
// request is still served when its record cannot be written (a full disk
// must not stop the request path), but such counts survive no kill.
func (s *spool) report(err error) {
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.log.Error("spool write failed: counts are kept in memory only until it works again", "file", s.f.Name(), "err", err)
	case err == nil && s.failing:
		s.failing = false
		s.log.Info("spool writes work again", "file", s.f.Name())
	}
}

func (s *spool) count(bin int64, app string) {
	if s.append(recCount, bin, app) == nil {
		s.segs[len(s.segs)-1].pending[bin] = true
	}
	if s.size >= segmentMax {
		if err := s.rotate(); err != nil {
			s.log.Error("spool rotation", "err", err)
		}
	}
}

func (s *spool) cut(bin int64, batch string) { _ = s.append(recCut, bin, batch) }

// written marks bin's batch acknowledged and removes the segments that
// hold nothing unwritten any more.
func (s *spool) written(bin int64) {
	_ = s.append(recWritten, bin, "")
	for _, g := range s.segs {
		delete(g.pending, bin)
	}
	if cur := s.segs[len(s.segs)-1]; len(cur.pending) == 0 && s.size >= segmentAfterAck {
		if err := s.rotate(); err != nil {
			s.log.Error("spool rotation", "err", err)
		}
	}
	s.removeWritten()
}

// removeWritten removes the oldest closed segments whose bins are all
// acknowledged, oldest first and stopping at the first that is not: an
// acknowledgement is always in the segment of the bin's last count or a
// later one, so no segment left behind lacks the mark of a bin it counts.
func (s *spool) removeWritten() {
	for len(s.segs) > 1 && len(s.segs[0].pending) == 0 {
		if err := os.Remove(s.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("spool segment not removed", "file", s.segs[0].path, "err", err)
			return
		}
		s.segs = s.segs[1:]
	}
}

// close ends the run; with done (every batch acknowledged) its files are
// removed, otherwise they stay for the next start to replay. A bin not
// acknowledged (a batch dropped from memory while the store was down)
// keeps them too.
func (s *spool) close(done bool) {
	for _, g := range s.segs {
		done = done && len(g.pending) == 0
	}
	s.f.Close()
	if done {
		for _, g := range s.segs {
			_ = os.Remove(g.path)
		}
		_ = os.Remove(filepath.Join(s.dir, s.run+".lock"))
	}
	s.lock.Close()
}

// leftRun is a dead run found in the spool folder: its batches still to
// write, its files and its lock (held while it is replayed).
type leftRun struct {
	run     string
	files   []string
	lock    *os.File
	batches []store.ArrivalBatch
}

// finish removes a replayed run's files once its batches are written.
func (l *leftRun) finish() {
	for _, f := range l.files {
		_ = os.Remove(f)
	}
	_ = os.Remove(l.lock.Name())
	l.lock.Close()
}

// leftovers finds the runs of dir other than own that no live gateway
// holds, and rebuilds their batches.
func leftovers(dir, own string, log *slog.Logger) ([]*leftRun, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool folder %s: %w", dir, err)
	}
	segs := map[string][]string{}
	for _, e := range ents {
		name := e.Name()
		if run, ok := strings.CutSuffix(name, ".lock"); ok && run != own {
			if _, seen := segs[run]; !seen {
				segs[run] = nil // a lock alone: removed once taken
			}
		}
		if rest, ok := strings.CutSuffix(name, ".spool"); ok {
			if i := strings.LastIndexByte(rest, '.'); i > 0 && rest[:i] != own {
				segs[rest[:i]] = append(segs[rest[:i]], filepath.Join(dir, name))
			}
		}
	}
	runs := make([]string, 0, len(segs))
	for r := range segs {
		runs = append(runs, r)
	}
	sort.Strings(runs)
	var out []*leftRun
	for _, run := range runs {
		lock, err := lockRun(dir, run, false)
		if errors.Is(err, errWouldBlock) {
			continue // a live gateway's run
		}
		if err != nil {
			return out, err
		}
		files := segs[run]
		sort.Strings(files) // the sequence number is zero-padded
		l := &leftRun{run: run, files: files, lock: lock}
		l.batches = replayRun(files, log)
		log.Info("spool: replaying a previous run", "run", run, "segments", len(files), "batches", len(l.batches))
		out = append(out, l)
	}
	return out, nil
}

// binState is what a run's records say about one bin.
type binState struct {
	counts  map[string]uint64
	batch   string // the name it was cut under, if it was
	written bool
}

// replayRun reads a run's segments in order and returns the batches of
// its bins not acknowledged, oldest first, named as the run named them.
func replayRun(files []string, log *slog.Logger) []store.ArrivalBatch {
	var h spoolHeader
	bins := map[int64]*binState{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			log.Error("spool: segment unreadable, its counts are lost", "file", path, "err", err)
			continue
		}
		readSegment(path, data, &h, bins, log)
	}
	if h.Router == "" || h.Run == "" {
		if len(bins) > 0 {
			log.Error("spool: no readable header, the run's counts are lost", "files", files)
		}
		return nil
	}
	var order []int64
	for b, st := range bins {
		if !st.written && len(st.counts) > 0 {
			order = append(order, b)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	out := make([]store.ArrivalBatch, 0, len(order))
	for _, b := range order {
		st := bins[b]
		name := st.batch
		if name == "" {
			name = batchName(h.Run, b, false)
		}
		out = append(out, store.ArrivalBatch{Router: h.Router, Batch: name, Rows: rowsOf(b, st.counts)})
	}
	return out
}

// readSegment applies one segment's records to bins; it stops at the
// first record cut short or damaged, logging it.
func readSegment(path string, data []byte, h *spoolHeader, bins map[int64]*binState, log *slog.Logger) {
	at := func(b int64) *binState {
		st := bins[b]
		if st == nil {
			st = &binState{counts: map[string]uint64{}}
			bins[b] = st
		}
		return st
	}
	for off := 0; off < len(data); {
		p, n, err := nextRecord(data[off:])
		if err != nil {
			what := "a partial trailing record (a kill mid-write) skipped"
			if off+n < len(data) {
				what = "a damaged record: the rest of the segment skipped"
			}
			log.Warn("spool: "+what, "file", path, "offset", off, "bytes_left", len(data)-off, "err", err)
			return
		}
		off += n
		if p[0] == recHeader {
			if err := json.Unmarshal(p[1:], h); err != nil {
				log.Warn("spool: bad header", "file", path, "err", err)
			}
			continue
		}
		bin, k := binary.Varint(p[1:])
		if k <= 0 {
			log.Warn("spool: bad record", "file", path, "offset", off-n)
			continue
		}
		text := string(p[1+k:])
		switch p[0] {
		case recCount:
			at(bin).counts[text]++
		case recCut:
			at(bin).batch = text
		case recWritten:
			at(bin).written = true
		}
	}
}

// nextRecord returns the first record's payload and its framed length; n
// is what it covers even on error (the rest of data for a short one).
func nextRecord(data []byte) (payload []byte, n int, err error) {
	if len(data) < 6 {
		return nil, len(data), io.ErrUnexpectedEOF
	}
	size := int(binary.LittleEndian.Uint16(data[4:6]))
	if len(data) < 6+size {
		return nil, len(data), io.ErrUnexpectedEOF
	}
	p := data[6 : 6+size]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(data[:4]) || size == 0 {
		return nil, 6 + size, errors.New("checksum mismatch")
	}
	return p, 6 + size, nil
}

// batchName is the name of a bin's batch in a run: the open bin at
// shutdown is its own batch, since the next run counts the rest of it.
func batchName(run string, bin int64, final bool) string {
	name := run + "/" + strconv.FormatInt(bin, 10)
	if final {
		name += "/final"
	}
	return name
}

func rowsOf(bin int64, counts map[string]uint64) []store.Arrival {
	rows := make([]store.Arrival, 0, len(counts))
	for app, n := range counts {
		rows = append(rows, store.Arrival{App: app, Bin: time.Unix(0, bin).UTC(), Requests: n})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].App < rows[j].App })
	return rows
}
