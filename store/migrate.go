package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// ClickHouse error codes tolerated while creating objects another process
// may be creating at the same moment.
const (
	codeTableAlreadyExists    = 57
	codeDatabaseAlreadyExists = 82
)

// migrate applies the migrations not yet recorded in schema_migrations.
// ClickHouse has no transactions or locks, so safety comes from idempotent
// statements: two processes migrating at once both run CREATE … IF NOT
// EXISTS (a lost race reports "already exists", which is success here)
// and both record the version; the ReplacingMergeTree folds the duplicate.
func (s *Store) migrate(ctx context.Context) error {
	err := s.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32,
		name String,
		applied_at DateTime,
		applied_by String
	) ENGINE = ReplacingMergeTree() ORDER BY version`)
	if err != nil && !alreadyExists(err) {
		return fmt.Errorf("clickhouse %s: create schema_migrations: %w", s.addr, err)
	}
	applied, err := s.appliedVersions(ctx)
	if err != nil {
		return err
	}
	for v := range applied {
		if v > SchemaVersion() {
			return fmt.Errorf("database %s has schema version %d, newer than this binary's %d: upgrade this program", s.db, v, SchemaVersion())
		}
	}
	host, _ := os.Hostname()
	by := fmt.Sprintf("%s/%d", host, os.Getpid())
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for i, stmt := range m.stmts {
			sql, err := s.features.render(stmt)
			if err != nil {
				return fmt.Errorf("migration %d statement %d: %w", m.version, i+1, err)
			}
			if err := s.exec(ctx, sql); err != nil && !alreadyExists(err) {
				return fmt.Errorf("clickhouse %s: migration %d (%s) statement %d: %w", s.addr, m.version, m.name, i+1, err)
			}
		}
		err := s.insert(ctx, "schema_migrations", "version, name, applied_at, applied_by", 1, func(int) []any {
			return []any{uint32(m.version), m.name, time.Now(), by}
		})
		if err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
		s.log.Info("applied schema migration", "version", m.version, "name", m.name)
	}
	return nil
}

func (s *Store) appliedVersions(ctx context.Context) (map[int]bool, error) {
	applied := map[int]bool{}
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v uint32
			if err := rows.Scan(&v); err != nil {
				return err
			}
			applied[int(v)] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: read schema_migrations: %w", s.addr, err)
	}
	return applied, nil
}

// AppliedVersions lists the schema versions recorded in the database.
func (s *Store) AppliedVersions(ctx context.Context) ([]int, error) {
	m, err := s.appliedVersions(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(m)), nil
}

func alreadyExists(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && (ex.Code == codeTableAlreadyExists || ex.Code == codeDatabaseAlreadyExists)
}
