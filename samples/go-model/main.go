// Command go-model is a sample application whose start-up has a real cost:
// it loads a model file of float32 weights, checks and parses it, and builds
// a locality-sensitive hash index over its rows before it listens. Once
// loaded, POST /predict scores a small input against the rows the index
// finds for it, and GET /healthz answers 200.
//
//	go-model --write-model model.bin [--rows 6144 --cols 2048 --seed 1]
//	PORT=8080 go-model --model model.bin
//
// The instance listens on 127.0.0.1:$PORT only and shuts down gracefully on
// SIGTERM or SIGINT.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/forewarm/forewarm/samples/internal/serve"
)

// The model file: a 24-byte header, rows*cols little-endian float32 weights
// (row after row), then the CRC-32C of the weights' bytes.
const (
	magic      = "FWMODEL1"
	headerSize = 24 // magic, uint32 rows, uint32 cols, uint64 seed
	maxCells   = 1 << 28
)

// The index: tables of bits random hyperplanes each; a row's signature in a
// table is the signs of its dot products with the table's hyperplanes.
const (
	tables = 4
	bits   = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-model: ")
	modelPath := flag.String("model", "model.bin", "model file to load")
	writeModel := flag.String("write-model", "", "write a generated model file to this path and exit")
	rows := flag.Int("rows", 6144, "rows of a generated model (with --write-model)")
	cols := flag.Int("cols", 2048, "columns of a generated model (with --write-model)")
	seed := flag.Uint64("seed", 1, "seed of a generated model (with --write-model)")
	flag.Parse()

	if *writeModel != "" {
		if err := generate(*writeModel, *rows, *cols, *seed); err != nil {
			log.Fatal(err)
		}
		return
	}

	start := time.Now()
	m, err := load(*modelPath)
	if err != nil {
		log.Fatal(err)
	}
	loaded := time.Since(start)

	// Listen only once the model is loaded: a connection that is accepted
	// is one that can be served.
	ln, err := serve.Listen()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("loaded %dx%d weights (%d MiB) in %s (read and parsed %s, indexed %s); listening on %s",
		m.rows, m.cols, m.rows*m.cols*4>>20, loaded.Round(time.Millisecond),
		m.parseTime.Round(time.Millisecond), (loaded - m.parseTime).Round(time.Millisecond), ln.Addr())
	if err := serve.Run(ln, m.routes(loaded)); err != nil {
		log.Fatal(err)
	}
}

// model is the loaded weights and their index.
type model struct {
	rows, cols int
	weights    []float32 // row-major
	invNorm    []float32 // 1/|row|
	planes     []float32 // tables*bits hyperplanes of cols each
	// buckets of table t: the rows of signature s are
	// members[t][start[t][s]:start[t][s+1]].
	start   [tables][]int32
	members [tables][]int32
	// parseTime is how long reading, checking and parsing the file took.
	parseTime time.Duration
	// queries are spare query vectors of cols floats.
	queries sync.Pool
}

// load reads, checks and parses the model file at path and builds the index.
func load(path string) (*model, error) {
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w (write one with --write-model)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("model %s: header: %w", path, err)
	}
	if string(hdr[:8]) != magic {
		return nil, fmt.Errorf("model %s: not a model file (magic %q)", path, hdr[:8])
	}
	rows := int(binary.LittleEndian.Uint32(hdr[8:]))
	cols := int(binary.LittleEndian.Uint32(hdr[12:]))
	seed := binary.LittleEndian.Uint64(hdr[16:])
	if rows < 1 || cols < 1 || rows*cols > maxCells {
		return nil, fmt.Errorf("model %s: bad shape %dx%d", path, rows, cols)
	}
	if want := int64(headerSize + 4*rows*cols + 4); st.Size() != want {
		return nil, fmt.Errorf("model %s: %d bytes, a %dx%d model has %d", path, st.Size(), rows, cols, want)
	}

	m := &model{rows: rows, cols: cols, weights: make([]float32, rows*cols)}
	buf := make([]byte, 1<<20)
	crc := uint32(0)
	for i := 0; i < len(m.weights); {
		n := min(len(buf), 4*(len(m.weights)-i))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, fmt.Errorf("model %s: weights: %w", path, err)
		}
		crc = crc32.Update(crc, castagnoli, buf[:n])
		for j := 0; j < n; j += 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(buf[j:]))
			if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
				return nil, fmt.Errorf("model %s: weight %d is not finite", path, i)
			}
			m.weights[i] = v
			i++
		}
	}
	var tail [4]byte
	if _, err := io.ReadFull(r, tail[:]); err != nil {
		return nil, fmt.Errorf("model %s: checksum: %w", path, err)
	}
	if got := binary.LittleEndian.Uint32(tail[:]); got != crc {
		return nil, fmt.Errorf("model %s: checksum %08x, weights hash to %08x", path, got, crc)
	}
	m.parseTime = time.Since(t0)
	m.queries.New = func() any { q := make([]float32, cols); return &q }
	m.index(seed)
	return m, nil
}

// index computes the rows' norms and fills the hash tables.
func (m *model) index(seed uint64) {
	rng := splitmix(seed ^ 0x9e3779b97f4a7c15)
	m.planes = make([]float32, tables*bits*m.cols)
	for i := range m.planes {
		m.planes[i] = rng.float()*2 - 1
	}
	m.invNorm = make([]float32, m.rows)
	sigs := make([][tables]uint16, m.rows)
	for r := range m.rows {
		row := m.row(r)
		m.invNorm[r] = float32(1 / math.Sqrt(float64(dot(row, row))+1e-12))
		sigs[r] = m.signature(row)
	}
	for t := range tables {
		start := make([]int32, 1<<bits+1)
		for r := range m.rows {
			start[sigs[r][t]+1]++
		}
		for s := 1; s < len(start); s++ {
			start[s] += start[s-1]
		}
		members := make([]int32, m.rows)
		next := slices.Clone(start)
		for r := range m.rows {
			s := sigs[r][t]
			members[next[s]] = int32(r)
			next[s]++
		}
		m.start[t], m.members[t] = start, members
	}
}

func (m *model) row(r int) []float32 { return m.weights[r*m.cols : (r+1)*m.cols] }

// signature is v's bucket in each table.
func (m *model) signature(v []float32) (sig [tables]uint16) {
	for t := range tables {
		for b := range bits {
			p := (t*bits + b) * m.cols
			if dot(v, m.planes[p:p+m.cols]) >= 0 {
				sig[t] |= 1 << b
			}
		}
	}
	return sig
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// query is the body of POST /predict: a few features, {"x": [0.5, -1, 2]}
// or a single one, {"x": 1}.
type query struct {
	X json.RawMessage `json:"x"`
}

type match struct {
	Row   int     `json:"row"`
	Score float32 `json:"score"` // cosine similarity
}

type prediction struct {
	Top        []match        `json:"top"`
	Candidates int            `json:"candidates"`
	Buckets    [tables]uint16 `json:"buckets"`
	Micros     int64          `json:"micros"`
}

// features reads x as one number or a list of at most 64 numbers.
func features(raw json.RawMessage) ([]float32, error) {
	var one float64
	if err := json.Unmarshal(raw, &one); err == nil {
		return []float32{float32(one)}, nil
	}
	var many []float64
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 || len(many) > 64 {
		return nil, errors.New(`"x" must be a number or a list of 1 to 64 numbers`)
	}
	out := make([]float32, len(many))
	for i, v := range many {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New(`"x" must hold finite numbers`)
		}
		out[i] = float32(v)
	}
	return out, nil
}

// predict expands the features into a query vector (the features pick a
// slice of rows whose mean, shifted by the features, is the query), finds
// its candidate rows in the index and scores them.
func (m *model) predict(x []float32) prediction {
	start := time.Now()
	h := uint64(14695981039346656037)
	for _, v := range x {
		h = (h ^ uint64(math.Float32bits(v))) * 1099511628211
	}
	qp := m.queries.Get().(*[]float32)
	defer m.queries.Put(qp)
	q := *qp
	clear(q)
	first := int(h % uint64(m.rows))
	const slice = 8
	for k := range slice {
		row := m.row((first + k) % m.rows)
		for i, w := range row {
			q[i] += w / slice
		}
	}
	for i := range q {
		q[i] += 0.1 * x[i%len(x)]
	}
	qn := float32(1 / math.Sqrt(float64(dot(q, q))+1e-12))

	p := prediction{Buckets: m.signature(q)}
	var cands []int32
	for t := range tables {
		s := p.Buckets[t]
		cands = append(cands, m.members[t][m.start[t][s]:m.start[t][s+1]]...)
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	p.Top = make([]match, len(cands))
	for i, r := range cands {
		p.Top[i] = match{Row: int(r), Score: dot(q, m.row(int(r))) * qn * m.invNorm[r]}
	}
	p.Candidates = len(p.Top)
	slices.SortFunc(p.Top, func(a, b match) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return a.Row - b.Row
	})
	p.Top = p.Top[:min(3, len(p.Top))]
	p.Micros = time.Since(start).Microseconds()
	return p
}

func (m *model) routes(loaded time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "rows": m.rows, "cols": m.cols, "load_ms": loaded.Milliseconds()})
	})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		var q query
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		if err := dec.Decode(&q); err != nil || q.X == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `the body is JSON such as {"x": [0.5, -1, 2]}`})
			return
		}
		x, err := features(q.X)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, m.predict(x))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// generate writes a deterministic model of rows x cols weights to path:
// rows that gather around 64 centres, as trained embeddings do. It writes a
// temporary file and renames it, so a reader never sees half a model.
func generate(path string, rows, cols int, seed uint64) error {
	if rows < 1 || cols < 1 || rows*cols > maxCells {
		return fmt.Errorf("bad shape %dx%d", rows, cols)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [headerSize]byte
	copy(hdr[:], magic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(rows))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(cols))
	binary.LittleEndian.PutUint64(hdr[16:], seed)
	w.Write(hdr[:])

	rng := splitmix(seed)
	const centres = 64
	centre := make([]float32, centres*cols)
	for i := range centre {
		centre[i] = rng.float()*2 - 1
	}
	crc := uint32(0)
	buf := make([]byte, 4*cols)
	for r := range rows {
		c := centre[(r%centres)*cols:][:cols]
		for i := range cols {
			v := 0.8*c[i] + 0.6*(rng.float()*2-1)
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		crc = crc32.Update(crc, castagnoli, buf)
		w.Write(buf)
	}
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crc)
	w.Write(tail[:])
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// splitmix is the SplitMix64 generator: small, fast and the same everywhere.
type splitmixState struct{ s uint64 }

func splitmix(seed uint64) *splitmixState { return &splitmixState{seed} }

func (g *splitmixState) next() uint64 {
	g.s += 0x9e3779b97f4a7c15
	z := g.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float is uniform in [0, 1).
func (g *splitmixState) float() float32 { return float32(g.next()>>40) / (1 << 24) }
