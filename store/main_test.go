package store_test

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain keeps the store's info logs (migrations, loads) out of test and
// benchmark output; FOREWARM_LOG_LEVEL=info brings them back.
func TestMain(m *testing.M) {
	var lvl slog.Level = slog.LevelWarn
	if v := os.Getenv("FOREWARM_LOG_LEVEL"); v != "" {
		lvl.UnmarshalText([]byte(v))
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
	os.Exit(m.Run())
}
