package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/keda"
	"github.com/forewarm/forewarm/worker/resident"
)

// The host driver and the scaler's flags: refusals name the flag, the
// KEDA driver needs no agent credentials, and with agents the scaler is
// fed by a decorator over their clients.
func TestKEDAFlags(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "root")
	if err := os.WriteFile(secret, []byte(e2eRoot+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		says string
	}{
		{[]string{"--agent-root-secret-file", secret, "--hosts", "k8s"}, `--hosts "k8s": must be agents, kubernetes or keda`},
		{[]string{"--hosts", "keda"}, "--hosts keda needs --keda-listen"},
		{[]string{"--queues", "training", "--keda-listen", "127.0.0.1:0"}, "--keda-listen 127.0.0.1:0: the scaler answers from the leases of this worker's loops"},
	}
	for _, tc := range cases {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.says)
		}
	}
	t.Setenv("FOREWARM_HOSTS", "keda")
	t.Setenv("FOREWARM_KEDA_LISTEN", "127.0.0.1:0")
	s, err := parseFlags(nil)
	if err != nil || s.Hosts != "keda" || s.KEDAListen != "127.0.0.1:0" {
		t.Fatalf("keda from the environment, no agent credentials: %+v, %v", s, err)
	}
	reg := keda.NewRegistry(nil)
	dir, clients, err := hostDriver(s, nil, reg, &running{}, slog.Default())
	if _, ok := clients.(*keda.Clients); err != nil || !ok || dir == nil {
		t.Errorf("--hosts keda: directory %T, clients %T, %v", dir, clients, err)
	}

	s, err = parseFlags([]string{"--agent-root-secret-file", secret, "--hosts", "agents", "--keda-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	agents := &resident.LastKnownHosts{}
	dir, clients, err = hostDriver(s, agents, reg, &running{}, slog.Default())
	if f, ok := clients.(*keda.Feed); err != nil || !ok || f.Reg != reg || dir != agents {
		t.Errorf("agents with the scaler: directory %T, clients %T, %v", dir, clients, err)
	}
	_, clients, _ = hostDriver(s, agents, nil, &running{}, slog.Default())
	if _, ok := clients.(*keda.Feed); ok {
		t.Error("agents without the scaler are fed to no registry")
	}
}
