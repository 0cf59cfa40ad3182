package main_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/store/chconn"
	"github.com/forewarm/forewarm/store/storetest"
)

// An agent that would register refuses to start on a database without the
// schema this build writes, names the versions and the command to run, and
// creates nothing.
func TestRefusesASchemaMismatch(t *testing.T) {
	ch := storetest.Unmigrated(t)
	addr := freeAddr(t)
	cmd := exec.Command(binary, "--listen", addr, "--data-dir", t.TempDir(), "--host-id", "mismatch",
		"--advertise-url", "http://"+addr, "--clickhouse-addr", ch.Addr, "--clickhouse-database", ch.Database)
	cmd.Env = append(os.Environ(), "HOSTAGENT_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	want := fmt.Sprintf("database %s has no Forewarm schema (this program needs schema version %d): run `starter migrate`", ch.Database, chconn.SchemaVersion)
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), want) {
		t.Fatalf("agent on an unmigrated database: %v, output %q; want exit 1 with %q", err, out, want)
	}
	// Nothing was created: the database is still missing.
	if _, err := chconn.Open(ctxT(t), ch); !strings.Contains(fmt.Sprint(err), "has no Forewarm schema") {
		t.Errorf("after the refusal: %v", err)
	}
}

// The agent's binary links the registry's narrow writer, not the store
// with its schema and migrations.
func TestAgentDoesNotLinkTheStore(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/forewarm/forewarm/store" {
			t.Fatalf("hostagent imports %s: agents must write through store/hostreg only", p)
		}
	}
	if !strings.Contains(string(out), "github.com/forewarm/forewarm/store/hostreg") {
		t.Errorf("hostagent does not use store/hostreg:\n%s", out)
	}
}
