package appspec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `{
  "app": "svc",
  "version": "3",
  "command": ["./bin/svc", "--model", "m.bin"],
  "env": {"MODE": "fast"},
  "readiness": {"path": "/healthz"},
  "shadow": {"method": "POST", "path": "/predict", "body": "{}", "max_latency": "500ms"},
  "memory_mb": 64, "cpu_milli": 500, "scratch_mb": 8, "concurrency": 4
}`

func TestParseFillsDefaultsAndResolvesPaths(t *testing.T) {
	s, err := Parse("svc.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.PortEnv != "PORT" || s.Readiness.Timeout.D() != DefaultReadinessTimeout || s.Shadow.ExpectStatus != 200 || s.StopGrace.D() != DefaultStopGrace {
		t.Errorf("defaults not filled: %+v", s)
	}
	if s.Shadow.MaxLatency.D() != 500*time.Millisecond {
		t.Errorf("max latency %s", s.Shadow.MaxLatency.D())
	}
	s.Folder = "/srv/specs"
	if s.Program() != "/srv/specs/bin/svc" || s.WorkDir() != "/srv/specs" {
		t.Errorf("program %s, dir %s", s.Program(), s.WorkDir())
	}
	s.Command[0] = "python3"
	if s.Program() != "python3" {
		t.Errorf("a bare name is looked up in PATH, got %s", s.Program())
	}
}

// Every mistake is named by its field (all of them at once), and syntax
// errors by their line.
func TestParseNamesEveryBadField(t *testing.T) {
	bad := `{"app": "a b", "version": "", "command": [], "env": {"PORT": "1", "1x": "y"},
  "readiness": {"path": "healthz"}, "shadow": {"method": "DELETE", "path": "/", "max_latency": "0s"},
  "memory_mb": 1, "cpu_milli": 0, "concurrency": 0}`
	_, err := Parse("bad.json", []byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"bad.json", "app:", "version:", "command:", "env.PORT:", "env.1x:", "readiness.path:", "shadow.method:",
		"shadow.max_latency:", "memory_mb:", "cpu_milli:", "concurrency:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	for in, want := range map[string]string{
		"{\n  \"app\": \"x\",\n  \"memory_mb\": \"lots\"\n}": "line 3: field memory_mb",
		"{\n  \"app\": \"x\",\n  oops\n}":                    "line 3:",
		`{"app": "x", "colour": "blue"}`:                     `unknown field "colour"`,
		`{"app": "x", "stop_grace": 5}`:                      "a duration is a string",
		good + good:                                          "more than one JSON value",
	} {
		if _, err := Parse("f.json", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func TestLoadAndLookup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("svc.json", good)
	write("README.txt", "not a spec")
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := set.Lookup("svc", "3"); err != nil || s.Folder != dir {
		t.Errorf("lookup: %v %+v", err, s)
	}
	if _, err := set.Lookup("svc", "2"); err == nil || !strings.Contains(err.Error(), "at spec version 3 here, not 2") {
		t.Errorf("other version: %v", err)
	}
	if _, err := set.Lookup("other", ""); err == nil || !strings.Contains(err.Error(), "no spec of application other") {
		t.Errorf("unknown app: %v", err)
	}

	// A file named after another app, or any bad file, fails the whole load.
	write("misnamed.json", good)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "misnamed.json") || !strings.Contains(err.Error(), "must be the file's name") {
		t.Errorf("misnamed: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing folder loads")
	}
}
