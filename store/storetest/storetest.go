// Package storetest gives integration tests a store of their own: a fresh
// ClickHouse database with the whole schema, dropped when the test ends.
// With $CLICKHOUSE_CLUSTER set it is a replicated database on that cluster.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
)

// Unmigrated returns ClickHouse settings naming a fresh database
// (forewarm_test_<random>) that does not exist yet; whatever the test
// creates under that name is dropped when it ends.
func Unmigrated(t testing.TB) config.ClickHouse {
	t.Helper()
	cfg := testenv.ClickHouse(t)
	var r [6]byte
	rand.Read(r[:])
	cfg.Database = "forewarm_test_" + hex.EncodeToString(r[:])
	t.Cleanup(func() { drop(t, cfg) })
	return cfg
}

// Config returns settings naming a fresh database that holds the whole
// schema (migrated as `starter migrate` does), dropped when the test ends.
func Config(t testing.TB) config.ClickHouse {
	t.Helper()
	cfg := Unmigrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := store.Migrate(ctx, cfg); err != nil {
		testenv.Missing(t, "ClickHouse at "+cfg.Addr, err)
	}
	return cfg
}

// New opens a store on a fresh, migrated database; it is closed and
// dropped when the test ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	cfg := Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open the migrated test database: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func drop(t testing.TB, cfg config.ClickHouse) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := chconn.Dial(ctx, cfg, "default")
	if err != nil {
		t.Logf("drop test database %s: %v", cfg.Database, err)
		return
	}
	defer conn.Close()
	stmt := "DROP DATABASE IF EXISTS `" + cfg.Database + "`"
	if cfg.Cluster != "" {
		stmt += " ON CLUSTER `" + cfg.Cluster + "`"
	}
	if err := conn.Exec(ctx, stmt); err != nil {
		t.Logf("drop test database %s: %v", cfg.Database, err)
	}
}
