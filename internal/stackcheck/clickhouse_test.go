package stackcheck

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/forewarm/forewarm/internal/testenv"
)

// A table is created, filled through a batch and read back through
// clickhouse-go's native protocol, in a database of the test's own.
func TestClickHouseCreateFillRead(t *testing.T) {
	cfg := testenv.ClickHouse(t)
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr},
		Auth: clickhouse.Auth{Username: cfg.User, Password: cfg.Password},
	})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		testenv.Missing(t, "ClickHouse at "+cfg.Addr, err)
	}

	db := "stackcheck_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	})
	table := db + ".readings"
	if err := conn.Exec(ctx, "CREATE TABLE "+table+" (t DateTime, app String, n UInt32) ENGINE = MergeTree() ORDER BY (app, t)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	// 18.16 needs the column list in a batch insert: without one it refuses the insert.
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (t, app, n)")
	if err != nil {
		t.Fatalf("prepare batch: %v", err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want uint64
	for i := range 1000 {
		n := uint32(i % 7)
		want += uint64(n)
		if err := batch.Append(start.Add(time.Duration(i)*time.Minute), fmt.Sprintf("app-%d", i%10), n); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("send: %v", err)
	}
	var rows, total uint64
	var apps uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(n), uniqExact(app) FROM "+table).Scan(&rows, &total, &apps); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if rows != 1000 || total != want || apps != 10 {
		t.Fatalf("read back rows=%d sum=%d apps=%d, want 1000, %d, 10", rows, total, apps, want)
	}
}
