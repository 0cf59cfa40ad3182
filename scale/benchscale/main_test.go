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
