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

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/store/chconn"
)

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// ddlTimeout is how long the server waits for every replica to run an ON
// CLUSTER statement before it names the ones that did not (below the
// client's own deadline, so the server's message is the one reported).
const ddlTimeout = 50

// MigrateResult says what Migrate did.
type MigrateResult struct {
	From    int    `json:"from"`    // schema version before (0: none)
	To      int    `json:"to"`      // schema version after
	Applied []int  `json:"applied"` // versions applied by this call
	Cluster string `json:"cluster,omitempty"`
}

// Migrate creates the database if it is missing and applies the schema
// migrations this binary knows: the one step that changes the schema
// (`starter migrate`). Safe to run twice and from several processes at
// once. In cluster mode every statement runs ON CLUSTER, so every replica
// must be up.
func Migrate(ctx context.Context, cfg config.ClickHouse) (MigrateResult, error) {
	if err := checkNames(cfg); err != nil {
		return MigrateResult{}, err
	}
	l := layout{db: cfg.Database, cluster: cfg.Cluster}
	// The database may not exist yet, and a connection naming a missing
	// database is refused: create it through a connection without one.
	boot, err := chconn.Dial(ctx, cfg, "") // the server's default database
	if err != nil {
		return MigrateResult{}, err
	}
	err = withTimeout(ctx, DefaultTimeout, func(ctx context.Context) error {
		return boot.Exec(ddlContext(ctx, cfg.Cluster), l.createDatabase())
	})
	boot.Close()
	if err != nil && !alreadyExists(err) { // another process may win the race
		return MigrateResult{}, fmt.Errorf("clickhouse %s: create database %s: %w%s", cfg.Addr, cfg.Database, err, clusterHint(cfg.Cluster))
	}
	s, err := connect(ctx, cfg)
	if err != nil {
		return MigrateResult{}, err
	}
	defer s.Close()
	if err := s.checkLayout(ctx); err != nil {
		return MigrateResult{}, err
	}
	return s.migrate(ctx)
}

// ddlContext carries the ON CLUSTER wait to the server.
func ddlContext(ctx context.Context, cluster string) context.Context {
	if cluster == "" {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"distributed_ddl_task_timeout": ddlTimeout}))
}

func clusterHint(cluster string) string {
	if cluster == "" {
		return ""
	}
	return fmt.Sprintf(" (ON CLUSTER %s waits for every replica: are they all up, and ZooKeeper too?)", cluster)
}

// migrate applies the migrations not yet recorded in schema_migrations.
// ClickHouse has no transactions or locks, so safety comes from idempotent
// statements: two processes migrating at once both run CREATE … IF NOT
// EXISTS (a lost race reports "already exists", which is success here)
// and both record the version; the ReplacingMergeTree folds the duplicate.
func (s *Store) migrate(ctx context.Context) (MigrateResult, error) {
	res := MigrateResult{Cluster: s.layout.cluster, Applied: []int{}}
	dctx := ddlContext(ctx, s.layout.cluster)
	stmts, err := s.layout.createTable(migrationsTable)
	if err != nil {
		return res, err
	}
	for _, stmt := range stmts {
		if err := s.exec(dctx, stmt); err != nil && !alreadyExists(err) {
			return res, fmt.Errorf("clickhouse %s: create schema_migrations: %w%s", s.addr, err, clusterHint(s.layout.cluster))
		}
	}
	applied, err := s.appliedVersions(ctx)
	if err != nil {
		return res, err
	}
	for v := range applied {
		res.From = max(res.From, v)
	}
	if res.From > SchemaVersion() {
		return res, &chconn.SchemaError{Addr: s.addr, Database: s.db, Have: res.From, Want: SchemaVersion()}
	}
	host, _ := os.Hostname()
	by := fmt.Sprintf("%s/%d", host, os.Getpid())
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		stmts, err := s.layout.statements(m)
		if err != nil {
			return res, fmt.Errorf("migration %d: %w", m.version, err)
		}
		for i, stmt := range stmts {
			if err := s.exec(dctx, stmt); err != nil && !alreadyExists(err) {
				return res, fmt.Errorf("clickhouse %s: migration %d (%s) statement %d: %w%s", s.addr, m.version, m.name, i+1, err, clusterHint(s.layout.cluster))
			}
		}
		err = s.insert(ctx, "schema_migrations", "version, name, applied_at, applied_by", 1, func(int) []any {
			return []any{uint32(m.version), m.name, time.Now(), by}
		})
		if err != nil {
			return res, fmt.Errorf("record migration %d: %w", m.version, err)
		}
		res.Applied = append(res.Applied, m.version)
		s.log.Info("applied schema migration", "version", m.version, "name", m.name, "cluster", s.layout.cluster)
	}
	res.To = SchemaVersion()
	return res, nil
}

func (s *Store) appliedVersions(ctx context.Context) (map[int]bool, error) {
	applied := map[int]bool{}
	err := s.query(ctx, func(rows scanner) error {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return err
		}
		applied[int(v)] = true
		return nil
	}, "SELECT DISTINCT version FROM schema_migrations")
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

// checkLayout refuses a database laid out for the other mode: tables made
// for one server used as a cluster's, or the reverse.
func (s *Store) checkLayout(ctx context.Context) error {
	var engine string
	err := s.query(ctx, func(rows scanner) error {
		if err := rows.Scan(&engine); err != nil {
			return err
		}
		return nil
	}, "SELECT engine FROM system.tables WHERE database = ? AND name = 'requests'", s.db)
	if err != nil {
		return fmt.Errorf("clickhouse %s: read system.tables: %w", s.addr, err)
	}
	switch {
	case engine == "": // not created yet
	case s.layout.cluster != "" && engine != "Distributed":
		return fmt.Errorf("clickhouse %s: database %s was migrated for one server (its tables are %s), but --clickhouse-cluster is %q: drop the flag, or migrate a new database for the cluster",
			s.addr, s.db, engine, s.layout.cluster)
	case s.layout.cluster == "" && engine == "Distributed":
		return fmt.Errorf("clickhouse %s: database %s was migrated for a cluster (its tables are Distributed): give --clickhouse-cluster (or $CLICKHOUSE_CLUSTER)", s.addr, s.db)
	}
	return nil
}

func alreadyExists(err error) bool {
	return chconn.HasCode(err, chconn.CodeTableAlreadyExists, chconn.CodeDatabaseAlreadyExists)
}

// errNoName is returned for database and cluster names that cannot be
// quoted safely.
var errNoName = errors.New("use letters, digits and underscores")
