//go:build chdb

// The store's SQL against a modern ClickHouse engine (chDB, ClickHouse
// 26.x in-process): schema with LowCardinality and TTL, the materialized
// view, every insert and every read, through the store's own methods.
// chDB has no network server, so a small driver.Conn adapter binds the
// arguments into the SQL text and decodes JSONCompactEachRow results.
//
// Run with the library from the npm package @chdb/lib-linux-x64-gnu
// (never committed; `deploy/local/install.sh chdb` puts it in .tools/, and
// `make test-cluster` runs this suite):
//
//	CHDB_LIB_PATH=$PWD/.tools/chdb/libchdb.so go test -tags chdb -run Modern ./store/
package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/chdb-io/chdb-go/chdb"
	"github.com/google/uuid"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/trace"
)

// chdbConn implements the part of driver.Conn the store uses.
type chdbConn struct {
	driver.Conn // methods the store never calls stay nil
	sess        *chdb.Session
	t           testing.TB
}

func (c *chdbConn) run(sql string) ([]byte, error) {
	res, err := c.sess.Query(sql, "JSONCompactEachRow")
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("chdb: %w\nquery: %s", err, short(sql))
	}
	defer res.Free()
	return bytes.Clone(res.Buf()), nil
}

func short(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

func (c *chdbConn) Exec(_ context.Context, q string, args ...any) error {
	sql, err := bindArgs(q, args)
	if err != nil {
		return err
	}
	_, err = c.run(sql)
	return err
}

func (c *chdbConn) Query(_ context.Context, q string, args ...any) (driver.Rows, error) {
	sql, err := bindArgs(q, args)
	if err != nil {
		return nil, err
	}
	out, err := c.run(sql)
	if err != nil {
		return nil, err
	}
	r := &chdbRows{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		var row []any
		if err := d.Decode(&row); err != nil {
			return nil, fmt.Errorf("decode %q: %w", sc.Text(), err)
		}
		r.rows = append(r.rows, row)
	}
	r.i = -1
	return r, sc.Err()
}

func (c *chdbConn) QueryRow(ctx context.Context, q string, args ...any) driver.Row {
	rows, err := c.Query(ctx, q, args...)
	return &chdbRow{rows: rows, err: err}
}

func (c *chdbConn) PrepareBatch(_ context.Context, q string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	return &chdbBatch{c: c, query: q, cols: map[int]any{}}, nil
}

func (c *chdbConn) Close() error { return nil }

type chdbRows struct {
	driver.Rows
	rows [][]any
	i    int
}

func (r *chdbRows) Next() bool   { r.i++; return r.i < len(r.rows) }
func (r *chdbRows) Err() error   { return nil }
func (r *chdbRows) Close() error { return nil }
func (r *chdbRows) Scan(dest ...any) error {
	row := r.rows[r.i]
	if len(row) != len(dest) {
		return fmt.Errorf("scan: %d columns into %d destinations", len(row), len(dest))
	}
	for i, d := range dest {
		if err := assign(d, row[i]); err != nil {
			return fmt.Errorf("column %d (%v): %w", i, row[i], err)
		}
	}
	return nil
}

type chdbRow struct {
	driver.Row
	rows driver.Rows
	err  error
}

func (r *chdbRow) Err() error { return r.err }
func (r *chdbRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		return fmt.Errorf("no rows")
	}
	return r.rows.Scan(dest...)
}

// assign converts a JSONCompactEachRow value into a scan destination.
func assign(dest, v any) error {
	str := func() string {
		switch x := v.(type) {
		case string:
			return x
		case json.Number:
			return x.String()
		}
		return fmt.Sprint(v)
	}
	var err error
	switch d := dest.(type) {
	case *string:
		*d = str()
	case *uint8:
		var n uint64
		n, err = strconv.ParseUint(str(), 10, 8)
		*d = uint8(n)
	case *uint32:
		var n uint64
		n, err = strconv.ParseUint(str(), 10, 32)
		*d = uint32(n)
	case *uint64:
		*d, err = strconv.ParseUint(str(), 10, 64)
	case *int64:
		*d, err = strconv.ParseInt(str(), 10, 64)
	case *float64:
		*d, err = strconv.ParseFloat(str(), 64)
	case *time.Time:
		*d, err = time.ParseInLocation("2006-01-02 15:04:05", str(), time.UTC)
	case *uuid.UUID:
		*d, err = uuid.Parse(str())
	default:
		arr, ok := v.([]any)
		dv := reflect.ValueOf(dest).Elem()
		if !ok || dv.Kind() != reflect.Slice {
			return fmt.Errorf("cannot scan %T into %T", v, dest)
		}
		out := reflect.MakeSlice(dv.Type(), len(arr), len(arr))
		for i, x := range arr {
			if err := assign(out.Index(i).Addr().Interface(), x); err != nil {
				return err
			}
		}
		dv.Set(out)
	}
	return err
}

// chdbBatch collects rows (or whole columns) and sends one INSERT … VALUES.
type chdbBatch struct {
	driver.Batch
	c     *chdbConn
	query string
	rows  [][]any
	cols  map[int]any
}

type chdbColumn struct {
	b *chdbBatch
	i int
}

func (col chdbColumn) Append(v any) error    { col.b.cols[col.i] = v; return nil }
func (col chdbColumn) AppendRow(v any) error { return fmt.Errorf("not supported") }

func (b *chdbBatch) Append(v ...any) error           { b.rows = append(b.rows, v); return nil }
func (b *chdbBatch) Column(i int) driver.BatchColumn { return chdbColumn{b, i} }
func (b *chdbBatch) Abort() error                    { return nil }
func (b *chdbBatch) Close() error                    { return nil }
func (b *chdbBatch) Send() error {
	rows := b.rows
	if len(b.cols) > 0 {
		n := reflect.ValueOf(b.cols[0]).Len()
		for r := range n {
			row := make([]any, len(b.cols))
			for i := range row {
				row[i] = reflect.ValueOf(b.cols[i]).Index(r).Interface()
			}
			rows = append(rows, row)
		}
	}
	var sql strings.Builder
	sql.WriteString(b.query + " VALUES ")
	for i, row := range rows {
		if i > 0 {
			sql.WriteString(",")
		}
		sql.WriteString("(")
		for j, v := range row {
			if j > 0 {
				sql.WriteString(",")
			}
			lit, err := literal(v)
			if err != nil {
				return err
			}
			sql.WriteString(lit)
		}
		sql.WriteString(")")
	}
	_, err := b.c.run(sql.String())
	return err
}

// bindArgs replaces each ? outside quotes with its argument as a literal.
func bindArgs(q string, args []any) (string, error) {
	var out strings.Builder
	inQuote, n := false, 0
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case ch == '\'' && (i == 0 || q[i-1] != '\\'):
			inQuote = !inQuote
		case ch == '?' && !inQuote:
			if n >= len(args) {
				return "", fmt.Errorf("more placeholders than arguments in %s", short(q))
			}
			lit, err := literal(args[n])
			if err != nil {
				return "", err
			}
			out.WriteString(lit)
			n++
			continue
		}
		out.WriteByte(ch)
	}
	if n != len(args) {
		return "", fmt.Errorf("%d arguments for %d placeholders in %s", len(args), n, short(q))
	}
	return out.String(), nil
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func literal(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return quote(x), nil
	case []byte:
		return quote(string(x)), nil
	case uuid.UUID:
		return quote(x.String()), nil
	case time.Time:
		return strconv.FormatInt(x.Unix(), 10), nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case int, int32, int64, uint8, uint32, uint64:
		return fmt.Sprint(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []string, []float64:
		rv := reflect.ValueOf(x)
		parts := make([]string, rv.Len())
		for i := range parts {
			p, err := literal(rv.Index(i).Interface())
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		return "[" + strings.Join(parts, ",") + "]", nil
	}
	return "", fmt.Errorf("no literal for %T", v)
}

var chdbSession *chdb.Session

// newModernStore is a store over chDB with a fresh database.
func newModernStore(t *testing.T) *Store {
	t.Helper()
	if chdbSession == nil {
		s, err := chdb.NewSession(t.TempDir())
		if err != nil {
			t.Fatalf("chDB: %v (set CHDB_LIB_PATH to libchdb.so)", err)
		}
		chdbSession = s
	}
	c := &chdbConn{sess: chdbSession, t: t}
	if _, err := c.run("SET session_timezone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	s := &Store{conn: c, db: "default", addr: "chdb", timeout: time.Minute, log: slog.Default(), layout: layout{db: "default"}}
	ctx := context.Background()
	if err := s.detectServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestModernClickHouse(t *testing.T) {
	ctx := context.Background()
	s := newModernStore(t)
	if !s.Server().Modern() {
		t.Fatalf("chDB reports %q: not taken as modern", s.Server().Version)
	}
	t.Logf("chDB ClickHouse %s", s.Server().Version)
	// The schema uses the modern features, and migrating again is a no-op.
	var ddl string
	if err := s.conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'requests'").Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ddl, "LowCardinality(String)") || !strings.Contains(ddl, "TTL time + toIntervalDay(90)") {
		t.Errorf("requests DDL lacks LowCardinality or TTL: %s", ddl)
	}
	if _, err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.AppliedVersions(ctx); err != nil || len(v) != SchemaVersion() {
		t.Fatalf("versions %v (%v)", v, err)
	}

	// Loads: exact totals, not counted twice, read back as the same trace.
	tr := trace.Synth(trace.SynthOptions{Apps: 4, Days: 1, Bin: 10 * time.Minute, Seed: 2})
	res, err := s.LoadTrace(ctx, tr, LoadOptions{Format: "synth", Source: "test"})
	if err != nil || res.Duplicate {
		t.Fatalf("load: %+v %v", res, err)
	}
	if again, err := s.LoadTrace(ctx, tr, LoadOptions{}); err != nil || !again.Duplicate {
		t.Fatalf("repeated load: %+v %v", again, err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Requests != tr.Total() || st.Apps != 4 || st.Loads != 1 || !st.First.Equal(tr.Start) {
		t.Fatalf("stats %+v (%v), want %d requests", st, err, tr.Total())
	}
	back, err := s.Trace(ctx, tr.Start, tr.End(), tr.Bin)
	if err != nil || back.Total() != tr.Total() || !reflect.DeepEqual(back.Apps[1].Counts, tr.Apps[1].Counts) || back.Apps[1].MemoryMB != tr.Apps[1].MemoryMB {
		t.Fatalf("trace back: %v", err)
	}
	if loads, err := s.Loads(ctx); err != nil || len(loads) != 1 || loads[0].Source != "test" {
		t.Errorf("loads %+v (%v)", loads, err)
	}

	// Live requests reach the activity through the materialized view.
	now := time.Now().UTC().Truncate(time.Second)
	reqs := []Request{
		{Time: now.Add(-90 * time.Second), RequestID: uuid.NewString(), App: "live", VolumeType: "ssd", SizeMB: 64, ReadRatio: 0.25, Host: "h1", Warm: true, WorkMS: 5, Outcome: records.OutcomeWarm},
		{Time: now.Add(-30 * time.Second), RequestID: uuid.NewString(), App: "live", VolumeType: "ssd", SizeMB: 128, ReadRatio: 0.75, Host: "h1", WorkMS: 7, Outcome: records.OutcomeWarm},
	}
	if err := s.RecordRequests(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	act, err := s.RecentActivity(ctx, []string{"live", "none"}, now, 2, time.Minute)
	if err != nil || !reflect.DeepEqual(act, map[string][]float64{"live": {1, 1}, "none": {0, 0}}) {
		t.Errorf("recent activity %v (%v)", act, err)
	}
	if d, err := s.AppActivity(ctx, "live", now.Add(-2*time.Minute), now, time.Minute); err != nil || len(d) != 2 || d[1].MeanSizeMB != 128 {
		t.Errorf("app activity %+v (%v)", d, err)
	}
	if got, err := s.Requests(ctx, now.Add(-time.Hour), now); err != nil || len(got) != 2 || !reflect.DeepEqual(got[1], reqs[1]) {
		t.Errorf("requests %+v (%v)", got, err)
	}
	profiles, err := s.AppProfiles(ctx)
	if err != nil || len(profiles) != 5 || profiles[4].ID != "live" || profiles[4].MemoryMB != 96 || profiles[4].VolumeType != "ssd" {
		t.Errorf("profiles %+v (%v)", profiles, err)
	}

	// A router's batches: a retried batch counts once, another router's
	// identical one counts.
	batch := ArrivalBatch{Router: "r1", Batch: "1", Rows: []Arrival{{App: "live", Bin: now.Add(-time.Minute), Requests: 3}}}
	for _, b := range []ArrivalBatch{batch, batch, {Router: "r2", Batch: "1", Rows: batch.Rows}} {
		if err := s.RecordArrivals(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := s.BusyBins(ctx, now.Add(-2*time.Minute), now, time.Minute)
	var n uint64
	for _, c := range busy["live"].Counts {
		n += c
	}
	if err != nil || n != 2+6 {
		t.Errorf("busy bins %+v (%v), want 8 requests: two live, two routers' batches of 3", busy, err)
	}

	// Hosts and their metrics.
	if err := s.RegisterHost(ctx, Host{ID: "h1", URL: "http://h1", MemoryMB: 1024, Speed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordHostMetrics(ctx, []HostMetrics{{Time: now, HostID: "h1", CPUUtil: 0.4, Leases: 3}}); err != nil {
		t.Fatal(err)
	}
	if hosts, err := s.Hosts(ctx, now.Add(-time.Minute)); err != nil || len(hosts) != 1 || hosts[0].URL != "http://h1" {
		t.Errorf("hosts %+v (%v)", hosts, err)
	}
	if m, err := s.LatestHostMetrics(ctx); err != nil || m["h1"].Leases != 3 || m["h1"].CPUUtil != 0.4 {
		t.Errorf("latest metrics %+v (%v)", m, err)
	}
	if ms, err := s.HostMetricsRange(ctx, now.Add(-time.Minute), now.Add(time.Minute)); err != nil || len(ms) != 1 {
		t.Errorf("metrics range %+v (%v)", ms, err)
	}

	// Events.
	if err := s.RecordPredictions(ctx, []Prediction{{Time: now, App: "live", Bin: now, Probability: 0.6, Decision: "prepare"}}); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Predictions(ctx, now.Add(-time.Second), now.Add(time.Second)); err != nil || len(ps) != 1 {
		t.Errorf("predictions %+v (%v)", ps, err)
	}
	if err := s.RecordPreparationEvents(ctx, []PreparationEvent{{Time: now, PreparationID: "p", App: "live", Host: "h1", Event: records.EventClaimed}}); err != nil {
		t.Fatal(err)
	}
	if es, err := s.PreparationEvents(ctx, now.Add(-time.Second), now.Add(time.Second)); err != nil || len(es) != 1 || es[0].Event != records.EventClaimed {
		t.Errorf("preparation events %+v (%v)", es, err)
	}
	if err := s.RecordAdjustments(ctx, []Adjustment{{Time: now, App: "live", Host: "h1", NewAdjustment: 0.2}, {Time: now.Add(time.Millisecond), App: "live", Host: "h1", NewAdjustment: 0.1}}); err != nil {
		t.Fatal(err)
	}
	if adj, err := s.Adjustments(ctx); err != nil || adj[[2]string{"live", "h1"}] != 0.1 {
		t.Errorf("adjustments %v (%v)", adj, err)
	}

	// Model registry and training runs (JSON results cannot carry bytes
	// that are not UTF-8, so these bytes are tame; 18.16's test has 0xff).
	for _, m := range []ModelRecord{
		{Version: "d1", Kind: models.KindDemand, Status: StatusChampion, Metrics: map[string]float64{"auc": 0.7}, ONNX: []byte{0, 1, 'x', '\'', '\\'}},
		{Version: "d2", Kind: models.KindDemand, Status: StatusChampion, ONNX: []byte("two")},
	} {
		if err := s.PublishModel(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.Champion(ctx, models.KindDemand); err != nil || c.Version != "d2" {
		t.Errorf("champion %+v (%v)", c, err)
	}
	if m, err := s.Model(ctx, "d1"); err != nil || m.Status != StatusRetired || !bytes.Equal(m.ONNX, []byte{0, 1, 'x', '\'', '\\'}) || m.Metrics["auc"] != 0.7 {
		t.Errorf("model d1 %+v (%v)", m, err)
	}
	if err := s.SetModelStatus(ctx, "d1", StatusChampion); err != nil {
		t.Fatal(err)
	}
	if list, err := s.ListModels(ctx); err != nil || len(list) != 2 {
		t.Errorf("models %+v (%v)", list, err)
	}
	if err := s.RecordTrainingRun(ctx, TrainingRun{RunID: "r", Kind: models.KindDemand, Status: "published", Metrics: map[string]float64{"auc": 0.7}}); err != nil {
		t.Fatal(err)
	}
	if runs, err := s.TrainingRuns(ctx, 5); err != nil || len(runs) != 1 {
		t.Errorf("training runs %+v (%v)", runs, err)
	}
}
