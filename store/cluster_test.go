//go:build cluster

// Cluster tests: the store on two ClickHouse replicas of one shard
// (deploy/local/up.sh replicas), as `make test-cluster` runs them:
//
//	CLICKHOUSE_ADDR=127.0.0.1:19001,127.0.0.1:19002 CLICKHOUSE_CLUSTER=forewarm \
//	  go test -tags cluster ./store/
//
// The whole store suite runs against the cluster as well (same settings,
// without the tag's extra tests).
package store_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// clusterConfig is a fresh, migrated database on the cluster; the test
// fails (never skips) when the environment names no cluster.
func clusterConfig(t *testing.T) config.ClickHouse {
	t.Helper()
	cfg := testenv.ClickHouse(t)
	if cfg.Cluster == "" || len(cfg.Addrs()) < 2 {
		t.Fatalf("the cluster tests need CLICKHOUSE_CLUSTER and two replicas in CLICKHOUSE_ADDR (have %q, %q): run `make test-cluster`", cfg.Cluster, cfg.Addr)
	}
	return storetest.Config(t)
}

// replicaCounts counts the rows each replica holds itself, per table.
func replicaCounts(t *testing.T, cfg config.ClickHouse, addr string, tables []string) (map[string]uint64, error) {
	t.Helper()
	one := cfg
	one.Addr, one.Cluster = addr, ""
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := chconn.Dial(ctx, one, cfg.Database)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	out := map[string]uint64{}
	for _, tb := range tables {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+tb+"_local").Scan(&n); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", tb, addr, err)
		}
		out[tb] = n
	}
	return out, nil
}

// stateDir is where deploy/local keeps the pid files of what it started.
func stateDir(t *testing.T) string {
	if d := os.Getenv("FOREWARM_STATE"); d != "" {
		return d
	}
	d, err := filepath.Abs("../.state")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReplicaLossAndCatchUp kills (SIGKILL) the replica the store is
// connected to, keeps loading, recording and reading through the other,
// restarts the killed one and waits until it holds exactly the rows of the
// survivor. It logs the figures: time to the first operation served after
// the kill, and the catch-up time.
func TestReplicaLossAndCatchUp(t *testing.T) {
	cfg := clusterConfig(t)
	addrs := cfg.Addrs()
	if p := os.Getenv("REPLICA1_TCP_PORT"); p != "" && !strings.HasSuffix(addrs[0], ":"+p) {
		t.Fatalf("CLICKHOUSE_ADDR's first replica %s is not replica1 (port %s)", addrs[0], p)
	}
	ctx := ctxT(t)
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tables := []string{"activity", "loads", "app_profiles", "requests", "host_metrics", "hosts", "predictions"}

	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	load := func(seed int64) {
		t.Helper()
		tr := trace.Synth(trace.SynthOptions{Apps: 40, Days: 1, Seed: seed, Start: day})
		if res, err := s.LoadTrace(ctx, tr, store.LoadOptions{Format: "synth"}); err != nil || res.Duplicate {
			t.Fatalf("load %d: %+v (%v)", seed, res, err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	record := func(n int) error {
		var reqs []store.Request
		for i := range n {
			reqs = append(reqs, store.Request{Time: now.Add(time.Duration(i) * time.Second), RequestID: uuid.NewString(), App: "live",
				VolumeType: "ssd", SizeMB: 64, ReadRatio: 0.5, Host: "h1", Warm: i%2 == 0, WorkMS: 10, Outcome: records.OutcomeWarm})
		}
		if err := s.RecordRequests(ctx, reqs); err != nil {
			return err
		}
		if err := s.RegisterHost(ctx, store.Host{ID: fmt.Sprintf("h%d", n), URL: "http://h", MemoryMB: 1024}); err != nil {
			return err
		}
		if err := s.RecordHostMetrics(ctx, []store.HostMetrics{{HostID: "h1", CPUUtil: 0.5, Leases: n}}); err != nil {
			return err
		}
		return s.RecordPredictions(ctx, []store.Prediction{{Time: time.Now(), App: "live", Bin: now, Probability: 0.5, Decision: "prepare"}})
	}
	load(1)
	if err := record(10); err != nil {
		t.Fatal(err)
	}
	before := stats(t, s)

	// Kill the replica the store's connections go to.
	pidFile := filepath.Join(stateDir(t), "replica1.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("replica1's pid file (deploy/local/up.sh replica1): %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL replica1 (pid %d): %v", pid, err)
	}
	killed := time.Now()
	for testenv.Dialable(addrs[0]) == nil {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("replica1 still answers 10 s after SIGKILL")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Reads, requests and a load continue through replica2, at once.
	if got := stats(t, s); got != before {
		t.Fatalf("stats after the kill: %+v, want %+v", got, before)
	}
	failover := time.Since(killed)
	if err := record(20); err != nil {
		t.Fatalf("recording after the kill: %v", err)
	}
	load(2)
	after := stats(t, s)
	if after.LiveRequests != before.LiveRequests+20 || after.Loads != before.Loads+1 || after.Requests <= before.Requests {
		t.Fatalf("stats after writes on one replica: %+v (before %+v)", after, before)
	}
	act, err := s.RecentActivity(ctx, []string{"live"}, now.Add(20*time.Second), 20, time.Second)
	if err != nil || act["live"][0] != 2 { // 1 request of the first batch, 1 of the second
		t.Fatalf("activity through the survivor: %v (%v)", act["live"], err)
	}
	if h, err := s.Hosts(ctx, killed.Add(-time.Minute)); err != nil || len(h) != 2 {
		t.Fatalf("hosts through the survivor: %+v (%v)", h, err)
	}
	survivor, err := replicaCounts(t, cfg, addrs[1], tables)
	if err != nil {
		t.Fatal(err)
	}
	served := time.Since(killed)

	// Restart the killed replica: it fetches what it missed.
	up := exec.Command("bash", "../deploy/local/up.sh", "replica1")
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("restart replica1: %v\n%s", err, out)
	}
	restarted := time.Now()
	// Rows replica1 took just before its death may not have reached
	// replica2 yet: they come back with it. So the two must become equal,
	// holding at least what the survivor held alone.
	var caught, now2 map[string]uint64
	for {
		caught, err = replicaCounts(t, cfg, addrs[0], tables)
		if err == nil {
			now2, err = replicaCounts(t, cfg, addrs[1], tables)
		}
		if err == nil && fmt.Sprint(caught) == fmt.Sprint(now2) {
			break
		}
		if time.Since(restarted) > 2*time.Minute {
			t.Fatalf("replica1 has not caught up in 2 minutes: %v, replica2 %v (%v)", caught, now2, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for tb, n := range survivor {
		if caught[tb] < n {
			t.Errorf("%s: %d rows after the catch-up, the survivor alone had %d", tb, caught[tb], n)
		}
	}
	catchUp := time.Since(restarted)
	// And the store reads the same through it.
	s2, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := stats(t, s2); got.LiveRequests != after.LiveRequests || got.Loads != after.Loads || got.Requests != after.Requests {
		t.Errorf("stats through the restarted replica: %+v, want %+v", got, after)
	}
	t.Logf("replica loss: first read served %v after SIGKILL; writes, a load and reads done %v after it", failover.Round(time.Millisecond), served.Round(time.Millisecond))
	t.Logf("catch-up: replica1 equal to replica2 %v after its restart; rows per table %v (the survivor alone had %v)", catchUp.Round(time.Millisecond), caught, survivor)
}

// A database migrated for the cluster is refused without the cluster
// setting, and one migrated for a single server is refused with it.
func TestClusterLayoutMismatchRefused(t *testing.T) {
	cfg := clusterConfig(t)
	ctx := ctxT(t)
	single := cfg
	single.Cluster = ""
	if _, err := store.Open(ctx, single); err == nil || !strings.Contains(err.Error(), "was migrated for a cluster") || !strings.Contains(err.Error(), "--clickhouse-cluster") {
		t.Errorf("a cluster database opened as one server's: %v", err)
	}
	plain := storetest.Unmigrated(t)
	plain.Cluster, plain.Addr = "", cfg.Addrs()[0]
	if _, err := store.Migrate(ctx, plain); err != nil {
		t.Fatal(err)
	}
	plain.Cluster = cfg.Cluster
	if _, err := store.Open(ctx, plain); err == nil || !strings.Contains(err.Error(), "was migrated for one server") {
		t.Errorf("a single-server database opened as the cluster's: %v", err)
	}
	if _, err := store.Migrate(ctx, plain); err == nil || !strings.Contains(err.Error(), "was migrated for one server") {
		t.Errorf("migrating a single-server database as the cluster's: %v", err)
	}
}

// openReplica opens the store through one replica only, once that replica
// has the schema (it replicates asynchronously).
func openReplica(t *testing.T, cfg config.ClickHouse, addr string) *store.Store {
	t.Helper()
	one := cfg
	one.Addr = addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := store.Open(ctxT(t), one)
		if err == nil {
			t.Cleanup(func() { s.Close() })
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("open through %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Routers' batches on the replicated tables: two routers' identical
// batches are two blocks (replicated insert deduplication would fold
// identical ones), a retried batch counts once, and a batch is
// acknowledged only once both replicas hold it, so a replica that has not
// fetched it (fetches stopped) never lets a mirror freeze a bin without an
// acknowledged batch; both replicas answer alike meanwhile.
func TestArrivalBatchesOnReplicas(t *testing.T) {
	cfg := clusterConfig(t)
	addrs := cfg.Addrs()
	ctx := ctxT(t)
	r1, r2 := openReplica(t, cfg, addrs[0]), openReplica(t, cfg, addrs[1])
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	rows := []store.Arrival{{App: "a", Bin: t0, Requests: 3}}
	counts := func(s *store.Store) ([]uint64, error) {
		got, err := s.BusyBins(ctx, t0, t0.Add(time.Minute), time.Minute)
		return got["a"].Counts, err
	}
	if err := r1.RecordArrivals(ctx, store.ArrivalBatch{Router: "r1", Batch: "1", Rows: rows}); err != nil {
		t.Fatal(err)
	}
	if err := r1.RecordArrivals(ctx, store.ArrivalBatch{Router: "r2", Batch: "1", Rows: rows}); err != nil {
		t.Fatal(err)
	}
	if err := r2.RecordArrivals(ctx, store.ArrivalBatch{Router: "r1", Batch: "1", Rows: rows}); err != nil { // a retry, through the other replica
		t.Fatal(err)
	}
	for i, s := range []*store.Store{r1, r2} {
		if got, err := counts(s); err != nil || fmt.Sprint(got) != "[6]" {
			t.Fatalf("through replica %d: %v (%v), want [6]: two routers' batches, one of them retried", i+1, got, err)
		}
	}

	// Replica 1 stops fetching; a batch written through replica 2 is not
	// acknowledged while replica 1 lacks it.
	execSQL(t, r1, "SYSTEM STOP FETCHES arrivals_local")
	stopped := true
	defer func() {
		if stopped {
			execSQL(t, r1, "SYSTEM START FETCHES arrivals_local")
		}
	}()
	late := store.ArrivalBatch{Router: "r1", Batch: "2", Rows: []store.Arrival{{App: "a", Bin: t0, Requests: 4}}}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := r2.RecordArrivals(wctx, late)
	cancel()
	for i, s := range []*store.Store{r1, r2} {
		got, rerr := counts(s)
		if err == nil && rerr == nil && fmt.Sprint(got) != "[10]" {
			t.Fatalf("through replica %d: %v: a freeze without a batch acknowledged to its router", i+1, got)
		}
		if err != nil && rerr == nil && fmt.Sprint(got) != "[6]" {
			t.Errorf("through replica %d: %v: the replicas disagree on a batch not acknowledged (want [6])", i+1, got)
		}
	}
	if err == nil {
		t.Fatalf("a batch acknowledged while replica 1 does not fetch")
	}
	t.Logf("while replica 1 does not fetch, the batch is refused: %v", err)

	// Fetching again, the router's retry is acknowledged and counted once.
	execSQL(t, r1, "SYSTEM START FETCHES arrivals_local")
	stopped = false
	if err := r2.RecordArrivals(ctx, late); err != nil {
		t.Fatalf("the retry after the replica came back: %v", err)
	}
	for i, s := range []*store.Store{r1, r2} {
		if got, err := counts(s); err != nil || fmt.Sprint(got) != "[10]" {
			t.Errorf("through replica %d: %v (%v), want [10]", i+1, got, err)
		}
	}
}
