// Package store keeps Forewarm's history in ClickHouse: requests and the
// per-application activity derived from them, loaded traces, hosts and
// their metrics, predictions, preparation events, affinity adjustments and
// the model registry.
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
// one is recognised by its content key and not counted twice. Every read
// aggregates with sum(), so unmerged parts are always read correctly.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/forewarm/forewarm/internal/config"
)

// Store is a connection pool to one ClickHouse database holding
// Forewarm's schema. It is safe for concurrent use.
type Store struct {
	conn     driver.Conn
	db       string
	addr     string
	server   Server
	timeout  time.Duration
	log      *slog.Logger
	features features
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

// features are the schema options chosen from the server version.
type features struct {
	lowCardinality bool
	ttl            bool
}

// DefaultTimeout bounds every call that has no earlier deadline.
const DefaultTimeout = 60 * time.Second

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Open connects to ClickHouse, creates the database if it is missing and
// applies the schema migrations this binary knows (safe to run twice and
// from several processes at once).
func Open(ctx context.Context, cfg config.ClickHouse) (*Store, error) {
	if !identRE.MatchString(cfg.Database) {
		return nil, fmt.Errorf("--clickhouse-database %q: use letters, digits and underscores", cfg.Database)
	}
	if cfg.Addr == "" {
		return nil, errors.New("--clickhouse-addr is empty: give host:port of the native protocol")
	}
	log := slog.Default().With("component", "store", "clickhouse", cfg.Addr, "database", cfg.Database)
	// The database may not exist yet, and a connection naming a missing
	// database is refused: create it through a connection without one.
	boot, err := dial(ctx, cfg, "default")
	if err != nil {
		return nil, err
	}
	err = withTimeout(ctx, DefaultTimeout, func(ctx context.Context) error {
		return boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+cfg.Database+"`")
	})
	boot.Close()
	if err != nil && !alreadyExists(err) { // another process may win the race
		return nil, fmt.Errorf("clickhouse %s: create database %s: %w", cfg.Addr, cfg.Database, err)
	}
	conn, err := dial(ctx, cfg, cfg.Database)
	if err != nil {
		return nil, err
	}
	s := &Store{conn: conn, db: cfg.Database, addr: cfg.Addr, timeout: DefaultTimeout, log: log}
	if err := s.detectServer(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func dial(ctx context.Context, cfg config.ClickHouse, db string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:         clickhouse.Native,
		Addr:             []string{cfg.Addr},
		Auth:             clickhouse.Auth{Database: db, Username: cfg.User, Password: cfg.Password},
		DialTimeout:      5 * time.Second,
		MaxOpenConns:     8,
		MaxIdleConns:     4,
		ConnMaxLifetime:  time.Hour,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	})
	if err == nil {
		err = withTimeout(ctx, 10*time.Second, conn.Ping)
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach ClickHouse at %s (database %s): %w; is the stack up? try `make up`", cfg.Addr, db, err)
	}
	return conn, nil
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
	s.features = features{lowCardinality: s.server.Modern(), ttl: s.server.Modern()}
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
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// withTimeout runs f under the store's default deadline (or the caller's,
// when earlier): a call to ClickHouse never waits forever.
func (s *Store) withTimeout(ctx context.Context, f func(context.Context) error) error {
	return withTimeout(ctx, s.timeout, f)
}

// exec runs a statement that returns no rows.
func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	return s.withTimeout(ctx, func(ctx context.Context) error { return s.conn.Exec(ctx, query, args...) })
}

// insert writes n rows through one batch; row(i) gives row i's values in
// the order of cols.
func (s *Store) insert(ctx context.Context, table, cols string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+cols+")")
		if err != nil {
			return err
		}
		defer b.Close()
		for i := range n {
			if err := b.Append(row(i)...); err != nil {
				b.Abort()
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
		return b.Send()
	})
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
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
