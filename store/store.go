// Package store keeps Forewarm's history in ClickHouse: requests and the
// per-application activity derived from them, loaded traces, hosts and
// their metrics, predictions, preparation events, affinity adjustments and
// the model registry.
//
// The schema is changed by one step only, Migrate (`starter migrate`);
// Open checks the version and refuses a mismatch. With a cluster name
// (--clickhouse-cluster) the tables are replicated (Replicated* engines,
// ZooKeeper) behind Distributed tables that every read and write goes
// through, and migrations run ON CLUSTER; see layout.
//
// It speaks the native protocol through clickhouse-go/v2 and works on
// ClickHouse 18.16 (Debian's package, used locally) as on modern servers,
// where it also enables TTL retention and LowCardinality strings (decided
// from the server version when the schema is created). Rules that keep
// 18.16 happy: every insert goes through PrepareBatch with an explicit
// column list, every call carries a deadline, times are bound as Unix
// seconds inside toDateTime(…).
//
// Activity is stored sparsely (only bins with requests) in a
// SummingMergeTree keyed by (bin start, app, load ID). Live requests reach
// it through a materialized view (load ID ”); a loaded trace writes its
// rows under a fresh load ID that becomes visible only when the load's
// record is written last, so a failed load is never seen and a repeated
// one is recognised by its content key and not counted twice. A router's
// batches (RecordArrivals) go to the arrivals table, one row per (bin,
// app, router, batch): every read of the activity adds them in, one row
// per key, so a retried batch counts once. Every read aggregates with
// sum(), so unmerged parts are always read correctly.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store/chconn"
)

// Store is a connection pool to one ClickHouse database holding
// Forewarm's schema. It is safe for concurrent use.
type Store struct {
	conn    driver.Conn
	db      string
	addr    string
	server  Server
	timeout time.Duration
	log     *slog.Logger
	layout  layout
}

// Server describes the ClickHouse server the store talks to.
type Server struct {
	Version string // e.g. "18.16.1"
	Major   int
	Minor   int
}

// Modern reports whether the server has TTL and LowCardinality (ClickHouse
// 20.1 and later; both exist earlier, but were experimental or incomplete).
func (s Server) Modern() bool { return s.Major >= 20 }

// DefaultTimeout bounds every call that has no earlier deadline.
const DefaultTimeout = chconn.DefaultTimeout

var (
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	clusterRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)
)

func checkNames(cfg config.ClickHouse) error {
	if !identRE.MatchString(cfg.Database) {
		return fmt.Errorf("--clickhouse-database %q: %w", cfg.Database, errNoName)
	}
	if cfg.Cluster != "" && !clusterRE.MatchString(cfg.Cluster) {
		return fmt.Errorf("--clickhouse-cluster %q: use letters, digits, dots, dashes and underscores", cfg.Cluster)
	}
	if len(cfg.Addrs()) == 0 {
		return errors.New("--clickhouse-addr is empty: give host:port of the native protocol")
	}
	return nil
}

// Open connects to ClickHouse and checks that the database holds exactly
// the schema this binary knows, laid out for the configured mode (one
// server or --clickhouse-cluster). It never changes the schema: a missing,
// older or newer one is a *chconn.SchemaError naming the command to run
// (Migrate, `starter migrate`).
func Open(ctx context.Context, cfg config.ClickHouse) (*Store, error) {
	if err := checkNames(cfg); err != nil {
		return nil, err
	}
	s, err := connect(ctx, cfg)
	if chconn.HasCode(err, chconn.CodeUnknownDatabase) {
		return nil, &chconn.SchemaError{Addr: cfg.Addr, Database: cfg.Database, Want: chconn.SchemaVersion}
	}
	if err != nil {
		return nil, err
	}
	if err := chconn.CheckSchema(ctx, s.conn, cfg); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkLayout(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// connect dials the database and learns the server's version.
func connect(ctx context.Context, cfg config.ClickHouse) (*Store, error) {
	conn, err := chconn.Dial(ctx, cfg, cfg.Database)
	if err != nil {
		return nil, err
	}
	log := slog.Default().With("component", "store", "clickhouse", cfg.Addr, "database", cfg.Database)
	s := &Store{conn: conn, db: cfg.Database, addr: cfg.Addr, timeout: DefaultTimeout, log: log,
		layout: layout{db: cfg.Database, cluster: cfg.Cluster}}
	if err := s.detectServer(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) detectServer(ctx context.Context) error {
	var v string
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		return s.conn.QueryRow(ctx, "SELECT version()").Scan(&v)
	})
	if err != nil {
		return fmt.Errorf("clickhouse %s: server version: %w", s.addr, err)
	}
	s.server = Server{Version: v}
	fmt.Sscanf(v, "%d.%d", &s.server.Major, &s.server.Minor)
	s.layout.features = features{lowCardinality: s.server.Modern(), ttl: s.server.Modern()}
	return nil
}

// Close releases the connections.
func (s *Store) Close() error { return s.conn.Close() }

// Server is the ClickHouse server's version.
func (s *Store) Server() Server { return s.server }

// Database is the database the store uses.
func (s *Store) Database() string { return s.db }

// Conn exposes the driver connection for tests and tools that need raw SQL.
func (s *Store) Conn() driver.Conn { return s.conn }

func withTimeout(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	return chconn.WithTimeout(ctx, d, f)
}

// withTimeout runs f under the store's default deadline (or the caller's,
// when earlier): a call to ClickHouse never waits forever.
func (s *Store) withTimeout(ctx context.Context, f func(context.Context) error) error {
	return withTimeout(ctx, s.timeout, f)
}

// scanner is one row of a query's result.
type scanner interface{ Scan(dest ...any) error }

// query runs a SELECT within the store's timeout and hands each row, in
// order, to row; the first error stops it.
func (s *Store) query(ctx context.Context, row func(scanner) error, q string, args ...any) error {
	return s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := row(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// exec runs a statement that returns no rows.
func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	return s.withTimeout(ctx, func(ctx context.Context) error { return s.conn.Exec(ctx, query, args...) })
}

// insert writes n rows through one batch; row(i) gives row i's values in
// the order of cols.
func (s *Store) insert(ctx context.Context, table, cols string, n int, row func(i int) []any) error {
	return chconn.Insert(ctx, s.conn, table, cols, n, row)
}

// insertColumns writes one batch column by column: each of columns is a
// slice of the column's Go type, all of the same length. Much cheaper than
// row-wise appends for large batches.
func (s *Store) insertColumns(ctx context.Context, table, cols string, columns ...any) error {
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+cols+")")
		if err != nil {
			return err
		}
		defer b.Close()
		for i, col := range columns {
			if err := b.Column(i).Append(col); err != nil {
				b.Abort()
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
		return b.Send()
	})
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

// unix is a time bound into SQL as toDateTime(?): portable across server
// versions and time zones.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// nanos orders events within a second; stored as UInt64.
func nanos(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
