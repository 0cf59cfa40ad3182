// Package compose_test validates docker-compose.yml with Debian's
// docker-compose (`config`: interpolation, schema, references) and checks
// what it cannot: the files it mounts and builds from exist, and every
// setting it gives a Forewarm container is one the program reads.
package compose_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/forewarm/forewarm/agent/api"
	"github.com/forewarm/forewarm/internal/testenv"
)

const root = "compose-test-root-secret-0123456789"

// secrets are the values .env must give (env.example lists them).
var secrets = map[string]string{
	"TEMPORAL_DB_PASSWORD":         "pg-secret",
	"CLICKHOUSE_ADMIN_PASSWORD":    "admin-secret",
	"FOREWARM_CH_MIGRATE_PASSWORD": "migrate-secret",
	"FOREWARM_CH_PASSWORD":         "worker-secret",
	"FOREWARM_CH_AGENT_PASSWORD":   "agent-secret",
	"FOREWARM_AGENT_ROOT_SECRET":   root,
	"FOREWARM_AGENT_1_TOKEN":       api.DeriveToken([]byte(root), "agent-1"),
	"FOREWARM_AGENT_2_TOKEN":       api.DeriveToken([]byte(root), "agent-2"),
}

func compose(t *testing.T, env map[string]string, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		testenv.Missing(t, "docker-compose (deploy/local/install.sh compose)", err)
	}
	cmd := exec.Command(bin, append([]string{"-f", "docker-compose.yml"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd.CombinedOutput()
}

type service struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Environment map[string]string `json:"environment"`
	Volumes     []string          `json:"volumes"` // source:target[:mode], sources resolved

}

func TestComposeFileIsValid(t *testing.T) {
	if out, err := compose(t, secrets, "config", "-q"); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
	// A value missing from .env is refused by name.
	for k := range secrets {
		partial := map[string]string{}
		for k2, v := range secrets {
			if k2 != k {
				partial[k2] = v
			}
		}
		out, err := compose(t, partial, "config", "-q")
		if err == nil || !strings.Contains(string(out), "set "+k+" in .env") {
			t.Errorf("without %s: %v\n%s", k, err, out)
		}
	}
	env, err := os.ReadFile("env.example")
	if err != nil {
		t.Fatal(err)
	}
	for k := range secrets {
		if !strings.Contains(string(env), "\n"+k+"=") {
			t.Errorf("env.example does not list %s", k)
		}
	}

	out, err := compose(t, secrets, "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]service `json:"services"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"postgresql", "temporal", "temporal-setup", "temporal-ui", "clickhouse", "migrate", "worker", "agent-1", "agent-2"} {
		if _, ok := cfg.Services[s]; !ok {
			t.Errorf("no service %s", s)
		}
	}
	worker := programEnv(t, "worker", "internal/config")
	agent := programEnv(t, "hostagent", "internal/config")
	starter := programEnv(t, "starter", "internal/config")
	for name, s := range cfg.Services {
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s builds from %s: %v", name, s.Build.Dockerfile, err)
			}
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); filepath.IsAbs(src) {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
		var reads map[string]bool
		switch {
		case name == "migrate":
			reads = starter
		case strings.HasPrefix(s.Image, "forewarm/worker"):
			reads = worker
		case strings.HasPrefix(s.Image, "forewarm/hostagent"):
			reads = agent
		default:
			continue
		}
		for k := range s.Environment {
			if !reads[k] {
				t.Errorf("service %s sets %s, which its program does not read", name, k)
			}
		}
	}
	// Each agent holds the token the worker derives for its ID, and its
	// advertised URL passes the worker's allow pattern.
	w := cfg.Services["worker"].Environment
	for _, id := range []string{"agent-1", "agent-2"} {
		e := cfg.Services[id].Environment
		if e["HOSTAGENT_HOST_ID"] != id || e["CLICKHOUSE_USER"] != "forewarm_agent" || e["HOSTAGENT_TOKEN"] != api.DeriveToken([]byte(w["FOREWARM_AGENT_ROOT_SECRET"]), id) {
			t.Errorf("%s: its ID, ClickHouse user or token does not fit the worker's root secret: %v", id, e)
		}
		allow := regexp.MustCompile("^(?:" + strings.ReplaceAll(w["FOREWARM_AGENT_URL_ALLOW"], "{host}", regexp.QuoteMeta(id)) + ")$")
		if !allow.MatchString(e["HOSTAGENT_ADVERTISE_URL"]) {
			t.Errorf("%s advertises %s, which the worker's FOREWARM_AGENT_URL_ALLOW %q refuses", id, e["HOSTAGENT_ADVERTISE_URL"], w["FOREWARM_AGENT_URL_ALLOW"])
		}
	}
	if w["HOSTAGENT_TOKEN"] != "" {
		t.Errorf("the worker holds a shared agent token")
	}
}

// programEnv lists the environment variables the non-test Go files of dirs read.
func programEnv(t *testing.T, dirs ...string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"((?:TEMPORAL|CLICKHOUSE|FOREWARM|HOSTAGENT|ONNXRUNTIME)_[A-Z0-9_]+)"`)
	out := map[string]bool{}
	for _, d := range dirs {
		files, _ := filepath.Glob(filepath.Join("..", "..", d, "*.go"))
		if len(files) == 0 {
			t.Fatalf("no Go files in %s", d)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllSubmatch(b, -1) {
				out[string(m[1])] = true
			}
		}
	}
	return out
}
