// Package storetest gives integration tests a store of their own: a fresh
// ClickHouse database with the whole schema, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/store"
)

// Config returns ClickHouse settings naming a fresh, unused database
// (forewarm_test_<random>) that is dropped when the test ends.
func Config(t testing.TB) config.ClickHouse {
	t.Helper()
	cfg := testenv.ClickHouse(t)
	var r [6]byte
	rand.Read(r[:])
	cfg.Database = "forewarm_test_" + hex.EncodeToString(r[:])
	t.Cleanup(func() { drop(t, cfg) })
	return cfg
}

// New opens a store on a fresh database; it is closed and dropped when the
// test ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	cfg := Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, cfg)
	if err != nil {
		testenv.Missing(t, "ClickHouse at "+cfg.Addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func drop(t testing.TB, cfg config.ClickHouse) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr},
		Auth: clickhouse.Auth{Database: "default", Username: cfg.User, Password: cfg.Password},
	})
	if err != nil {
		t.Logf("drop test database %s: %v", cfg.Database, err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+cfg.Database+"`"); err != nil {
		t.Logf("drop test database %s: %v", cfg.Database, err)
	}
}
