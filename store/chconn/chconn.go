// Package chconn opens connections to Forewarm's ClickHouse database and
// checks that the database holds the schema version this build expects.
//
// It holds no schema of its own: package store owns the tables and the
// migrations, and host agents write through package hostreg, which needs
// only this package. A program that is not the migrator never changes the
// schema; it refuses to start on a mismatch (SchemaError) and says which
// command brings the database up to date.
//
// Rules that keep ClickHouse 18.16 happy hold here as in the store: every
// insert goes through PrepareBatch with an explicit column list, and every
// call carries a deadline.
package chconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/forewarm/forewarm/internal/config"
)

// SchemaVersion is the schema version this build reads and writes. The
// store's newest migration has this number (a test keeps them equal).
const SchemaVersion = 5

// DefaultTimeout bounds every call that has no earlier deadline.
const DefaultTimeout = 60 * time.Second

// ClickHouse error codes Forewarm recognises.
const (
	CodeUnknownTable          = 60
	CodeTableAlreadyExists    = 57
	CodeUnknownDatabase       = 81
	CodeDatabaseAlreadyExists = 82
)

// HasCode reports whether err is a ClickHouse exception with one of codes.
func HasCode(err error, codes ...int32) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	for _, c := range codes {
		if ex.Code == c {
			return true
		}
	}
	return false
}

// Dial connects to the servers of cfg (in order: the first that answers)
// with database db, and checks the connection with a ping. In cluster mode
// inserts into Distributed tables are synchronous, so a write is visible
// to the next read on the same server.
func Dial(ctx context.Context, cfg config.ClickHouse, db string) (driver.Conn, error) {
	addrs := cfg.Addrs()
	if len(addrs) == 0 {
		return nil, errors.New("--clickhouse-addr is empty: give host:port of the native protocol")
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	opts := &clickhouse.Options{
		TLS:              tc,
		Protocol:         clickhouse.Native,
		Addr:             addrs,
		Auth:             clickhouse.Auth{Database: db, Username: cfg.User, Password: cfg.Password},
		DialTimeout:      5 * time.Second,
		MaxOpenConns:     8,
		MaxIdleConns:     4,
		ConnMaxLifetime:  time.Hour,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	}
	if cfg.Cluster != "" {
		opts.Settings = clickhouse.Settings{"insert_distributed_sync": 1}
	}
	conn, err := clickhouse.Open(opts)
	if err == nil {
		err = WithTimeout(ctx, 10*time.Second, conn.Ping)
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach ClickHouse at %s (database %s): %w; %s", cfg.Addr, db, err, cfg.Hint())
	}
	return conn, nil
}

// Open connects to cfg's database and checks its schema version. A missing
// database or an older or newer schema is a *SchemaError.
func Open(ctx context.Context, cfg config.ClickHouse) (driver.Conn, error) {
	conn, err := Dial(ctx, cfg, cfg.Database)
	if HasCode(err, CodeUnknownDatabase) {
		return nil, &SchemaError{Addr: cfg.Addr, Database: cfg.Database, Want: SchemaVersion}
	}
	if err != nil {
		return nil, err
	}
	if err := CheckSchema(ctx, conn, cfg); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// SchemaError says the database does not hold the schema this program was
// built for, and what to do about it.
type SchemaError struct {
	Addr, Database string
	Have           int // 0: no Forewarm schema at all
	Want           int
}

func (e *SchemaError) Error() string {
	switch {
	case e.Have == 0:
		return fmt.Sprintf("ClickHouse %s: database %s has no Forewarm schema (this program needs schema version %d): run `starter migrate` with the same --clickhouse-* settings first",
			e.Addr, e.Database, e.Want)
	case e.Have < e.Want:
		return fmt.Sprintf("ClickHouse %s: database %s has schema version %d, this program needs %d: run `starter migrate` with the same --clickhouse-* settings, then start this program again",
			e.Addr, e.Database, e.Have, e.Want)
	default:
		return fmt.Sprintf("ClickHouse %s: database %s has schema version %d, newer than this program's %d: run the release that migrated it (or newer)",
			e.Addr, e.Database, e.Have, e.Want)
	}
}

// AppliedVersion is the newest schema version recorded in the connection's
// database; 0 when it has no schema_migrations table.
func AppliedVersion(ctx context.Context, conn driver.Conn) (int, error) {
	var v uint32
	err := WithTimeout(ctx, DefaultTimeout, func(ctx context.Context) error {
		return conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v)
	})
	if HasCode(err, CodeUnknownTable) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	return int(v), nil
}

// CheckSchema returns a *SchemaError unless the database is at exactly
// SchemaVersion.
func CheckSchema(ctx context.Context, conn driver.Conn, cfg config.ClickHouse) error {
	v, err := AppliedVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("ClickHouse %s, database %s: %w", cfg.Addr, cfg.Database, err)
	}
	if v != SchemaVersion {
		return &SchemaError{Addr: cfg.Addr, Database: cfg.Database, Have: v, Want: SchemaVersion}
	}
	return nil
}

// WithTimeout runs f under a deadline of d (or the caller's, when earlier):
// a call to ClickHouse never waits forever.
func WithTimeout(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// Insert writes n rows through one batch; row(i) gives row i's values in
// the order of cols.
func Insert(ctx context.Context, conn driver.Conn, table, cols string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	err := WithTimeout(ctx, DefaultTimeout, func(ctx context.Context) error {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+cols+")")
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
