package trace

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// EventsOptions tunes ReadEvents.
type EventsOptions struct {
	Start time.Time     // start of bin 0; zero = the first event, floored to the bin
	Bin   time.Duration // bin width; zero = 1 minute
}

// MaxCells bounds apps × bins of a trace held in memory (1 GiB of counts),
// so a stray timestamp years away fails clearly instead of exhausting
// memory.
const MaxCells = 1 << 28

// ReadEvents reads a CSV of single requests with a header naming the
// columns: timestamp and app_id are required; memory_mb, read_ratio and
// duration_ms are optional, per row, and may be left empty. Timestamps are
// RFC 3339 or Unix seconds (fractions allowed), in any order. An app's
// profile is the mean of the values its rows give.
//
// The whole input is validated; any problem returns an *InputError and no
// trace.
func ReadEvents(path string, opt EventsOptions) (*Trace, error) {
	if opt.Bin == 0 {
		opt.Bin = time.Minute
	}
	if opt.Bin < 0 {
		return nil, fmt.Errorf("bin width %v: must be positive", opt.Bin)
	}
	c, err := openCSV(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cols := map[string]int{"timestamp": -1, "app_id": -1, "memory_mb": -1, "read_ratio": -1, "duration_ms": -1}
	for i, h := range c.header {
		name := strings.ToLower(h)
		if _, ok := cols[name]; !ok {
			return nil, inputErr(path, 1, i+1, h, "unexpected column for the events format (expected timestamp, app_id[, memory_mb, read_ratio, duration_ms])")
		}
		cols[name] = i
	}
	if cols["timestamp"] < 0 || cols["app_id"] < 0 {
		return nil, inputErr(path, 1, 0, "", "header must name the columns timestamp and app_id (got %s)", strings.Join(c.header, ","))
	}

	type profile struct{ mem, rr, dur, nMem, nRR, nDur float64 }
	var (
		index    = map[string]int{} // app ID -> position in ids
		ids      []string
		profiles []profile
		evApp    []int32
		evTime   []int64 // Unix nanoseconds
		evLine   []int32
		first    = int64(math.MaxInt64)
		last     = int64(math.MinInt64)
	)
	for {
		rec, line, err := c.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		ts, err := parseTimestamp(c, rec, line, cols["timestamp"])
		if err != nil {
			return nil, err
		}
		if !opt.Start.IsZero() && ts < opt.Start.UnixNano() {
			return nil, c.fieldErr(line, cols["timestamp"], "event at %s is before the start %s", time.Unix(0, ts).UTC().Format(time.RFC3339), opt.Start.UTC().Format(time.RFC3339))
		}
		id := strings.TrimSpace(rec[cols["app_id"]])
		if id == "" {
			return nil, c.fieldErr(line, cols["app_id"], "empty app_id")
		}
		ai, ok := index[id]
		if !ok {
			ai = len(ids)
			index[id] = ai
			ids = append(ids, id)
			profiles = append(profiles, profile{})
		}
		p := &profiles[ai]
		if i := cols["memory_mb"]; i >= 0 {
			v, ok, err := c.number(rec, line, i, "memory in MB")
			if err != nil {
				return nil, err
			}
			if ok {
				p.mem, p.nMem = p.mem+v, p.nMem+1
			}
		}
		if i := cols["read_ratio"]; i >= 0 {
			v, ok, err := c.number(rec, line, i, "a read ratio between 0 and 1")
			if err != nil {
				return nil, err
			}
			if v > 1 {
				return nil, c.fieldErr(line, i, "read ratio %v is above 1: expected a share between 0 and 1", v)
			}
			if ok {
				p.rr, p.nRR = p.rr+v, p.nRR+1
			}
		}
		if i := cols["duration_ms"]; i >= 0 {
			v, ok, err := c.number(rec, line, i, "a duration in ms")
			if err != nil {
				return nil, err
			}
			if ok {
				p.dur, p.nDur = p.dur+v, p.nDur+1
			}
		}
		evApp = append(evApp, int32(ai))
		evTime = append(evTime, ts)
		evLine = append(evLine, int32(line))
		first, last = min(first, ts), max(last, ts)
	}
	if len(evTime) == 0 {
		return nil, inputErr(path, 2, 0, "", "no events after the header")
	}

	binNs := opt.Bin.Nanoseconds()
	start := opt.Start.UnixNano()
	if opt.Start.IsZero() {
		start = floorDiv(first, binNs) * binNs
	}
	bins := (last-start)/binNs + 1
	if bins*int64(len(ids)) > MaxCells {
		at := 0
		for i, ts := range evTime {
			if ts == last {
				at = i
			}
		}
		return nil, c.fieldErr(int(evLine[at]), cols["timestamp"], "events span %v (%d bins of %v × %d apps): too large; use a wider --bin or check this timestamp", time.Duration(last-start), bins, opt.Bin, len(ids))
	}
	apps := make(map[string]*App, len(ids))
	all := make([]App, len(ids))
	for i, id := range ids {
		p := profiles[i]
		a := &all[i]
		a.ID, a.Counts, a.ReadRatio = id, make([]uint32, bins), DefaultReadRatio
		if p.nMem > 0 {
			a.MemoryMB = p.mem / p.nMem
		}
		if p.nRR > 0 {
			a.ReadRatio = p.rr / p.nRR
		}
		if p.nDur > 0 {
			a.DurationMS = p.dur / p.nDur
		}
		apps[id] = a
	}
	for i, ts := range evTime {
		all[evApp[i]].Counts[(ts-start)/binNs]++
	}
	return newTrace(time.Unix(0, start), opt.Bin, int(bins), apps), nil
}

// parseTimestamp accepts RFC 3339 or Unix seconds, returning Unix nanoseconds.
func parseTimestamp(c *csvFile, rec []string, line, i int) (int64, error) {
	s := strings.TrimSpace(rec[i])
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
		if v < 0 || v > 1e11 { // before 1970 or after year 5138: a unit mistake
			return 0, c.fieldErr(line, i, "Unix time %s is out of range: expected seconds since 1970", s)
		}
		sec, frac := math.Modf(v)
		return int64(sec)*1e9 + int64(math.Round(frac*1e9)), nil
	}
	return 0, c.fieldErr(line, i, "bad timestamp %q: expected RFC 3339 (2019-07-15T08:00:00Z) or Unix seconds", s)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
