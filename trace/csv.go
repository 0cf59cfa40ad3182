package trace

import (
	"bufio"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// csvFile reads a headed CSV file and turns every problem into an
// *InputError naming the file, line and column.
type csvFile struct {
	path   string
	f      *os.File
	r      *csv.Reader
	header []string
	col    map[string]int // lower-cased header name -> 0-based index
}

func openCSV(path string) (*csvFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, inputErr(path, 0, 0, "", "cannot read: %v", unwrapPathError(err))
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, inputErr(path, 0, 0, "", "is a directory, not a CSV file")
	}
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.FieldsPerRecord = -1 // checked here, with a clearer message
	r.ReuseRecord = true
	c := &csvFile{path: path, f: f, r: r}
	rec, _, err := c.read()
	if err == io.EOF {
		f.Close()
		return nil, inputErr(path, 1, 0, "", "empty file: expected a CSV header line")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	c.header = make([]string, len(rec))
	c.col = make(map[string]int, len(rec))
	for i, h := range rec {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte-order mark some tools write
		}
		c.header[i] = h
		if _, dup := c.col[strings.ToLower(h)]; dup {
			f.Close()
			return nil, inputErr(path, 1, i+1, h, "duplicate column name in the header")
		}
		c.col[strings.ToLower(h)] = i
	}
	return c, nil
}

func (c *csvFile) Close() error { return c.f.Close() }

// index returns the 0-based position of the named column, or -1.
func (c *csvFile) index(name string) int {
	if i, ok := c.col[strings.ToLower(name)]; ok {
		return i
	}
	return -1
}

// read returns the next record and its line; io.EOF at the end. Blank
// lines are skipped by encoding/csv.
func (c *csvFile) read() ([]string, int, error) {
	rec, err := c.r.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// pe.Column counts bytes, not fields: say so in the message.
			return nil, pe.Line, inputErr(c.path, pe.Line, 0, "", "malformed CSV at character %d: %v", pe.Column, pe.Err)
		}
		return nil, 0, inputErr(c.path, 0, 0, "", "cannot read: %v", err)
	}
	line, _ := c.r.FieldPos(0)
	return rec, line, nil
}

// next is read plus the check that the record has the header's width.
func (c *csvFile) next() ([]string, int, error) {
	rec, line, err := c.read()
	if err != nil {
		return nil, line, err
	}
	if len(rec) != len(c.header) {
		col := min(len(rec), len(c.header)) + 1
		return nil, line, inputErr(c.path, line, col, "", "row has %d fields but the header has %d", len(rec), len(c.header))
	}
	return rec, line, nil
}

// fieldErr builds an error about field i (0-based) of the record at line.
func (c *csvFile) fieldErr(line, i int, format string, a ...any) *InputError {
	return inputErr(c.path, line, i+1, c.header[i], format, a...)
}

// count parses a non-negative integer request count.
func (c *csvFile) count(rec []string, line, i int) (uint32, error) {
	s := strings.TrimSpace(rec[i])
	n, err := strconv.ParseUint(s, 10, 32)
	if err == nil {
		return uint32(n), nil
	}
	if v, ferr := strconv.ParseFloat(s, 64); ferr == nil {
		switch {
		case v < 0:
			return 0, c.fieldErr(line, i, "negative count %s: counts must be >= 0", s)
		case v == float64(uint32(v)):
			return uint32(v), nil // "3.0" as some exporters write integers
		case v > float64(^uint32(0)):
			return 0, c.fieldErr(line, i, "count %s is too large (max %d)", s, ^uint32(0))
		default:
			return 0, c.fieldErr(line, i, "count %s is not a whole number", s)
		}
	}
	if s == "" {
		return 0, c.fieldErr(line, i, "empty count: expected a non-negative integer")
	}
	return 0, c.fieldErr(line, i, "%q is not a number: expected a non-negative integer count", s)
}

// number parses a non-negative float; empty means absent (ok=false).
func (c *csvFile) number(rec []string, line, i int, what string) (v float64, ok bool, err error) {
	s := strings.TrimSpace(rec[i])
	if s == "" {
		return 0, false, nil
	}
	v, perr := strconv.ParseFloat(s, 64)
	if perr != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, c.fieldErr(line, i, "%q is not a number: expected %s", s, what)
	}
	if v < 0 {
		return 0, false, c.fieldErr(line, i, "negative value %s: expected %s", s, what)
	}
	return v, true, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
