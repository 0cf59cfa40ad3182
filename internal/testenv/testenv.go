// Package testenv lets integration tests find the real services and fail
// loudly when they are missing: a test that cannot reach its service never
// passes by skipping. Only FOREWARM_ALLOW_SKIP=1 (and never with CI=true)
// turns a missing service into a skip, for a quick local unit-test run.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/forewarm/forewarm/internal/config"
)

// Missing reports a service or library the test needs and cannot use.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is not usable: %v (run `make up`, or `make test` which starts everything)", what, err)
	if os.Getenv("FOREWARM_ALLOW_SKIP") == "1" && os.Getenv("CI") != "true" {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

// Dialable checks that addr accepts TCP connections.
func Dialable(addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// Temporal returns the Temporal settings after checking the frontend port.
func Temporal(t testing.TB) config.Temporal {
	t.Helper()
	tc := config.Temporal{Address: config.Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), Namespace: config.Env("TEMPORAL_NAMESPACE", "default")}
	if err := Dialable(tc.Address); err != nil {
		Missing(t, "Temporal at "+tc.Address, err)
	}
	return tc
}

// ClickHouse returns the ClickHouse settings after checking that one of
// its addresses (replicas, in cluster mode) accepts connections.
func ClickHouse(t testing.TB) config.ClickHouse {
	t.Helper()
	c := config.ClickHouseFromEnv()
	err := fmt.Errorf("no address in CLICKHOUSE_ADDR")
	for _, a := range c.Addrs() {
		if err = Dialable(a); err == nil {
			break
		}
	}
	if err != nil {
		Missing(t, "ClickHouse at "+c.Addr, err)
	}
	return c
}

// ORTLib returns the ONNX Runtime library path after checking it exists.
func ORTLib(t testing.TB) string {
	t.Helper()
	lib := config.ORTLibFromEnv()
	if lib == "" {
		Missing(t, "the ONNX Runtime library", fmt.Errorf("ONNXRUNTIME_LIB is unset and .tools/onnxruntime holds none"))
	}
	if _, err := os.Stat(lib); err != nil {
		Missing(t, "the ONNX Runtime library", err)
	}
	return lib
}
