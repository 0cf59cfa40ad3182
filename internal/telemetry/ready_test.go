package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// /readyz answers from what a checker found at most every few seconds:
// a burst of probes (anyone on the listener can send them) costs at most
// one check of Temporal and ClickHouse per interval, and the body names no
// internal address, whatever the check's error says.
func TestReadyzChecksAtMostOncePerIntervalAndHidesDetail(t *testing.T) {
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int64
	srv := httptest.NewServer(m.Handler(func(context.Context) error {
		checks.Add(1)
		return fmt.Errorf("clickhouse 10.1.2.3:9000: dial tcp 10.1.2.3:9000: connect: connection refused")
	}))
	defer srv.Close()

	const n = 50
	var wg sync.WaitGroup
	bodies := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i], bodies[i] = get(t, srv.URL+"/readyz") })
	}
	wg.Wait()
	if c := checks.Load(); c > 2 {
		t.Errorf("%d probes ran %d checks of the services; want at most one per interval", n, c)
	}
	for i := range n {
		if codes[i] != http.StatusServiceUnavailable || !strings.HasPrefix(bodies[i], "not ready") {
			t.Fatalf("probe %d: %d %q; want 503 not ready", i, codes[i], bodies[i])
		}
		if strings.Contains(bodies[i], "10.1.2.3") || strings.Contains(bodies[i], "dial tcp") {
			t.Fatalf("probe %d: body %q shows internal detail", i, bodies[i])
		}
	}
}

// The state follows the services at the checker's pace: what is not ready
// is one fixed word, the detail goes to the log, and a recovery shows
// within an interval of the next probe.
func TestReadyzFollowsTheServicesAtTheCheckersPace(t *testing.T) {
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	var logMu sync.Mutex
	m.Log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logged.Write(p)
	}), nil))
	var checks atomic.Int64
	var down atomic.Bool
	down.Store(true)
	const every = 100 * time.Millisecond
	srv := httptest.NewServer(m.handler(&readiness{every: every, log: m.Log, check: func(context.Context) error {
		checks.Add(1)
		if down.Load() {
			return &Unready{Part: "store", Err: errors.New("clickhouse 10.1.2.3:9000: connection refused")}
		}
		return nil
	}}))
	defer srv.Close()

	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: store\n" {
		t.Errorf("store down: %d %q; want 503 \"not ready: store\"", code, body)
	}
	if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, "\n"+MetricReady+" 0\n") {
		t.Errorf("store down: /metrics lacks %s 0", MetricReady)
	}
	logMu.Lock()
	if !strings.Contains(logged.String(), "10.1.2.3:9000") {
		t.Errorf("the detail is not in the log: %q", logged.String())
	}
	logMu.Unlock()

	// Probes as fast as they come for 5 intervals: about one check each.
	start := time.Now()
	hits := 0
	for time.Since(start) < 5*every {
		get(t, srv.URL+"/readyz")
		hits++
	}
	if c, most := checks.Load(), int64(time.Since(start)/every)+2; c > most {
		t.Errorf("%d probes over %v ran %d checks; want at most %d (one per %v)", hits, time.Since(start).Round(time.Millisecond), c, most, every)
	}

	down.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, body := get(t, srv.URL+"/readyz")
		if code == http.StatusOK && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %q after the store came back", code, body)
		}
		time.Sleep(every / 4)
	}
	if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, "\n"+MetricReady+" 1\n") {
		t.Errorf("ready: /metrics lacks %s 1", MetricReady)
	}
	// A failure that is not an *Unready says only "not ready".
	if err := part(errors.New("temporal 10.0.0.1:7233: unavailable")); err != "" {
		t.Errorf("part of a plain error = %q, want none", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
