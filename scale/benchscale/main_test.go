package main

import (
	"testing"
	"time"
)

// A SCALE_* variable that does not parse stops the benchmark naming it;
// the defaults are the fleet with the sticky timeout it needs.
func TestSettingsFromTheEnvironment(t *testing.T) {
	for _, k := range []string{"SCALE_APPS", "SCALE_WINDOW", "SCALE_STICKY_TIMEOUT"} {
		t.Setenv(k, "")
	}
	s, err := parseFlags(nil)
	if err != nil || s.Apps != 50000 || s.Window != 6 || s.StickyTimeout != time.Minute {
		t.Fatalf("defaults: apps %d, window %d, sticky %v, %v", s.Apps, s.Window, s.StickyTimeout, err)
	}
	t.Setenv("SCALE_APPS", "lots")
	if _, err := parseFlags(nil); err == nil || err.Error() != `$SCALE_APPS="lots" is not a whole number` {
		t.Errorf("bad SCALE_APPS: %v", err)
	}
	t.Setenv("SCALE_APPS", "")
	t.Setenv("SCALE_STICKY_TIMEOUT", "long")
	if _, err := parseFlags(nil); err == nil || err.Error() != `$SCALE_STICKY_TIMEOUT="long" is not a duration (e.g. 30s, 5m)` {
		t.Errorf("bad SCALE_STICKY_TIMEOUT: %v", err)
	}
}

// The new flags: a sample of 500, steady-state first sleeps and dry loops
// by default; --compare-ticking needs the event-driven mode it compares
// with, --dry=false host agents.
func TestCountingFlags(t *testing.T) {
	for _, k := range []string{"SCALE_APPS", "SCALE_SAMPLE", "SCALE_STEADY_STATE", "SCALE_COMPARE_TICKING", "SCALE_MODE", "SCALE_DRY", "SCALE_AGENTS"} {
		t.Setenv(k, "")
	}
	s, err := parseFlags(nil)
	if err != nil || s.Sample != 500 || !s.SteadyState || s.CompareTicking || !s.Dry {
		t.Fatalf("defaults: sample %d, steady %v, compare %v, dry %v, %v", s.Sample, s.SteadyState, s.CompareTicking, s.Dry, err)
	}
	s, err = parseFlags([]string{"--compare-ticking", "--steady-state=false", "--sample", "20"})
	if err != nil || !s.CompareTicking || s.SteadyState || s.Sample != 20 {
		t.Fatalf("set: %+v, %v", s, err)
	}
	if _, err := parseFlags([]string{"--compare-ticking", "--mode", "ticking"}); err == nil {
		t.Error("--compare-ticking with --mode ticking was accepted")
	}
	if _, err := parseFlags([]string{"--sample", "0"}); err == nil {
		t.Error("--sample 0 was accepted")
	}
	if s, err := parseFlags([]string{"--dry=false"}); err != nil || s.Dry || s.Agents != 2 {
		t.Errorf("--dry=false: dry %v, agents %d, %v", s.Dry, s.Agents, err)
	}
	if _, err := parseFlags([]string{"--dry=false", "--agents", "0"}); err == nil {
		t.Error("--dry=false without agents was accepted")
	}
	t.Setenv("SCALE_COMPARE_TICKING", "1")
	if s, err := parseFlags(nil); err != nil || !s.CompareTicking {
		t.Errorf("SCALE_COMPARE_TICKING=1: %v, %v", s.CompareTicking, err)
	}
}
