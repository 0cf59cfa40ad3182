package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func stats(t *testing.T, s *store.Store) store.Stats {
	t.Helper()
	st, err := s.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rawActivityRows counts every activity row, visible or not.
func rawActivityRows(t *testing.T, s *store.Store) uint64 {
	t.Helper()
	var n uint64
	if err := s.Conn().QueryRow(ctxT(t), "SELECT count() FROM activity").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func sampleDir(t testing.TB) string {
	dir := os.Getenv("FOREWARM_AZURE_SAMPLE")
	if dir == "" {
		dir = filepath.Join("..", "testdata", "azure2019-sample") // the copy in the repository
	}
	if _, err := os.Stat(filepath.Join(dir, "1350_inv.csv")); err != nil {
		t.Fatalf("the shared Azure sample is missing (set FOREWARM_AZURE_SAMPLE to its folder): %v", err)
	}
	return dir
}

func TestMigrationsIdempotentAndConcurrent(t *testing.T) {
	cfg := storetest.Unmigrated(t)
	ctx := ctxT(t)
	// Nothing there yet: Open refuses and names the command to run.
	_, err := store.Open(ctx, cfg)
	var se *chconn.SchemaError
	if !errors.As(err, &se) || se.Have != 0 || !strings.Contains(err.Error(), "has no Forewarm schema") || !strings.Contains(err.Error(), "run `starter migrate`") {
		t.Fatalf("open before migrating: %v", err)
	}
	var wg sync.WaitGroup
	results := make([]store.MigrateResult, 4)
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { results[i], errs[i] = store.Migrate(ctx, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate %d: %v", i, err)
		}
		if results[i].To != store.SchemaVersion() {
			t.Errorf("concurrent Migrate %d: %+v", i, results[i])
		}
	}
	again, err := store.Migrate(ctx, cfg) // and once more, after the fact: nothing to do
	if err != nil || again.From != store.SchemaVersion() || len(again.Applied) != 0 {
		t.Fatalf("migrating a migrated database: %+v (%v)", again, err)
	}
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	versions, err := s.AppliedVersions(ctx)
	if err != nil || len(versions) != store.SchemaVersion() || versions[len(versions)-1] != store.SchemaVersion() {
		t.Fatalf("applied versions %v (%v), want 1…%d", versions, err, store.SchemaVersion())
	}
	rows, err := s.Conn().Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	want := []string{"activity", "adjustment_passes", "adjustments", "app_profiles", "arrivals", "gateway_requests", "host_metrics", "hosts", "load_claims", "loads",
		"model_status", "models", "predictions", "preparation_events", "requests", "schema_migrations", "training_runs"}
	if cfg.Cluster != "" { // each table is a Distributed one in front of a replicated <name>_local
		for _, n := range want {
			want = append(want, n+"_local")
		}
	}
	want = append(want, "activity_from_requests")
	slices.Sort(want)
	if !reflect.DeepEqual(tables, want) {
		t.Errorf("tables %v, want %v", tables, want)
	}
	// The schema works after all that: a load and a live request.
	if _, err := s.LoadTrace(ctx, trace.Synth(trace.SynthOptions{Apps: 3, Days: 1}), store.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("server %s (modern features: %v)", s.Server().Version, s.Server().Modern())
}

// The version check names both versions and what to do, and neither Open
// nor Migrate touches a database newer than this binary.
func TestSchemaVersionMismatchRefused(t *testing.T) {
	ctx := ctxT(t)
	// An older schema: only version 1 recorded.
	old := storetest.Unmigrated(t)
	res, err := store.Migrate(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, s, "ALTER TABLE "+local(old, "schema_migrations")+onCluster(old)+" DELETE WHERE version > 1")
	s.Close()
	// A mutation is asynchronous (18.16 cannot wait for it): poll.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err = store.Open(ctx, old); err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("has schema version 1, this program needs %d: run `starter migrate`", store.SchemaVersion())) ||
		!strings.Contains(err.Error(), old.Database) {
		t.Errorf("open an older schema: %v", err)
	}
	if res, err = store.Migrate(ctx, old); err != nil || res.From != 1 || !slices.Equal(res.Applied, []int{2, 3, 4, 5}) {
		t.Errorf("migrate from 1: %+v (%v)", res, err)
	}
	if s, err := store.Open(ctx, old); err != nil {
		t.Errorf("open after migrating: %v", err)
	} else {
		s.Close()
	}

	// A newer schema: a version this binary does not know.
	cfg := storetest.Config(t)
	if s, err = store.Open(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := uint32(store.SchemaVersion() + 1)
	b, err := s.Conn().PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at, applied_by)")
	if err != nil {
		t.Fatal(err)
	}
	b.Append(next, "from the future", time.Now(), "test")
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("has schema version %d, newer than this program's %d", next, store.SchemaVersion())
	if _, err := store.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("open a newer schema: %v", err)
	}
	if _, err := store.Migrate(ctx, cfg); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("migrate a newer schema: %v", err)
	}
	if v, err := s.AppliedVersions(ctx); err != nil || len(v) != store.SchemaVersion()+1 {
		t.Errorf("versions after the refusals: %v (%v)", v, err)
	}
}

// The build's schema version is the store's newest migration.
func TestSchemaVersionConstant(t *testing.T) {
	if store.SchemaVersion() != chconn.SchemaVersion {
		t.Fatalf("store's newest migration is %d, chconn.SchemaVersion %d: bump the constant with the migration", store.SchemaVersion(), chconn.SchemaVersion)
	}
}

func execSQL(t *testing.T, s *store.Store, stmt string) {
	t.Helper()
	if err := s.Conn().Exec(ctxT(t), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// local names a table's rows: <name>_local on a cluster.
func local(cfg config.ClickHouse, name string) string {
	if cfg.Cluster != "" {
		return name + "_local"
	}
	return name
}

func onCluster(cfg config.ClickHouse) string {
	if cfg.Cluster != "" {
		return " ON CLUSTER `" + cfg.Cluster + "`"
	}
	return ""
}

func TestLoadAzureSampleExactTotalsOnce(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	dir := sampleDir(t)
	ropt := trace.ReadOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv"), DurationsPath: filepath.Join(dir, "1350_run.csv")}
	res, err := s.LoadFile(ctx, trace.FormatAzure2019, filepath.Join(dir, "1350_inv.csv"), ropt, store.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d requests in %d rows in %v", res.Requests, res.Rows, res.Elapsed)
	want := store.Stats{Apps: 1350, Bins: 1440, Requests: 927272, First: trace.AzureStart,
		Last: trace.AzureStart.Add(1439 * time.Minute), Loads: 1}
	if got := stats(t, s); got != want || res.Duplicate || res.Requests != 927272 {
		t.Fatalf("stats %+v, want %+v (result %+v)", got, want, res)
	}
	again, err := s.LoadFile(ctx, trace.FormatAzure2019, filepath.Join(dir, "1350_inv.csv"), ropt, store.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.LoadID != res.LoadID {
		t.Errorf("second load %+v: want a duplicate of %s", again, res.LoadID)
	}
	if got := stats(t, s); got != want {
		t.Errorf("after a repeated load: %+v, want %+v", got, want)
	}

	// The stored history reads back as the same trace.
	orig, _ := trace.Read(trace.FormatAzure2019, filepath.Join(dir, "1350_inv.csv"), ropt)
	back, err := s.Trace(ctx, trace.AzureStart, orig.End(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if back.Total() != orig.Total() || len(back.Apps) != len(orig.Apps) {
		t.Fatalf("trace back: %d requests in %d apps", back.Total(), len(back.Apps))
	}
	for i := range orig.Apps {
		o, b := orig.Apps[i], back.Apps[i]
		if o.ID != b.ID || !slices.Equal(o.Counts, b.Counts) || o.MemoryMB != b.MemoryMB || o.DurationMS != b.DurationMS {
			t.Fatalf("app %s differs after the round trip", o.ID)
		}
	}
	loads, err := s.Loads(ctx)
	if err != nil || len(loads) != 1 || loads[0].Requests != 927272 || loads[0].Format != "azure2019" || loads[0].Bin != time.Minute {
		t.Errorf("loads %+v (%v)", loads, err)
	}
}

func TestLoadEventsExactTotals(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	p := filepath.Join(t.TempDir(), "events.csv")
	os.WriteFile(p, []byte("timestamp,app_id,memory_mb,read_ratio\n"+
		"2026-03-01T10:00:05Z,web,256,0.9\n"+
		"1772359265,web,,\n"+ // 10:01:05
		"2026-03-01T10:00:59Z,batch,1024,0.1\n"+
		"2026-03-01T10:03:00Z,web,,\n"), 0o644)
	res, err := s.LoadFile(ctx, trace.FormatEvents, p, trace.ReadOptions{}, store.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	want := store.Stats{Apps: 2, Bins: 3, Requests: 4, First: start, Last: start.Add(3 * time.Minute), Loads: 1}
	if got := stats(t, s); got != want || res.Rows != 4 {
		t.Errorf("stats %+v, want %+v; result %+v", got, want, res)
	}
	act, err := s.RecentActivity(ctx, []string{"web", "batch", "idle"}, start.Add(4*time.Minute), 4, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantAct := map[string][]float64{"web": {1, 1, 0, 1}, "batch": {1, 0, 0, 0}, "idle": {0, 0, 0, 0}}
	if !reflect.DeepEqual(act, wantAct) {
		t.Errorf("activity %v, want %v", act, wantAct)
	}
	profiles, err := s.AppProfiles(ctx)
	if err != nil || len(profiles) != 2 || profiles[0].ID != "batch" || profiles[0].MemoryMB != 1024 || profiles[1].ReadRatio != 0.9 {
		t.Errorf("profiles %+v (%v)", profiles, err)
	}
}

func TestBadFilesChangeNothing(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	if _, err := s.LoadTrace(ctx, trace.Synth(trace.SynthOptions{Apps: 5, Days: 1, Seed: 3}), store.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	before, rawBefore := stats(t, s), rawActivityRows(t, s)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	// Each bad file has good rows before the bad one: none may be stored.
	azHead := "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"
	cases := []struct{ name, format, path, want string }{
		{"unknown format", "parquet", file("x.csv", "timestamp,app_id\n1772359200,a\n"), "unknown trace format"},
		{"wrong header", trace.FormatAzure2019, file("mem.csv", "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,128\n"), ":1:3:"},
		{"non-numeric count", trace.FormatAzure2019, file("a.csv", azHead+"o,a,f,http,1,2,3\no,a,g,http,1,two,3\n"), ":3:6:"},
		{"negative count", trace.FormatAzure2019, file("b.csv", azHead+"o,a,f,http,1,2,3\no,a,g,http,1,2,-3\n"), ":3:7:"},
		{"bad timestamp", trace.FormatEvents, file("e.csv", "timestamp,app_id\n1772359200,a\n2026-13-01T00:00:00Z,a\n"), ":3:1:"},
		{"empty file", trace.FormatEvents, file("empty.csv", ""), "empty file"},
		{"unreadable path", trace.FormatEvents, filepath.Join(dir, "missing.csv"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.LoadFile(ctx, c.format, c.path, trace.ReadOptions{}, store.LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
			if c.name != "unknown format" && !strings.Contains(err.Error(), c.path) {
				t.Errorf("error %q does not name the file", err)
			}
			if got := stats(t, s); got != before {
				t.Errorf("stats changed: %+v, was %+v", got, before)
			}
			if raw := rawActivityRows(t, s); raw != rawBefore {
				t.Errorf("activity rows %d, were %d", raw, rawBefore)
			}
		})
	}
}

func TestInterruptedLoadInvisibleThenRetried(t *testing.T) {
	s := storetest.New(t)
	tr := trace.Synth(trace.SynthOptions{Apps: 30, Days: 1, Seed: 9})
	ctx, cancel := context.WithCancel(ctxT(t))
	var batches int
	_, err := s.LoadTrace(ctx, tr, store.LoadOptions{BatchRows: 1000, Progress: func(store.LoadProgress) {
		if batches++; batches == 2 {
			cancel() // dies half-way, after rows were written
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted load: %v", err)
	}
	if got := stats(t, s); got.Requests != 0 || got.Loads != 0 {
		t.Fatalf("an interrupted load is visible: %+v", got)
	}
	res, err := s.LoadTrace(ctxT(t), tr, store.LoadOptions{BatchRows: 1000})
	if err != nil || res.Duplicate {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	if got := stats(t, s); got.Requests != tr.Total() || got.Apps != 30 {
		t.Errorf("after the retry %+v, want %d requests", got, tr.Total())
	}
}

func TestConcurrentLoadsCountOnce(t *testing.T) {
	s := storetest.New(t)
	tr := trace.Synth(trace.SynthOptions{Apps: 20, Days: 1, Seed: 5})
	ctx := ctxT(t)
	results := make([]store.LoadResult, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i], errs[i] = s.LoadTrace(ctx, tr, store.LoadOptions{BatchRows: 2000}) })
	}
	wg.Wait()
	fresh := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !results[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d loads claim to be first: %+v", fresh, results)
	}
	if got := stats(t, s); got.Requests != tr.Total() || got.Loads != 1 {
		t.Errorf("stats %+v, want %d requests from 1 load", got, tr.Total())
	}
}

func TestRequestsKeepActivityUpToDate(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	var reqs []store.Request
	for i := range 7 {
		reqs = append(reqs, store.Request{
			Time: base.Add(time.Duration(i)*20*time.Second + 123*time.Millisecond), RequestID: uuid.NewString(),
			App: "api", VolumeType: "ssd", SizeMB: 100 + float64(i), ReadRatio: 0.5, Host: "h1", Warm: i%2 == 0,
			ExpectedScore: 0.8, SetupMS: 3, WorkMS: 40, LatencyMS: 43, Outcome: records.OutcomeWarm,
		})
	}
	if err := s.RecordRequests(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	// A trace load for the same app adds to the live counts.
	tr := &trace.Trace{Start: base, Bin: time.Minute, Bins: 1, Apps: []trace.App{{ID: "api", Counts: []uint32{10}}}}
	if _, err := s.LoadTrace(ctx, tr, store.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	act, err := s.RecentActivity(ctx, []string{"api"}, base.Add(3*time.Minute), 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{3 + 10, 3, 1}; !slices.Equal(act["api"], want) {
		t.Errorf("activity %v, want %v", act["api"], want)
	}
	got, err := s.Requests(ctx, base, base.Add(time.Hour))
	if err != nil || len(got) != 7 {
		t.Fatalf("requests %d (%v)", len(got), err)
	}
	if !reflect.DeepEqual(got[3], reqs[3]) {
		t.Errorf("round trip: %+v, want %+v", got[3], reqs[3])
	}
	if st := stats(t, s); st.LiveRequests != 7 || st.Requests != 17 {
		t.Errorf("stats %+v", st)
	}
	profiles, err := s.AppProfiles(ctx)
	if err != nil || len(profiles) != 1 || profiles[0].MemoryMB != 103 || profiles[0].VolumeType != "ssd" || profiles[0].DurationMS != 40 {
		t.Errorf("live profile %+v (%v)", profiles, err)
	}
	detail, err := s.AppActivity(ctx, "api", base, base.Add(3*time.Minute), time.Minute)
	if err != nil || len(detail) != 3 || detail[0].Requests != 13 || detail[1].MeanSizeMB != 104 || detail[1].ReadRatio != 0.5 || detail[2].MeanWorkMS != 40 {
		t.Errorf("app activity %+v (%v)", detail, err)
	}
	// Second-wide bins see the individual requests.
	sec, err := s.RecentActivity(ctx, []string{"api"}, base.Add(41*time.Second), 41, time.Second)
	if err != nil || sec["api"][0]+sec["api"][20] != 2+10 {
		t.Errorf("second bins %v (%v)", sec["api"], err)
	}
}

func TestRecentActivityManyApps(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	const apps, bins = 800, 10
	tr := denseTrace(apps, bins, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC))
	if _, err := s.LoadTrace(ctx, tr, store.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range tr.Apps[:600] { // more than the IN-list limit
		ids = append(ids, a.ID)
	}
	for _, list := range [][]string{nil, ids, ids[:3]} {
		act, err := s.RecentActivity(ctx, list, tr.End(), 4, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if wantN := len(list); (wantN == 0 && len(act) != apps) || (wantN > 0 && len(act) != wantN) {
			t.Fatalf("%d apps returned for a list of %d", len(act), len(list))
		}
		a := tr.Apps[2]
		c := a.Counts
		want := []float64{float64(c[2] + c[3]), float64(c[4] + c[5]), float64(c[6] + c[7]), float64(c[8] + c[9])}
		if !slices.Equal(act[a.ID], want) {
			t.Errorf("2-minute bins of %s: %v, want %v", a.ID, act[a.ID], want)
		}
	}
}

// denseTrace has a count in every bin of every app.
func denseTrace(apps, bins int, start time.Time) *trace.Trace {
	tr := &trace.Trace{Start: start, Bin: time.Minute, Bins: bins}
	for i := range apps {
		c := make([]uint32, bins)
		for b := range c {
			c[b] = uint32(1 + (i*7+b*3)%13)
		}
		tr.Apps = append(tr.Apps, trace.App{ID: fmt.Sprintf("app-%05d", i), MemoryMB: 128, ReadRatio: 0.5, Counts: c})
	}
	return tr
}

func TestHosts(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	for _, h := range []store.Host{
		{ID: "h1", URL: "http://127.0.0.1:7001", MemoryMB: 4096, DiskMB: 10000, CPUMilli: 2000, Speed: 1, LastSeen: old},
		{ID: "h2", URL: "http://127.0.0.1:7002", MemoryMB: 8192, LastSeen: old},
		{ID: "h1", URL: "http://127.0.0.1:7101", MemoryMB: 4096, DiskMB: 10000, CPUMilli: 2000, Speed: 1.5, LastSeen: old.Add(time.Second)},
	} {
		if err := s.RegisterHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	// h2 keeps reporting metrics: it is alive though registered long ago.
	ms := []store.HostMetrics{
		{Time: now.Add(-2 * time.Second), HostID: "h2", CPUUtil: 0.1, Leases: 1},
		{Time: now.Add(-1 * time.Second), HostID: "h2", CPUUtil: 0.2, MemPressure: 0.05, ReservedMemMB: 512, ReservedCPUMilli: 250, Leases: 2},
		{Time: now.Add(-3 * time.Second), HostID: "h1", CPUUtil: 0.9},
	}
	if err := s.RecordHostMetrics(ctx, ms); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Hosts(ctx, now.Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[0].URL != "http://127.0.0.1:7101" || hosts[0].Speed != 1.5 || hosts[1].ID != "h2" {
		t.Errorf("hosts %+v", hosts)
	}
	if err := s.RegisterHost(ctx, store.Host{ID: "h3"}); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := s.Hosts(ctx, now.Add(-30*time.Second)); len(hosts) != 3 {
		t.Errorf("a fresh registration is not seen: %+v", hosts)
	}
	latest, err := s.LatestHostMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := latest["h2"]; !got.Time.Equal(ms[1].Time) || got.CPUUtil != 0.2 || got.ReservedMemMB != 512 || got.ReservedCPUMilli != 250 || got.Leases != 2 {
		t.Errorf("latest h2 %+v", got)
	}
	if len(latest) != 2 || latest["h1"].CPUUtil != 0.9 {
		t.Errorf("latest %+v", latest)
	}
	rng, err := s.HostMetricsRange(ctx, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rng) != len(ms) || rng[0].HostID != "h1" || rng[len(rng)-1].HostID != "h2" || rng[len(rng)-1].Leases != 2 {
		t.Errorf("range %+v, want the %d samples by host then time", rng, len(ms))
	}
}

// Every agent writes the registry with one insert user, so a compromised
// node can register another host's ID with its own URL. A row stamped far
// in the future must not pin that URL (it would win every argMax against
// the real host's registrations, forever) nor keep a dead host alive; the
// reader takes no row from beyond its own clock (and a little skew).
func TestHostsIgnoreRegistrationsFromTheFuture(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	now := time.Now().UTC()
	future := now.Add(100 * 365 * 24 * time.Hour)
	for _, h := range []store.Host{
		{ID: "victim", URL: "http://victim:7071", MemoryMB: 4096, LastSeen: now.Add(-2 * time.Second)},
		{ID: "victim", URL: "http://10.9.9.9:7071", MemoryMB: 4096, LastSeen: future}, // the forgery
		{ID: "dead", URL: "http://dead:7071", MemoryMB: 1024, LastSeen: now.Add(-time.Hour)},
		{ID: "phantom", URL: "http://10.9.9.9:7071", MemoryMB: 1024, LastSeen: future},
	} {
		if err := s.RegisterHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	// Metrics from the future would keep the dead host "seen" forever.
	if err := s.RecordHostMetrics(ctx, []store.HostMetrics{
		{Time: now.Add(-time.Second), HostID: "victim", CPUUtil: 0.1},
		{Time: future, HostID: "victim", CPUUtil: 0.99},
		{Time: future, HostID: "dead", CPUUtil: 0.5},
	}); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Hosts(ctx, now.Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].ID != "victim" || hosts[0].URL != "http://victim:7071" {
		t.Fatalf("live hosts %+v: want only victim at its own URL (no forged URL, no dead or phantom host)", hosts)
	}
	if hosts[0].LastSeen.After(time.Now().Add(store.MaxClockSkew)) {
		t.Errorf("victim last seen %v, in the future", hosts[0].LastSeen)
	}
	latest, err := s.LatestHostMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := latest["victim"]; got.CPUUtil != 0.1 {
		t.Errorf("victim's latest metrics %+v: a sample from the future was taken", got)
	}
	// A row a little ahead (a host whose clock runs fast) counts, capped
	// at the reader's now.
	if err := s.RegisterHost(ctx, store.Host{ID: "fast", URL: "http://fast:7071", LastSeen: time.Now().Add(store.MaxClockSkew / 2)}); err != nil {
		t.Fatal(err)
	}
	hosts, err = s.Hosts(ctx, now.Add(-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[0].ID != "fast" || hosts[0].LastSeen.After(time.Now()) {
		t.Errorf("hosts %+v: want fast (last seen no later than now) and victim", hosts)
	}
}

func TestEvents(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	now := time.Now().UTC()
	if err := s.RecordPredictions(ctx, []store.Prediction{{Time: now, App: "a", Bin: now.Truncate(time.Minute), Probability: 0.7, Threshold: 0.5, ModelVersion: "v1", Decision: "prepare"}}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Predictions(ctx, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil || len(ps) != 1 || ps[0].Probability != 0.7 || !ps[0].Bin.Equal(now.Truncate(time.Minute)) || !ps[0].Time.Equal(now) {
		t.Errorf("predictions %+v (%v)", ps, err)
	}
	ev := store.PreparationEvent{Time: now, PreparationID: "p1", App: "a", Host: "h1", Event: records.EventReserved, MemoryMB: 256, DiskMB: 100, CPUMilli: 500}
	if err := s.RecordPreparationEvents(ctx, []store.PreparationEvent{ev}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.PreparationEvents(ctx, now.Add(-time.Minute), now.Add(time.Minute)); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], ev) {
		t.Errorf("preparation events %+v (%v)", got, err)
	}
	if err := s.RecordPreparationEvents(ctx, []store.PreparationEvent{{Event: "exploded"}}); err == nil {
		t.Error("an unknown preparation event was accepted")
	}
	adj := []store.Adjustment{
		{Time: now, App: "a", Host: "h1", NewAdjustment: 0.1},
		{Time: now.Add(time.Millisecond), App: "a", Host: "h1", NewAdjustment: -0.2}, // same second, later
		{Time: now, App: "a", Host: "h2", NewAdjustment: 0.3},
	}
	if err := s.RecordAdjustments(ctx, adj); err != nil {
		t.Fatal(err)
	}
	got, err := s.Adjustments(ctx)
	if want := map[[2]string]float64{{"a", "h1"}: -0.2, {"a", "h2"}: 0.3}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("adjustments %v (%v), want %v", got, err, want)
	}
}

func TestModelRegistry(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	if _, err := s.Champion(ctx, models.KindDemand); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("champion of an empty registry: %v", err)
	}
	bytes := []byte{0, 1, 2, 0xff, 'o', 'n', 'n', 'x'}
	v1 := store.ModelRecord{Version: "demand-1", Kind: models.KindDemand, Metrics: map[string]float64{"auc": 0.8, "brier": 0.1}, Status: store.StatusChampion, Meta: `{"t":64}`, ONNX: bytes}
	v2 := store.ModelRecord{Version: "demand-2", Kind: models.KindDemand, Metrics: map[string]float64{"auc": 0.85}, Status: store.StatusCandidate, ONNX: []byte("two")}
	aff := store.ModelRecord{Version: "affinity-1", Kind: models.KindAffinity, Status: store.StatusChampion, ONNX: []byte("aff")}
	for _, m := range []store.ModelRecord{v1, v2, aff} {
		if err := s.PublishModel(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Champion(ctx, models.KindDemand)
	if err != nil || c.Version != "demand-1" || !slices.Equal(c.ONNX, bytes) || c.Metrics["auc"] != 0.8 || c.Meta != `{"t":64}` || c.Status != store.StatusChampion {
		t.Fatalf("champion %+v (%v)", c, err)
	}
	if err := s.SetModelStatus(ctx, "demand-2", store.StatusChampion); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Champion(ctx, models.KindDemand); err != nil || c.Version != "demand-2" || string(c.ONNX) != "two" {
		t.Errorf("after promotion: %+v (%v)", c, err)
	}
	if c, err := s.Champion(ctx, models.KindAffinity); err != nil || c.Version != "affinity-1" {
		t.Errorf("the other kind's champion changed: %+v (%v)", c, err)
	}
	list, err := s.ListModels(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("list %+v (%v)", list, err)
	}
	status := map[string]string{}
	for _, m := range list {
		status[m.Version] = m.Status
		if m.ONNX != nil {
			t.Errorf("list carries bytes of %s", m.Version)
		}
	}
	if want := map[string]string{"demand-1": "retired", "demand-2": "champion", "affinity-1": "champion"}; !reflect.DeepEqual(status, want) {
		t.Errorf("statuses %v, want %v", status, want)
	}
	if err := s.SetModelStatus(ctx, "demand-9", store.StatusRetired); !errors.Is(err, store.ErrNoModel) {
		t.Errorf("unknown version: %v", err)
	}
	if err := s.SetModelStatus(ctx, "demand-1", "best"); err == nil {
		t.Error("unknown status accepted")
	}
	run := store.TrainingRun{RunID: "r1", Kind: models.KindDemand, Version: "demand-2", Status: "published", Duration: 90 * time.Second, Samples: 5000, Metrics: map[string]float64{"auc": 0.85}}
	if err := s.RecordTrainingRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	runs, err := s.TrainingRuns(ctx, 10)
	if err != nil || len(runs) != 1 || runs[0].Duration != run.Duration || runs[0].Metrics["auc"] != 0.85 || runs[0].Samples != 5000 {
		t.Errorf("training runs %+v (%v)", runs, err)
	}
}

// A misspelt event kind or request outcome is refused, naming it, and
// nothing is written.
func TestRecordsRefuseUnknownKinds(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	now := time.Now().UTC()
	err := s.RecordPreparationEvents(ctx, []store.PreparationEvent{{Time: now, PreparationID: "p", App: "a", Host: "h", Event: "reserverd"}})
	if err == nil || !strings.Contains(err.Error(), `unknown event "reserverd"`) {
		t.Errorf("misspelt event: %v", err)
	}
	err = s.RecordRequests(ctx, []store.Request{{Time: now, RequestID: "r1", App: "a", Host: "h", Outcome: "wram"}})
	if err == nil || !strings.Contains(err.Error(), `unknown outcome "wram"`) {
		t.Errorf("misspelt outcome: %v", err)
	}
	es, err := s.PreparationEvents(ctx, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil || len(es) != 0 {
		t.Errorf("events written: %v, %v", es, err)
	}
	rs, err := s.Requests(ctx, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil || len(rs) != 0 {
		t.Errorf("requests written: %v, %v", rs, err)
	}
	// A request ID that is not a UUID is stored under one derived from it.
	if err := s.RecordRequests(ctx, []store.Request{{Time: now, RequestID: "req-7", App: "a", Host: "h", Outcome: records.OutcomeCold}}); err != nil {
		t.Fatal(err)
	}
	rs, err = s.Requests(ctx, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil || len(rs) != 1 || rs[0].RequestID != uuid.NewSHA1(uuid.NameSpaceURL, []byte("forewarm-request:req-7")).String() {
		t.Errorf("derived request ID: %+v, %v", rs, err)
	}
}

// A prediction batch written twice (its acknowledgement lost, the batcher
// writes it again) is read once.
func TestPredictionsWrittenTwiceAreReadOnce(t *testing.T) {
	s := storetest.New(t)
	ctx := ctxT(t)
	now := time.Now().UTC()
	batch := []store.Prediction{
		{Time: now, App: "twice", Bin: now.Truncate(time.Minute), Probability: 0.4, Threshold: 0.05, ModelVersion: "m1", Decision: "keep"},
		{Time: now.Add(time.Millisecond), App: "twice", Bin: now.Truncate(time.Minute), Probability: 0.4, Threshold: 0.05, ModelVersion: "m1", Decision: "keep"},
	}
	for range 2 {
		if err := s.RecordPredictions(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Predictions(ctx, now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("read %d predictions, want the 2 written (twice): %+v", len(got), got)
	}
}
