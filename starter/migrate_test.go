package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
)

// Only `starter migrate` changes the schema: the other commands refuse a
// database without it and name the command; --check changes nothing.
func TestMigrateIsTheOnlySchemaStep(t *testing.T) {
	cfg := storetest.Unmigrated(t)
	db := []string{"--clickhouse-database", cfg.Database}
	want := fmt.Sprintf("database %s has no Forewarm schema (this program needs schema version %d): run `starter migrate`", cfg.Database, store.SchemaVersion())
	for _, args := range [][]string{{"history", "stats"}, {"migrate", "--check"}} {
		_, err := runStarter(t, append(args, db...)...)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), want) {
			t.Errorf("%v before migrating: exit %d, %v; want %q", args, exitCode(err), err, want)
		}
	}
	out, err := runStarter(t, append([]string{"migrate", "--json"}, db...)...)
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	var res store.MigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.From != 0 || res.To != store.SchemaVersion() || len(res.Applied) != store.SchemaVersion() {
		t.Errorf("migrate --json: %s (%v)", out, err)
	}
	out, err = runStarter(t, append([]string{"migrate"}, db...)...)
	if err != nil || !strings.Contains(out, fmt.Sprintf("is already at schema version %d", store.SchemaVersion())) {
		t.Errorf("second migrate: %v\n%s", err, out)
	}
	if out, err := runStarter(t, append([]string{"migrate", "--check"}, db...)...); err != nil || !strings.Contains(out, "is at schema version") {
		t.Errorf("migrate --check after migrating: %v\n%s", err, out)
	}
	if out, err := runStarter(t, append([]string{"history", "stats", "--json"}, db...)...); err != nil {
		t.Errorf("history stats after migrating: %v\n%s", err, out)
	}
	_, err = runStarter(t, "migrate", "--clickhouse-database", "no-dashes")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), `--clickhouse-database "no-dashes"`) {
		t.Errorf("a bad database name: %v", err)
	}
}
