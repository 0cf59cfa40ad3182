package main

import (
	"testing"
	"time"
)

// The gateway learner runs every 30 s unless told otherwise, and never
// with a negative period.
func TestGatewayLearnFlag(t *testing.T) {
	t.Setenv("FOREWARM_GATEWAY_LEARN_EVERY", "")
	s, err := parseFlags([]string{"--queues", "training"})
	if err != nil || s.GatewayLearnEvery != 30*time.Second {
		t.Errorf("default: %v (%v), want 30s", s.GatewayLearnEvery, err)
	}
	if s, err = parseFlags([]string{"--queues", "training", "--gateway-learn-every", "0"}); err != nil || s.GatewayLearnEvery != 0 {
		t.Errorf("off: %v (%v)", s.GatewayLearnEvery, err)
	}
	if _, err := parseFlags([]string{"--queues", "training", "--gateway-learn-every", "-1s"}); err == nil {
		t.Error("a negative period was accepted")
	}
}
