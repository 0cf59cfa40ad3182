package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentclient "github.com/forewarm/forewarm/agent/client"
)

// Each agent flag is checked at start, and a bad one is named.
func TestAgentTrustFlagsAreChecked(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "root")
	if err := os.WriteFile(secret, []byte(e2eRoot+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tiny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOSTAGENT_TOKEN", "")
	t.Setenv("FOREWARM_AGENT_ROOT_SECRET", "")
	cases := []struct {
		name string
		args []string
		says string
	}{
		{"no credentials", nil, "no host agent credentials: give --agent-root-secret-file"},
		{"both", []string{"--agent-root-secret-file", secret, "--agent-token-file", secret}, "--agent-root-secret-file and --agent-token-file: give one"},
		{"missing secret file", []string{"--agent-root-secret-file", filepath.Join(dir, "none")}, "--agent-root-secret-file: open"},
		{"short secret", []string{"--agent-root-secret-file", short}, "--agent-root-secret-file: agent root secret: 4 bytes, at least 16"},
		{"bad pattern", []string{"--agent-root-secret-file", secret, "--agent-url-allow", "http://(127"}, "--agent-url-allow: agent URL allow pattern"},
		{"missing CA", []string{"--agent-root-secret-file", secret, "--agent-ca", filepath.Join(dir, "ca.pem")}, "--agent-ca: agent CA"},
		{"bad TLS name", []string{"--agent-root-secret-file", secret, "--agent-tls-name", "{host}:7071"}, "--agent-tls-name: agent TLS name"},
		{"sticky too short", []string{"--agent-root-secret-file", secret, "--sticky-timeout", "500ms"}, "--sticky-timeout 500ms: must be in [1s, 10m]"},
		{"sticky too long", []string{"--agent-root-secret-file", secret, "--sticky-timeout", "1h"}, "--sticky-timeout 1h0m0s: must be in [1s, 10m]"},
	}
	for _, tc := range cases {
		_, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
	s, err := parseFlags([]string{"--agent-root-secret-file", secret})
	if err != nil || s.Agents.RootSecret != e2eRoot || s.Agents.Token != "" || s.Agents.URLAllow != agentclient.DefaultAllowURL || s.StickyTimeout != 5*time.Second {
		t.Errorf("good flags = %+v, %v", s, err)
	}
	// A training-only worker calls no agent and needs no credentials.
	if _, err := parseFlags([]string{"--queues", "training"}); err != nil {
		t.Errorf("training-only worker: %v", err)
	}
}

// A setting from the environment that does not parse stops the worker
// naming it, as a bad flag would; a poller count set there is read, and
// unset it is 0 (autoscaling).
func TestWorkerReadsItsEnvironmentStrictly(t *testing.T) {
	t.Setenv("FOREWARM_QUEUES", "training")
	t.Setenv("FOREWARM_WORKFLOW_POLLERS", "")
	t.Setenv("FOREWARM_STICKY_TIMEOUT", "")
	if s, err := parseFlags(nil); err != nil || s.WorkflowPollers != 0 || s.StickyTimeout != 5*time.Second {
		t.Fatalf("defaults: pollers %d, sticky timeout %v, %v; want 0 (autoscaling), 5s", s.WorkflowPollers, s.StickyTimeout, err)
	}
	t.Setenv("FOREWARM_WORKFLOW_POLLERS", "4")
	t.Setenv("FOREWARM_STICKY_TIMEOUT", "1m")
	s, err := parseFlags(nil)
	if err != nil || s.WorkflowPollers != 4 || s.StickyTimeout != time.Minute {
		t.Fatalf("pollers %d, sticky timeout %v, %v; want 4, 1m", s.WorkflowPollers, s.StickyTimeout, err)
	}
	t.Setenv("FOREWARM_STOP_TIMEOUT", "soon")
	if _, err := parseFlags(nil); err == nil || err.Error() != `$FOREWARM_STOP_TIMEOUT="soon" is not a duration (e.g. 30s, 5m)` {
		t.Errorf("bad stop timeout: %v", err)
	}
}

// The prediction queue's worker gets the sticky timeout and the pollers
// the settings ask for: autoscaling by default, a fixed count when given.
func TestPredictionWorkerOptions(t *testing.T) {
	t.Setenv("FOREWARM_QUEUES", "training")
	t.Setenv("FOREWARM_WORKFLOW_POLLERS", "")
	t.Setenv("FOREWARM_STICKY_TIMEOUT", "")
	s, err := parseFlags([]string{"--sticky-timeout", "45s"})
	if err != nil {
		t.Fatal(err)
	}
	o := predictionOptions(s)
	if o.StickyScheduleToStartTimeout != 45*time.Second || o.WorkflowTaskPollerBehavior == nil || o.ActivityTaskPollerBehavior == nil || o.MaxConcurrentWorkflowTaskPollers != 0 {
		t.Errorf("default options: %+v", o)
	}
	s.WorkflowPollers = 8
	o = predictionOptions(s)
	if o.WorkflowTaskPollerBehavior != nil || o.MaxConcurrentWorkflowTaskPollers != 8 || o.MaxConcurrentActivityTaskPollers != 8 {
		t.Errorf("8 fixed pollers: %+v", o)
	}
}
