package config

import (
	"testing"
	"time"
)

func TestEnvDefaultsRefuseWhatDoesNotParse(t *testing.T) {
	t.Setenv("FW_TEST_N", "0")
	t.Setenv("FW_TEST_D", "90s")
	t.Setenv("FW_TEST_B", "true")
	var e EnvDefaults
	if e.Int("FW_TEST_N", 4) != 0 || e.Duration("FW_TEST_D", time.Second) != 90*time.Second || !e.Bool("FW_TEST_B", false) ||
		e.Float("FW_TEST_UNSET", 1.5) != 1.5 || e.Err != nil {
		t.Fatalf("set values (0 included) and defaults: %v", e.Err)
	}
	t.Setenv("FW_TEST_D", "soon")
	t.Setenv("FW_TEST_N", "four")
	e = EnvDefaults{}
	e.Duration("FW_TEST_D", time.Second)
	e.Int("FW_TEST_N", 4)
	if e.Err == nil || e.Err.Error() != `$FW_TEST_D="soon" is not a duration (e.g. 30s, 5m)` {
		t.Errorf("Err = %v, want the first bad value named", e.Err)
	}
}
